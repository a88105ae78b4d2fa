"""The drop-in module that replaces a compiled FFN block: its hardened, folded and compacted arrays,
run by the Numba FFN kernel (:mod:`taugate.kernels.ffn`) for float32 CPU inference, and by plain
torch math on the same arrays otherwise (other dtypes, other devices, or autograd on).

The function, per token ``x`` (d_model,): ``z = Wz x + bz``; unit j is open iff ``z_j > thr_j``;
``h_j = phi(z_j)`` (plain) or ``phi(z_j) * (Wu_j x + bu_j)`` (gated-linear); ``y = bd + sum over
open j of h_j WdT[j]``, where ``WdT`` is ``down`` transposed with the gains ``gamma`` folded in.

With a gate predictor attached (``predicted``, :mod:`taugate.lm.predicted`) and ``use_predicted``
on, the block computes the approximate function of :mod:`taugate.kernels.ffn_predicted`: a unit is
open iff the predictor marks it (``z_hat_j > thr_j - margin sigma_j``) and ``z_j > thr_j``; the
kernel runs it, and the torch fallback computes the same approximation in torch math.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from taugate.errors import TauGateError
from taugate.kernels.ffn import FFNPacked, ffn_forward, ffn_macs
from taugate.kernels.ffn_predicted import PredictedFFN, ffn_forward_predicted
from taugate.nn.activations import torch_activation


class CompiledFFN(nn.Module):
    """A compiled FFN block: ``forward(x)`` for x (..., d_model) -> (..., d_out).

    A block of a mode bank (``packed.n_modes`` > 1, gains unfolded) takes each call's modes from
    ``selection`` (:class:`taugate.lm.bank_gate.Selection`, shared by every block of the bank):
    one mode index for every token, or one per batch row (x batch-major: (B, T, d) or OPT's
    (B * T, d))."""

    def __init__(self, packed: FFNPacked, activation: str, *, name: str = "",
                 original_width: int = 0, selection=None):  # fmt: skip
        super().__init__()
        self.packed, self.activation, self.name = packed, activation, name
        self.original_width = int(original_width or packed.n_units)
        self._phi = torch_activation(activation)
        if packed.n_modes > 1 and selection is None:
            raise TauGateError(f"{name}: a block of {packed.n_modes} modes needs a selection")
        self.selection = selection
        # torch views of the same memory (no copies): the fallback's weights
        keys = ("wz", "bz", "wu", "bu", "wdt", "bd", "thr", "gain")
        self._t = {k: torch.from_numpy(packed.view(k)) for k in keys}
        self.last_counts: np.ndarray | None = None  # open units per token of the last kernel call
        self.kernel_calls = 0  # calls served by the Numba kernel (the others ran torch math)
        self.use_kernel = True  # False: torch math always (a reference for the kernel)
        self.predicted: PredictedFFN | None = None  # gate predictor of this block, if fitted
        self.use_predicted = False  # True (with a predictor): predicted gates (approximate)
        self.last_computed: np.ndarray | None = None  # computed units per token (predicted call)

    def _predicting(self) -> bool:
        if not self.use_predicted:
            return False
        if self.predicted is None:
            raise TauGateError(f"{self.name}: use_predicted is on but no predictor is attached")
        return True

    @property
    def width(self) -> int:
        return int(self.packed.n_units)

    def extra_repr(self) -> str:
        kind = "glu" if self.packed.glu else "plain"
        modes = f", modes {self.packed.n_modes}" if self.selection is not None else ""
        return (
            f"{self.name}: {kind}, phi={self.activation}, units {self.width}/"
            f"{self.original_width}{modes}"
        )

    def _use_kernel(self, x: torch.Tensor) -> bool:
        return (self.use_kernel and x.dtype == torch.float32 and x.device.type == "cpu"
                and not (torch.is_grad_enabled() and x.requires_grad))  # fmt: skip

    def token_modes(self, n: int):
        """The modes of the n tokens of this call: 0 (one model), the selected index, or (n,)
        int64, row b's mode repeated over its n / B tokens."""
        sel = self.selection
        if sel is None:
            return 0
        if sel.rows is None:
            return sel.index
        B = sel.rows.numel()
        if n % B:
            raise TauGateError(
                f"{self.name}: mixed-mode batch of {B} rows, but the block sees {n} tokens "
                f"(not B sequences of equal length)"
            )
        return np.repeat(sel.rows.cpu().numpy(), n // B)  # (B,) -> (n,): batch-major tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        d_out = self.packed.d_out
        if self._use_kernel(x):
            x2 = x.reshape(-1, shape[-1])  # (N, d_model), a view when x is contiguous
            if not x2.is_contiguous():
                x2 = x2.contiguous()
            out = torch.empty((x2.shape[0], d_out), dtype=torch.float32)  # (N, d_out)
            if self._predicting():
                _, counts, self.last_computed = ffn_forward_predicted(
                    self.predicted, x2.numpy(), out=out.numpy(), check_finite=False
                )
            else:
                modes = self.token_modes(x2.shape[0])
                _, counts = ffn_forward(self.packed, x2.numpy(), modes=modes, out=out.numpy(),
                                        check_finite=False)  # fmt: skip
            self.last_counts, self.kernel_calls = counts, self.kernel_calls + 1
            return out.reshape(*shape[:-1], d_out)
        return self.torch_forward(x)

    def torch_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same function in torch, in x's dtype and on its device."""
        t = {k: v.to(device=x.device, dtype=x.dtype) for k, v in self._t.items()}
        x2 = x.reshape(-1, x.shape[-1])  # (N, d_model)
        m = self.token_modes(x2.shape[0])
        m = m if isinstance(m, int) else torch.from_numpy(m).to(x.device)  # int or (N,)
        thr = t["thr"][m]  # (F,) or (N, F)
        z = x2 @ t["wz"].T + t["bz"]  # (N, F)
        open_ = z > thr  # (N, F) bool
        if self._predicting():  # the predictor's marks, in torch math
            open_ = open_ & self._computed_torch(x2, t["bz"])  # (N, F)
        h = self._phi(z) * open_  # (N, F) * (N, F) bool
        if self.packed.glu:
            h = h * (x2 @ t["wu"].T + t["bu"])  # (N, F)
        if t["gain"].shape[0]:
            h = h * t["gain"][m]  # (N, F) * (F,) or (N, F): a bank's gains, unfolded
        y = h @ t["wdt"] + t["bd"]  # (N, F) @ (F, d_out) -> (N, d_out)
        return y.reshape(*x.shape[:-1], y.shape[-1])  # (..., d_out)

    def _computed_torch(self, x2: torch.Tensor, bz: torch.Tensor) -> torch.Tensor:
        """(N, F) bool: the units the predictor marks for x2 (N, d_in), in x2's dtype."""
        p = self.predicted
        if p.every:
            return torch.ones(x2.shape[0], self.width, dtype=torch.bool, device=x2.device)
        a, b, cut = (torch.from_numpy(v).to(device=x2.device, dtype=x2.dtype)
                     for v in (p.lowrank.a, p.lowrank.b, p.cut))  # fmt: skip
        return (x2 @ a) @ b + bz > cut  # (N, r) @ (r, F) + (F,) > (F,)

    def macs(self) -> tuple[int, float]:
        """(dense multiply-adds per token of the ORIGINAL block, multiply-adds per token the kernel
        needed on its last call)."""
        p = self.packed
        d_in, d_out = p.d_in, p.d_out
        dense = self.original_width * (d_in * (2 if p.glu else 1) + d_out)
        return dense, (
            ffn_macs(p, self.last_counts) if self.last_counts is not None else float("nan")
        )
