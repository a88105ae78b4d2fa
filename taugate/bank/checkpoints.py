"""The ``taugate bank`` pipeline: checkpoints of one foundation -> a mode bank directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from taugate.bank.build import build_bank
from taugate.bank.format import Bank, check_bank_destination, write_bank
from taugate.bank.spec import check_modes
from taugate.errors import TauGateError


def _calibration(provs: dict, calib_data, calib_size: int, data_dir, quiet):
    """mode -> calibration inputs: the rows of an .npy / .npz file (shared by every mode), or
    ``calib_size`` training images (seed 0) of a data set (default: each checkpoint's own) at
    each mode's target angle."""
    from taugate.compile import check_inputs
    from taugate.inputs import load_checked, load_inputs, target_angle

    n_in = int(next(iter(provs.values()))["sizes"][0])
    if calib_data is not None and str(calib_data).endswith((".npy", ".npz")):
        x = check_inputs(load_inputs(calib_data, n_in), n_in, f"calibration file {calib_data}")
        x = x[:calib_size]
        return x, {"file": str(calib_data), "size": int(len(x))}
    from taugate.data import rotated_split

    loaded, out, desc = {}, {}, {}
    for name, prov in provs.items():
        ds_name = calib_data or prov.get("dataset")
        if not ds_name:
            raise TauGateError(
                f"mode {name!r} ({prov['checkpoint']}): no dataset in its "
                "provenance; pass --calib-data or --no-calib"
            )
        if ds_name not in loaded:
            loaded[ds_name] = load_checked(ds_name, data_dir, n_in, quiet)
        ds, angle = loaded[ds_name], target_angle(prov)
        x = rotated_split(ds, "train", angle)
        idx = np.sort(np.random.default_rng(0).permutation(len(x))[:calib_size])
        out[name] = x[idx]
        desc[name] = {**ds.provenance(), "angle": angle, "split": "train", "size": len(idx)}
    return out, desc


def bank_from_checkpoints(
    checkpoints: dict,
    out,
    *,
    calib_data: str | None = None,
    calib_size: int = 2000,
    calibrate: bool = True,
    compact: bool = True,
    data_dir=None,
    quiet: bool = False,
    force: bool = False,
) -> Bank:
    """Read ``checkpoints`` (mode name -> checkpoint ``.safetensors`` of ``taugate reproduce`` or
    ``save_checkpoint``), build the bank and write it to ``out`` (checked first).

    Calibration (unless ``calibrate`` is False: thresholds only): ``calib_data`` an ``.npy`` /
    ``.npz`` file (its first ``calib_size`` rows, for every mode) or a data set name (default:
    each checkpoint's own), sampled at each mode's target angle. Each mode's provenance is its
    checkpoint's, plus the method, sizes and checkpoint path."""
    from taugate.nn.checkpoint import load_checkpoint

    if not isinstance(checkpoints, dict) or not checkpoints:
        raise TauGateError("a bank needs at least one mode (NAME=CHECKPOINT)")
    if calib_size < 1:
        raise TauGateError(f"--calib-size must be >= 1, got {calib_size}")
    check_modes(list(checkpoints), "taugate bank")
    check_bank_destination(out, force=force)
    models, provs = {}, {}
    for name, path in checkpoints.items():
        model, meta = load_checkpoint(path)
        models[name] = model
        provs[name] = {
            **(meta.get("provenance") or {}),
            "method": meta["method"],
            "sizes": meta["sizes"],
            "checkpoint": str(Path(path)),
        }
    calib, desc = (None, None)
    if calibrate:
        calib, desc = _calibration(provs, calib_data, calib_size, data_dir, quiet)
    bank = build_bank(models, calib, compact=compact, provenance=provs)
    if desc is not None:
        bank = Bank(bank.spec, bank.provenance, {**bank.build, "calibration": desc})
    write_bank(out, bank, force=force)
    return bank
