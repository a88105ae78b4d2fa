"""Random gated MLPs whose hidden units fire on a chosen share of inputs (for kernel benchmarks)."""

from __future__ import annotations

import numpy as np

from taugate.errors import TauGateError
from taugate.spec import ModelSpec


def random_model(sizes: list[int], active: float, seed: int = 0, calib=None):
    """A random gated MLP (a ``CompiledModel``) whose hidden units each fire on about ``active``
    of the inputs.

    Weights are normal / sqrt(fan_in); every hidden layer is gated. Layer by layer, with ``q`` the
    ``1 - active`` quantile of a unit's pre-activation over the calibration inputs (``calib``
    (N, n_in), default 512 standard-normal rows drawn from ``seed``), the unit gets ``tau =
    max(q, 0)`` and bias ``max(-q, 0)``, so it fires exactly when ``W h > q``: any share in [0, 1]
    is reachable. The pre-activations come from ``ModelSpec.layer_outputs`` of the layers so far.
    """
    from taugate.runtime.model import CompiledModel

    ok = isinstance(sizes, (list, tuple)) and len(sizes) >= 2
    integer = (int, np.integer)
    if not ok or not all(isinstance(s, integer) and type(s) is not bool and s >= 1 for s in sizes):
        raise TauGateError(f"sizes must be a list of >= 2 positive integers, got {sizes!r}")
    if not isinstance(active, (int, float, np.floating)) or not 0.0 <= active <= 1.0:
        raise TauGateError(f"active must be a share between 0 and 1, got {active!r}")
    rng = np.random.default_rng(seed)
    if calib is None:
        calib = rng.standard_normal((512, sizes[0])).astype(np.float32)
    try:
        calib = np.asarray(calib, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise TauGateError(f"calib is not a numeric (N, {sizes[0]}) array: {e}") from None
    if calib.ndim != 2 or calib.shape[1] != sizes[0] or not len(calib):
        raise TauGateError(f"calib must have shape (N, {sizes[0]}) with N >= 1, got {calib.shape}")
    if not np.isfinite(calib).all():
        raise TauGateError("calib contains NaN or inf")
    L = len(sizes) - 1
    ws = [(rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)
          for i, o in zip(sizes[:-1], sizes[1:], strict=True)]  # fmt: skip
    bs = [np.zeros(o, np.float32) for o in sizes[1:]]
    taus = [np.zeros(o, np.float32) for o in sizes[1:-1]] + [None]
    for i in range(L - 1):  # set layer i from its pre-activations through the finished layers < i
        spec = ModelSpec.build(ws[: i + 1], bs[: i + 1], [*taus[:i], None])
        z = list(spec.layer_outputs(calib))[-1][0]  # (N, out_i), bias 0
        if 0 < active < 1:
            q = np.quantile(z, 1.0 - active, axis=0)
        else:  # margins keep "none" / "all" true a little beyond the calibration inputs
            q = z.max(axis=0) + 1.0 if active == 0 else z.min(axis=0) - 1.0
        bs[i] = np.maximum(-q, 0).astype(np.float32)
        taus[i] = np.maximum(q, 0).astype(np.float32)
    prov = {"method": "random", "active": float(active), "seed": int(seed), "n_calib": len(calib)}
    return CompiledModel(ModelSpec.build(ws, bs, taus), {"provenance": prov})
