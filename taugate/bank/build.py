"""Build a mode bank from TauGate models of one frozen base (:func:`build_bank`), save it
(:func:`save_bank`).

Each model is read out like ``taugate compile`` reads one (``taugate.compile_structure.extract``),
then every mode's Linear weights and biases must equal the first mode's exactly: the bank stores
them once. Compaction drops a hidden unit only when it fires in no mode: with calibration inputs,
when its gate opens (``z > max(tau, 0)``) on none of them in any mode (the rule of ``taugate
compile`` at ``min_rate`` 0, taken over every mode); without, only when its threshold is +inf in
every mode, so it can never open. A layer where nothing would be kept keeps its one most active
unit (the lowest threshold without calibration), as ``compile`` does. The gains stay per mode.
"""

from __future__ import annotations

import numpy as np

from taugate.bank.format import Bank, write_bank
from taugate.bank.spec import BankSpec, check_modes
from taugate.errors import TauGateError


def _base_error(name: str, first: str, i: int, what: str) -> TauGateError:
    return TauGateError(
        f"mode {name!r} layer {i}: {what} differs from mode {first!r}; the models "
        "do not share one frozen base (a bank holds TauGate models of one "
        "foundation: TauGate / TauOnly / GainOnly, not LoRA, BitFit or Full FT)"
    )


def _read(models: dict) -> dict:
    """name -> ``Extracted`` of each model, checked to share the first model's base."""
    from torch import nn

    from taugate.compile_structure import extract
    from taugate.nn.gate import TauGate

    if not isinstance(models, dict) or not models:
        raise TauGateError("build_bank needs a non-empty dict of mode name -> model")
    check_modes(list(models), "build_bank")
    out, first = {}, next(iter(models))
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TauGateError(
                f"mode {name!r}: expected a torch nn.Module, got {type(model).__name__}"
            )
        try:
            ex = extract(model)
        except TauGateError as e:
            raise TauGateError(f"mode {name!r}: {e}") from None
        other = [g.activation for g in model.modules() if isinstance(g, TauGate)]
        if any(a != "relu" for a in other):
            bad = next(a for a in other if a != "relu")
            raise TauGateError(
                f"mode {name!r}: a TauGate with activation {bad!r}; a bank, like "
                "an artifact, holds ReLU gates only"
            )
        out[name] = ex
        ref = out[first]
        if len(ex.weights) != len(ref.weights):
            raise TauGateError(
                f"mode {name!r} has {len(ex.weights)} linear layers, mode "
                f"{first!r} has {len(ref.weights)}; the models do not share one "
                "base"
            )
        for i, (w, b, w0, b0) in enumerate(zip(ex.weights, ex.biases, ref.weights, ref.biases)):
            if w.shape != w0.shape:
                raise TauGateError(
                    f"mode {name!r} layer {i}: weight shape {w.shape}, mode "
                    f"{first!r} has {w0.shape}; the models do not share one base"
                )
            if not np.array_equal(w, w0):
                diff = float(np.abs(w.astype(np.float64) - w0).max())
                raise _base_error(name, first, i, f"weight (max |diff| {diff:.3g})")
            if not np.array_equal(b, b0):
                raise _base_error(name, first, i, "bias")
    return out


def _check_calib(calib_x, modes, n_in: int) -> dict | None:
    """mode -> calibration inputs (N, n_in) float32: one array for all, or one per mode."""
    from taugate.compile import check_inputs

    if calib_x is None:
        return None
    if isinstance(calib_x, dict):
        missing = [n for n in modes if n not in calib_x]
        unknown = sorted(set(calib_x) - set(modes))
        if missing or unknown:
            bad = f"has no entry for mode {missing[0]!r}" if missing else f"names {unknown[0]!r}"
            raise TauGateError(
                f"calib_x {bad} (give one array, or one per mode: {', '.join(modes)})"
            )
        return {
            n: np.asarray(
                check_inputs(calib_x[n], n_in, f"calibration data of mode {n!r}"), np.float32
            )
            for n in modes
        }
    x = np.asarray(check_inputs(calib_x, n_in, "calibration data"), np.float32)
    return dict.fromkeys(modes, x)


def open_rates(spec: BankSpec, calib: dict, chunk: int = 2048) -> dict[str, list[np.ndarray]]:
    """Per mode, per hidden layer, the share of that mode's calibration inputs on which each unit's
    gate is open (float32, the arithmetic of the runtime)."""
    rates = {}
    for m, name in enumerate(spec.modes):
        x = calib[name]
        counts = [np.zeros(e.n_out) for e in spec.layers[:-1]]
        for s in range(0, len(x), chunk):
            outs = list(spec.layer_outputs(x[s : s + chunk], m))[:-1]
            for c, (_z, is_open, _h) in zip(counts, outs, strict=True):
                c += is_open.sum(axis=0)  # (out,)
        rates[name] = [c / len(x) for c in counts]
    return rates


def _keep(spec: BankSpec, rates: dict | None) -> list[np.ndarray]:
    """Per hidden layer, the units that open in some mode (see the module docstring)."""
    thr, _ = spec.tables
    keep = []
    for i, e in enumerate(spec.layers[:-1]):
        if rates is not None:
            score = np.max([r[i] for r in rates.values()], axis=0)  # (out,) best mode's rate
            k = np.flatnonzero(score > 0)
        elif thr[i] is None:
            score, k = np.zeros(e.n_out), np.arange(e.n_out)
        else:
            score = -thr[i].min(axis=0)  # (out,) the lowest threshold over modes, negated
            k = np.flatnonzero(np.isfinite(score))
        keep.append(k if len(k) else np.array([int(np.argmax(score))]))
    return [k.astype(np.int64) for k in keep]


def _torch_diff(model, got: np.ndarray, x: np.ndarray) -> float:
    """Largest |logit| difference between the hard-gated torch model on ``x`` (eval mode; its
    gates and training flag are restored afterwards) and the bank's logits ``got``."""
    import torch

    from taugate.nn.gate import TauGate
    from taugate.nn.model import harden_

    hard = {g: g.hard for g in model.modules() if isinstance(g, TauGate)}
    training = model.training
    harden_(model.eval(), True)
    try:
        with torch.no_grad():
            ref = model(torch.from_numpy(np.require(x, np.float32, ["C", "W"]))).numpy()
    finally:
        for g, h in hard.items():
            g.hard = h
        model.train(training)
    return float(np.abs(got - ref).max())


def build_bank(
    models: dict, calib_x=None, *, compact: bool = True, provenance: dict | None = None
) -> Bank:
    """A :class:`~taugate.bank.format.Bank` of ``models`` (mode name -> TauGate model, as
    ``taugate.nn.build_method`` builds them from one frozen foundation).

    ``calib_x``: calibration inputs (N, n_in), one array for every mode or a dict mode -> array
    (each mode's own target inputs); None: compact by the thresholds alone (see the module doc).
    ``compact=False`` keeps every unit. ``provenance``: mode -> JSON object (data set, angle,
    ...). The build report (``Bank.build``) lists the units kept and, with calibration, the
    firing rates and the largest difference from each hard-gated torch model on its inputs.
    """
    read = _read(models)
    first = next(iter(read.values()))
    full = BankSpec.build(
        first.weights, first.biases, {n: (ex.taus[:-1], ex.gammas[:-1]) for n, ex in read.items()}
    )
    calib = _check_calib(calib_x, full.modes, full.layers[0].n_in)
    rates = None if calib is None else open_rates(full, calib)
    keep = _keep(full, rates) if compact else [np.arange(e.n_out) for e in full.layers[:-1]]
    spec = full.compact(keep)
    report: dict = {
        "compact": bool(compact),
        "calibration": "none (thresholds only)"
        if calib is None
        else {n: {"size": int(len(x))} for n, x in calib.items()},
        "units_original": [e.n_out for e in full.layers[:-1]],
        "units_kept": [int(len(k)) for k in keep],
    }
    if calib is not None:
        report["open_rate_mean"] = {n: [float(r.mean()) for r in rs] for n, rs in rates.items()}
        report["max_abs_diff_vs_torch"] = {
            n: _torch_diff(models[n], spec.forward(calib[n], spec.mode_index(n))[0], calib[n])
            for n in spec.modes
        }
    return Bank(spec, provenance or {}, report)


def save_bank(bank: Bank, path, *, force: bool = False):
    """Write ``bank`` as ``NAME.taugate-bank/`` (see :func:`taugate.bank.format.write_bank`)."""
    return write_bank(path, bank, force=force)
