"""The predictors of a compiled MLP (one low-rank map per hidden layer), how they are fitted, and
how an artifact stores them (torch-free).

Artifact format (an optional part of artifact v1; artifacts without it load as before):

- manifest key ``predictor``: ``{"kind": "lowrank", "rank": R, "margin": M, "layers": [i, ...],
  "fit": {...}}``: the hidden layers that have one, the default margin (a run may pass another),
  and the fit report (calibration size, computed share and recall on held-out calibration rows);
- tensors ``predictor.{i}.a`` (in_i, R), ``predictor.{i}.b`` (R, out_i) and ``predictor.{i}.sigma``
  (out_i,) float32 for each listed layer ``i`` (see :class:`taugate.predictor.LowRank`), in the
  same ``weights.safetensors`` (so the manifest's sha256 covers them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from taugate.errors import TauGateError
from taugate.predictor import (
    LowRank,
    PredictorConfig,
    check_lowrank,
    check_margin,
    compare_kinds,
    fit_lowrank,
    recall,
)
from taugate.spec import ModelSpec

PREFIX = "predictor."
HELD_OUT = 0.25  # share of the calibration rows kept out of the fit to score it


@dataclass(frozen=True, eq=False)
class MLPPredictor:
    """One :class:`~taugate.predictor.LowRank` (or None) per hidden layer, and a default margin."""

    layers: tuple  # (L - 1,) LowRank or None per hidden layer
    margin: float = 2.0  # default cut margin in prediction-error stds (+inf: exact)
    kind: str = "lowrank"  # the kind the kernels run
    fit: dict = field(default_factory=dict)  # the fit report (JSON-able)

    def __post_init__(self) -> None:
        object.__setattr__(self, "margin", check_margin(self.margin))
        if self.kind != "lowrank":
            raise TauGateError(f"the kernels run lowrank predictors only, got kind {self.kind!r}")

    @property
    def rank(self) -> int:
        return max((p.rank for p in self.layers if p is not None), default=0)

    def with_margin(self, margin: float) -> MLPPredictor:
        return replace(self, margin=check_margin(margin))

    def check(self, spec: ModelSpec, where: str = "predictor") -> MLPPredictor:
        """``self`` if every predictor fits its layer of ``spec``, else a one-line error."""
        if len(self.layers) != len(spec.layers) - 1:
            raise TauGateError(f"{where}: {len(self.layers)} predictors for a model of "
                               f"{len(spec.layers) - 1} hidden layers")  # fmt: skip
        for i, p in enumerate(self.layers):
            if p is not None:
                e = spec.layers[i]
                check_lowrank(p, e.n_in, e.n_out, f"{where}: hidden layer {i} ({e.n_in} -> {e.n_out})")  # fmt: skip
        return self

    def manifest_json(self) -> dict:
        return {"kind": self.kind, "rank": self.rank, "margin": _json_margin(self.margin),
                "layers": [i for i, p in enumerate(self.layers) if p is not None],
                "fit": self.fit}  # fmt: skip

    def tensors(self) -> dict[str, np.ndarray]:
        out = {}
        for i, p in enumerate(self.layers):
            if p is not None:
                out.update(p.tensors(f"{PREFIX}{i}"))
        return out

    def computed(self, spec: ModelSpec, x: np.ndarray, margin: float | None = None):
        """Per hidden layer, the (N, out) mask of units computed for inputs x, in numpy with the
        predicted gates applied layer by layer (None for a layer without a predictor)."""
        m = self.margin if margin is None else check_margin(margin)
        h, masks = np.asarray(x, np.float32), []
        for i, (w, b, thr) in enumerate(zip(spec.weights[:-1], spec.biases[:-1],
                                            spec.thresholds, strict=True)):  # fmt: skip
            z = h @ w.T + b  # (N, out)
            p = self.layers[i]
            c = np.ones(z.shape, bool) if p is None else p.computed(h, b, thr, m)  # (N, out)
            masks.append(c if p is not None else None)
            h = np.where((z > thr) & c, z, np.float32(0))
        return masks


def _json_margin(m: float):
    return "inf" if m == np.inf else m


def split_tensors(tensors: dict) -> tuple[dict, dict]:
    """(the model's tensors, the ``predictor.*`` ones)."""
    model = {k: v for k, v in tensors.items() if not k.startswith(PREFIX)}
    return model, {k: v for k, v in tensors.items() if k.startswith(PREFIX)}


def from_artifact(entry, tensors: dict, spec: ModelSpec, where: str) -> MLPPredictor:
    """The predictor a manifest's ``predictor`` entry and its tensors describe, checked against
    ``spec`` (one-line errors naming ``where`` and the field or tensor)."""
    if not isinstance(entry, dict):
        raise TauGateError(f"{where}: 'predictor' must be an object")
    if entry.get("kind") != "lowrank":
        raise TauGateError(f"{where}: predictor kind must be 'lowrank', got {entry.get('kind')!r}")
    margin = entry.get("margin", 2.0)
    margin = np.inf if margin == "inf" else margin
    layers = entry.get("layers")
    n_hidden = len(spec.layers) - 1
    if not (isinstance(layers, list) and all(type(i) is int and 0 <= i < n_hidden for i in layers)
            and len(set(layers)) == len(layers)):  # fmt: skip
        raise TauGateError(f"{where}: predictor 'layers' must list distinct hidden layer indices "
                           f"0..{n_hidden - 1}, got {layers!r}")  # fmt: skip
    preds = [None] * n_hidden
    for i in layers:
        names = [f"{PREFIX}{i}.{k}" for k in ("a", "b", "sigma")]
        missing = [n for n in names if n not in tensors]
        if missing:
            raise TauGateError(f"{where}: predictor tensor {missing[0]!r} is missing")
        preds[i] = LowRank(*(tensors[n] for n in names))
    known = {f"{PREFIX}{i}.{k}" for i in layers for k in ("a", "b", "sigma")}
    extra = sorted(set(tensors) - known)
    if extra:
        raise TauGateError(f"{where}: unexpected tensor {extra[0]!r} (not a listed predictor)")
    fit = entry.get("fit", {})
    try:
        return MLPPredictor(tuple(preds), margin=margin, fit=fit).check(spec, where)
    except TauGateError as e:
        raise TauGateError(str(e) if str(e).startswith(where) else f"{where}: {e}") from None


def fit_mlp_predictor(spec: ModelSpec, calib_x: np.ndarray, cfg: PredictorConfig) -> MLPPredictor:
    """Fit a low-rank predictor to hidden layer 0 (``cfg.layers == "first"``) or to every hidden
    layer of ``spec`` on the inputs each layer sees for ``calib_x`` (exact hard gates): on the
    first 75 % of the rows, scored (computed share, recall, and the sign-bit kind for comparison)
    on the rest; then refitted on every row."""
    if cfg.kind != "lowrank":
        raise TauGateError("the kernels run lowrank predictors only; signbit is measured in "
                           "the fit report of every lowrank fit")  # fmt: skip
    x = np.asarray(calib_x, np.float32)
    if len(x) < 8:
        raise TauGateError(f"predictor calibration needs at least 8 inputs, got {len(x)}")
    ins = [x, *spec.hidden_outputs(x)] if cfg.layers == "all" else [x]  # input of each layer
    cut = max(1, int(len(x) * (1 - HELD_OUT)))
    layers, report = [], []
    for i, e in enumerate(spec.layers[:-1]):
        if i > 0 and cfg.layers == "first":
            layers.append(None)
            continue
        w, b, thr = spec.weights[i], spec.biases[i], spec.thresholds[i]
        where = f"hidden layer {i} ({e.n_in} -> {e.n_out})"
        held = fit_lowrank(ins[i][:cut], w, b, cfg.rank, where=where)
        z = ins[i][cut:] @ w.T + b  # (N', out)
        c = held.computed(ins[i][cut:], b, thr, cfg.margin)
        kinds = compare_kinds(ins[i][:cut], ins[i][cut:], w, b, thr, rank=cfg.rank,
                              margins=(1.0, 2.0, 3.0), where=where)  # fmt: skip
        report.append({"layer": i, "rank": cfg.rank, "margin": _json_margin(cfg.margin),
                       "held_out": int(len(x) - cut), "active": float((z > thr).mean()),
                       "computed": float(c.mean()), "recall": recall(c, z > thr),
                       "kinds": kinds})  # fmt: skip
        layers.append(fit_lowrank(ins[i], w, b, cfg.rank, where=where))
    fit = {"calib_size": int(len(x)), "layers": report}
    return MLPPredictor(tuple(layers), margin=cfg.margin, fit=fit)
