"""The drop-in module that replaces a compiled FFN block: its hardened, folded and compacted arrays,
run by the Numba FFN kernel (:mod:`taugate.kernels.ffn`) for float32 CPU inference, and by plain
torch math on the same arrays otherwise (other dtypes, other devices, or autograd on).

The function, per token ``x`` (d_model,): ``z = Wz x + bz``; unit j is open iff ``z_j > thr_j``;
``h_j = phi(z_j)`` (plain) or ``phi(z_j) * (Wu_j x + bu_j)`` (gated-linear); ``y = bd + sum over
open j of h_j WdT[j]``, where ``WdT`` is ``down`` transposed with the gains ``gamma`` folded in.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from taugate.kernels.ffn import FFNPacked, ffn_forward, ffn_macs
from taugate.nn.activations import torch_activation


class CompiledFFN(nn.Module):
    """A compiled FFN block: ``forward(x)`` for x (..., d_model) -> (..., d_out)."""

    def __init__(
        self, packed: FFNPacked, activation: str, *, name: str = "", original_width: int = 0
    ):
        super().__init__()
        self.packed, self.activation, self.name = packed, activation, name
        self.original_width = int(original_width or packed.n_units)
        self._phi = torch_activation(activation)
        # torch views of the same memory (no copies): the fallback's weights
        t = {
            k: torch.from_numpy(packed.view(k))
            for k in ("wz", "bz", "wu", "bu", "wdt", "bd", "thr")
        }
        self._t = t
        self.last_counts: np.ndarray | None = None  # open units per token of the last kernel call
        self.kernel_calls = 0  # calls served by the Numba kernel (the others ran torch math)
        self.use_kernel = True  # False: torch math always (a reference for the kernel)

    @property
    def width(self) -> int:
        return int(self.packed.n_units)

    def extra_repr(self) -> str:
        kind = "glu" if self.packed.glu else "plain"
        return (
            f"{self.name}: {kind}, phi={self.activation}, units {self.width}/{self.original_width}"
        )

    def _use_kernel(self, x: torch.Tensor) -> bool:
        return (self.use_kernel and x.dtype == torch.float32 and x.device.type == "cpu"
                and not (torch.is_grad_enabled() and x.requires_grad))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        d_out = self.packed.d_out
        if self._use_kernel(x):
            x2 = x.reshape(-1, shape[-1])  # (N, d_model), a view when x is contiguous
            if not x2.is_contiguous():
                x2 = x2.contiguous()
            out = torch.empty((x2.shape[0], d_out), dtype=torch.float32)  # (N, d_out)
            _, counts = ffn_forward(self.packed, x2.numpy(), out=out.numpy(), check_finite=False)
            self.last_counts, self.kernel_calls = counts, self.kernel_calls + 1
            return out.reshape(*shape[:-1], d_out)
        return self.torch_forward(x)

    def torch_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same function in torch, in x's dtype and on its device."""
        t = {k: v.to(device=x.device, dtype=x.dtype) for k, v in self._t.items()}
        z = x @ t["wz"].T + t["bz"]  # (..., F)
        h = self._phi(z) * (z > t["thr"])  # (..., F) * (..., F) bool
        if self.packed.glu:
            h = h * (x @ t["wu"].T + t["bu"])  # (..., F)
        return h @ t["wdt"] + t["bd"]  # (..., F) @ (F, d_out) -> (..., d_out)

    def macs(self) -> tuple[int, float]:
        """(dense multiply-adds per token of the ORIGINAL block, multiply-adds per token the kernel
        needed on its last call)."""
        p = self.packed
        d_in, d_out = p.d_in, p.d_out
        dense = self.original_width * (d_in * (2 if p.glu else 1) + d_out)
        return dense, (
            ffn_macs(p, self.last_counts) if self.last_counts is not None else float("nan")
        )
