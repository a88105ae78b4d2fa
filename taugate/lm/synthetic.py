"""Random own-GPT models whose gated FFN units fire on a chosen share of tokens (for bench-lm), and
random mode banks of them (for bench-bank)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from taugate.errors import TauGateError
from taugate.lm.apply import apply_taugate_lm_, gated_blocks
from taugate.nn.config import TauGateConfig
from taugate.nn.model import harden_


def random_lm(*, d_model: int, d_ffn: int, n_layer: int, activation: str, active: float,
              n_head: int | None = None, block_size: int = 256, seed: int = 0,
              calib_tokens: int = 2048):  # fmt: skip
    """(base, gated, calibration token ids): a randomly initialised own GPT and a hard-gated copy
    whose every FFN unit fires on about ``active`` of the tokens of random byte text.

    Layer by layer (later layers see the earlier layers' gates), each unit's threshold is the
    ``1 - active`` quantile of its pre-activation over ``calib_tokens`` random tokens (for ReLU
    at least 0, so at most the share with ``z > 0`` fires)."""
    from taugate.lm.gpt import GPT, GPTConfig

    if not 0.0 < active <= 1.0:
        raise TauGateError(f"active must be a share in (0, 1], got {active!r}")
    torch.manual_seed(seed)
    heads = n_head or max(1, d_model // 64)
    base = GPT(GPTConfig(n_layer=n_layer, n_head=heads, d_model=d_model, d_ffn=d_ffn,
                         activation=activation, block_size=block_size)).eval()  # fmt: skip
    gated = copy.deepcopy(base)
    apply_taugate_lm_(gated, TauGateConfig())
    harden_(gated, True)
    gen = torch.Generator().manual_seed(seed + 1)
    seq = min(block_size, 128)
    ids = torch.randint(0, 256, (max(1, calib_tokens // seq), seq), generator=gen)  # (n, T)
    _set_thresholds(gated, ids, lambda width: np.full(width, active))
    return base, gated, ids.reshape(-1)


def _set_thresholds(gated, ids: torch.Tensor, shares) -> None:
    """Layer by layer, each unit's tau := the ``1 - share`` quantile of its pre-activation on
    ``ids`` (B, T); ``shares(width)`` gives the (width,) per-unit shares of a block."""
    for b in gated_blocks(gated):
        gate = getattr(b.owner, b.act)
        seen = []
        h = gate.register_forward_hook(lambda _m, inp, _o, seen=seen: seen.append(inp[0].detach()))
        with torch.no_grad():
            gated(ids)
        h.remove()
        z = seen[0].reshape(-1, gate.width).double().numpy()  # (tokens, width)
        a = shares(gate.width)  # (width,)
        if (a == a[0]).all():  # one share: one vectorised quantile
            q = np.quantile(z, 1.0 - a[0], axis=0) if a[0] < 1 else z.min(axis=0) - 1.0
        else:
            q = np.array([np.quantile(z[:, j], 1.0 - a[j]) if a[j] < 1 else z[:, j].min() - 1.0
                          for j in range(gate.width)])  # fmt: skip
        with torch.no_grad():
            gate.tau.copy_(torch.from_numpy(q).to(gate.tau.dtype))


def random_lm_bank(*, modes: int, d_model: int, d_ffn: int, n_layer: int, activation: str,
                   active: float, seed: int = 0, block_size: int = 256):  # fmt: skip
    """(base, {name: gated model}, calibration ids): ``modes`` random modes of one random own GPT
    (:func:`random_lm`'s base), named ``m0``, ``m1``, ...; in mode m each unit fires on a share
    of the tokens drawn uniformly from [active / 2, 3 active / 2] (at most 1), so the modes fire
    different units about ``active`` of the time on average, and gains are drawn from
    [0.5, 1.5)."""
    if type(modes) is not int or modes < 1:
        raise TauGateError(f"modes must be an integer >= 1, got {modes!r}")
    base, _, ids = random_lm(d_model=d_model, d_ffn=d_ffn, n_layer=n_layer, activation=activation,
                             active=active, seed=seed, block_size=block_size)  # fmt: skip
    seq = min(block_size, 128)
    windows = ids.reshape(-1, seq)  # (n, T)
    out = {}
    for m in range(modes):
        rng = np.random.default_rng([seed, m])
        gated = copy.deepcopy(base)
        apply_taugate_lm_(gated, TauGateConfig())
        harden_(gated, True)
        _set_thresholds(gated, windows,
                        lambda w, rng=rng: np.minimum(1.0, rng.uniform(0.5, 1.5, w) * active))  # fmt: skip
        with torch.no_grad():
            for b in gated_blocks(gated):
                g = getattr(b.owner, b.act)
                g.gamma.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, g.width)).to(g.gamma.dtype))
        out[f"m{m}"] = gated
    return base, out, ids
