"""Compile a trained torch checkpoint into an artifact v1 (``NAME.taugate/``).

Steps: harden the gates; fold each gain ``gamma`` into the next layer's weight columns (exact:
``W' h`` with ``h_j = gamma_j relu(z_j) 1[z_j > tau_j]`` equals ``(W diag(gamma)) relu(z) 1[z > tau]``);
merge LoRA updates into their weights; measure on a calibration set of the target mode how often each
hidden unit fires (nonzero output); remove units that fire on at most ``min_rate`` of the calibration
inputs (default 0: only units that never fire) together with the matching columns of the next layer;
check the compiled function against the hard-gated torch model and report accuracy before and after.
Which models compile, and how their layers are read out (``extract``): ``taugate.compile_structure``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from taugate.artifact import check_destination
from taugate.compile_structure import Extracted, extract
from taugate.errors import TauGateError
from taugate.inputs import load_checked, load_inputs, target_angle
from taugate.nn.gate import TauGate
from taugate.nn.model import harden_
from taugate.spec import ModelSpec


@dataclass
class CompileConfig:
    """How a model is compacted."""

    min_rate: float = 0.0  # drop hidden units firing on <= this share of calibration inputs
    compact: bool = True  # False: keep every unit (gains still folded)

    def __post_init__(self) -> None:
        if not isinstance(self.min_rate, (int, float)) or not 0 <= self.min_rate < 1:
            raise TauGateError(f"min firing rate must be in [0, 1), got {self.min_rate!r}")


def fold_gains(ex: Extracted) -> ModelSpec:
    """The model with column j of layer i+1 multiplied by gamma_j of layer i (exact for any sign
    of gamma), so no gains are left: a :class:`~taugate.spec.ModelSpec`."""
    ws = [w.copy() for w in ex.weights]
    for i, g in enumerate(ex.gammas[:-1]):
        if g is not None:
            ws[i + 1] = ws[i + 1] * g[None, :]  # (out, in) * (1, in)
    return ModelSpec.build(ws, ex.biases, [*ex.taus[:-1], None])


def firing_rates(spec: ModelSpec, x: np.ndarray, chunk: int = 2048) -> list[np.ndarray]:
    """Share of inputs on which each hidden unit's output is nonzero, per hidden layer (float32,
    the arithmetic of the runtime)."""
    counts = [np.zeros(e.n_out) for e in spec.layers[:-1]]
    for s in range(0, len(x), chunk):
        for c, h in zip(counts, spec.hidden_outputs(x[s : s + chunk]), strict=True):
            c += (h != 0).sum(0)
    return [c / max(1, len(x)) for c in counts]


def check_inputs(x, n_in: int, what: str) -> np.ndarray:
    """``x`` as a (N >= 1, n_in) array of finite real numbers, else an error naming ``what`` and
    the first bad row."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != n_in or len(x) == 0:
        raise TauGateError(f"{what} must be (N >= 1, {n_in}), got {tuple(x.shape)}")
    if x.dtype.kind not in "biuf":
        raise TauGateError(f"{what} must be real numbers, got dtype {x.dtype}")
    bad = ~np.isfinite(x).all(axis=1)  # (N,)
    if bad.any():
        raise TauGateError(
            f"{what} row {int(np.argmax(bad))} contains NaN or inf ({int(bad.sum())} of {len(x)} "
            "rows); inputs must be finite"
        )
    return x


def compile_model(
    model: nn.Module,
    calib_x: np.ndarray,
    cfg: CompileConfig | None = None,
    eval_x: np.ndarray | None = None,
    eval_y: np.ndarray | None = None,
) -> tuple[ModelSpec, dict]:
    """Harden, fold, compact. Returns the compiled spec (with ``kept_units``) and the report."""
    cfg = cfg or CompileConfig()
    ex = extract(model)
    n_in = ex.weights[0].shape[1]
    calib_x = check_inputs(calib_x, n_in, "calibration data")
    if eval_x is not None:
        eval_x = check_inputs(eval_x, n_in, "evaluation data")
        if eval_y is not None and np.shape(eval_y) != (len(eval_x),):
            raise TauGateError(
                f"evaluation labels must be ({len(eval_x)},), got {np.shape(eval_y)}"
            )
    folded = fold_gains(ex)
    rates = firing_rates(folded, np.asarray(calib_x, np.float32))
    keep = []
    for r in rates:
        k = np.flatnonzero(r > cfg.min_rate) if cfg.compact else np.arange(len(r))
        if len(k) == 0:  # nothing fires: keep the most active unit so shapes stay >= 1
            k = np.array([int(np.argmax(r))])
        keep.append(k.astype(np.int64))
    compiled = folded.compact(keep)
    report = {
        "config": asdict(cfg),
        "calib_size": int(len(calib_x)),
        "units_original": [e.n_out for e in folded.layers[:-1]],
        "units_kept": [int(len(k)) for k in keep],
        "firing_rate_mean": [float(r.mean()) for r in rates],
    }
    if eval_x is not None:
        report.update(_check(model, compiled, eval_x, eval_y))
    return compiled, report


@torch.no_grad()
def _check(model: nn.Module, spec: ModelSpec, x: np.ndarray, y: np.ndarray | None) -> dict:
    """Accuracy of the hard-gated torch model (eval mode) and of the compiled arrays (float32)."""
    from taugate.runtime import CompiledModel

    hard = {g: g.hard for g in model.modules() if isinstance(g, TauGate)}
    training = model.training
    harden_(model.eval(), True)
    try:
        ref = model(torch.from_numpy(np.require(x, np.float32, ["C", "W"]))).numpy()  # (N, C)
    finally:
        for g, h in hard.items():
            g.hard = h
        model.train(training)
    out = CompiledModel(spec).predict(x, backend="compact")  # (N, C)
    scale = max(1.0, float(np.abs(ref).max()))
    res = {"max_abs_diff_vs_torch": float(np.abs(out - ref).max()), "logit_scale": scale}
    if y is not None:
        res["accuracy_before"] = float((ref.argmax(1) == y).mean())
        res["accuracy_after"] = float((out.argmax(1) == y).mean())
        res["eval_size"] = int(len(y))
    return res


def _sample(ds, split: str, angle: float, size: int | None, rng=None):
    """``size`` images of a loaded data set's split at ``angle`` (a sorted random sample with ``rng``,
    else the first ones), their labels and a JSON-able description."""
    from taugate.data import rotated_split

    x, y = rotated_split(ds, split, angle), ds.y_train if split == "train" else ds.y_test
    idx = np.arange(len(x))[:size] if rng is None else np.sort(rng.permutation(len(x))[:size])
    return x[idx], y[idx], {**ds.provenance(), "angle": angle, "split": split, "size": len(idx)}


def compile_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    calib_data: str | None = None,
    calib_size: int = 2000,
    angle: float | None = None,
    data_dir: str | None = None,
    eval_size: int | None = None,
    evaluate: bool = True,
    cfg: CompileConfig | None = None,
    predictor=None,
    quiet: bool = False,
    force: bool = False,
) -> dict:
    """The ``taugate compile`` pipeline: checkpoint -> artifact directory. Returns the manifest
    extras (``compile`` report, ``kept_units``, ``provenance``). ``out`` is checked first.

    Calibration inputs: ``calib_data`` names a data set (default: the checkpoint's own) whose train
    split at ``angle`` (default: the model's target mode) is sampled (``calib_size`` images, seed 0),
    or is an ``.npy`` file or an ``.npz`` holding one array (first ``calib_size`` rows; all rows must
    be finite). Unless ``evaluate`` is False, accuracy before / after is measured on the first
    ``eval_size`` test images at ``angle`` of the checkpoint's data set (else the named
    ``calib_data``); if those cannot be loaded, a warning on stderr and ``compile.evaluation.skipped``
    say why. ``quiet`` silences data fallbacks. ``force``: replace an ``out`` that is not an
    artifact (see ``taugate.artifact.check_destination``). ``predictor``: a
    :class:`~taugate.predictor.PredictorConfig`: fit a low-rank predictor per hidden layer on the
    calibration inputs and store it (``compile.predictor`` then reports its accuracy on the
    evaluation inputs, approximate, next to the exact one).
    """
    from taugate.artifact import write_artifact
    from taugate.nn.checkpoint import load_checkpoint

    if calib_size < 1:
        raise TauGateError(f"--calib-size must be >= 1, got {calib_size}")
    check_destination(out, force=force)
    model, meta = load_checkpoint(checkpoint)
    n_in = int(meta["sizes"][0])
    prov = dict(meta.get("provenance") or {})
    angle = target_angle(prov) if angle is None else float(angle)
    loaded: dict = {}  # name -> Dataset: each data set is loaded (or falls back) once

    def load(name: str):
        if name not in loaded:
            loaded[name] = load_checked(name, data_dir, n_in, quiet)
        return loaded[name]

    from_file = calib_data is not None and calib_data.endswith((".npy", ".npz"))
    if from_file:
        calib_x = check_inputs(
            load_inputs(calib_data, n_in), n_in, f"calibration file {calib_data}"
        )
        calib_x = calib_x[:calib_size]
        calib_desc = {"file": str(calib_data), "size": int(len(calib_x))}
    else:
        name = calib_data or prov.get("dataset")
        if not name:
            raise TauGateError(f"{checkpoint}: no dataset in its provenance; pass --calib-data")
        rng = np.random.default_rng(0)
        calib_x, _, calib_desc = _sample(load(name), "train", angle, calib_size, rng)
    eval_x = eval_y = None
    eval_name = prov.get("dataset") or (None if from_file else calib_data)
    evaluation = {"skipped": f"{checkpoint} has no dataset in its provenance"}
    if not evaluate:
        evaluation = {"skipped": "turned off (--no-eval)"}
    elif eval_name:
        try:
            eval_x, eval_y, evaluation = _sample(load(eval_name), "test", angle, eval_size)
        except TauGateError as e:
            evaluation = {"skipped": str(e)}
    if evaluate and eval_x is None:
        why = evaluation["skipped"]
        print(f"taugate: warning: accuracy before/after not measured: {why}", file=sys.stderr)
    spec, report = compile_model(model, calib_x, cfg, eval_x, eval_y)
    report.update(calibration=calib_desc, evaluation=evaluation, checkpoint=str(checkpoint))
    fitted = None
    if predictor is not None:
        fitted, report["predictor"] = _fit_predictor(spec, calib_x, predictor, eval_x, eval_y)
    extra = {
        "provenance": {**prov, "method": meta["method"], "sizes": meta["sizes"]},
        "compile": report,
    }
    write_artifact(out, spec, extra, force=force, predictor=fitted)
    return extra


def _fit_predictor(spec: ModelSpec, calib_x, cfg, eval_x, eval_y):
    """The fitted :class:`~taugate.mlp_predictor.MLPPredictor` and its compile report: recall and
    computed share per hidden layer on the evaluation inputs, and the approximate accuracy."""
    from taugate.bench.predicted import quality
    from taugate.mlp_predictor import fit_mlp_predictor
    from taugate.runtime import CompiledModel

    fitted = fit_mlp_predictor(spec, np.asarray(calib_x, np.float32), cfg)
    rep = {"kind": cfg.kind, "rank": cfg.rank, "margin": fitted.manifest_json()["margin"]}
    if eval_x is None:
        return fitted, rep
    q = quality(CompiledModel(spec, predictor=fitted), eval_x, eval_y)
    rep.update(recall=q["recall_layers"], computed=q["computed_layers"], agreement=q["agreement"])
    if eval_y is not None:
        rep.update(accuracy_exact=q["accuracy_exact"], accuracy_predicted=q["accuracy_predicted"])
    return fitted, rep
