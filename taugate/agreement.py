"""Do two implementations compute the same logits? Equal within float32 rounding, except on inputs
where a gate ties with its threshold: there a rounding difference may open the gate in one and not
in the other, a jump of the threshold's size that is not a bug. Used before every benchmark and by
``taugate export``'s check in onnxruntime."""

from __future__ import annotations

import numpy as np

from taugate.errors import TauGateError
from taugate.spec import ModelSpec


def near_ties(spec: ModelSpec, x: np.ndarray, rel: float = 1e-4) -> np.ndarray:
    """(B,) bool: rows of ``x`` on which some gated unit's pre-activation (float64) lies within
    ``rel`` of a positive threshold. There a rounding difference of float32 sums may open the gate
    in one backend and not in another: a jump of the threshold's size, not a bug. (A tie at 0 is
    harmless: relu is continuous there.)"""
    out = np.zeros(len(x), bool)
    for i, (z, _h) in enumerate(spec.layer_outputs(x, dtype=np.float64)):
        if i == len(spec.layers) - 1:
            break
        thr = spec.thresholds[i].astype(np.float64)  # (out,), broadcast over the rows
        with np.errstate(invalid="ignore"):  # inf - inf: never a tie
            close = (thr > 0) & np.isfinite(thr) & (np.abs(z - thr) <= rel * np.maximum(1.0, thr))
        out |= close.any(axis=1)
    return out


def check_agreement(
    spec: ModelSpec, x: np.ndarray, outs: dict[str, np.ndarray], atol: float = 1e-4
) -> None:
    """All backends must compute the same logits for inputs ``x`` (within ``10 * atol`` of the
    logits' scale) before timing, except on rows where a unit's pre-activation ties with its
    threshold (:func:`near_ties`)."""
    names = list(outs)
    if len(names) < 2:  # nothing to compare (e.g. only the trained module is timed)
        return
    ref = outs[names[0]]
    scale = max(1.0, float(np.abs(ref).max()))
    ties = None
    for n in names[1:]:
        diff = np.abs(outs[n] - ref).max(axis=1)  # (B,)
        bad = diff > atol * scale * 10
        if bad.any():
            ties = near_ties(spec, x) if ties is None else ties
            wrong = np.flatnonzero(bad & ~ties)
            if len(wrong):
                raise TauGateError(f"backend {n} disagrees with {names[0]} on input {wrong[0]} "
                                   f"(and {len(wrong) - 1} more): max |diff| {diff.max():.3g}")  # fmt: skip
