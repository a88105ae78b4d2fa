"""Inputs for a model, without torch: an ``.npy`` file, or a data set's split at a rotation angle.

Shared by ``compile`` (calibration / evaluation) and the torch-free ``predict`` and ``bench`` commands.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from taugate.errors import TauGateError


def target_angle(provenance: dict | None) -> float:
    """The mode a model was specialised to (``target_angle``, else ``angle``, else 0)."""
    prov = provenance or {}
    try:
        a = float(prov.get("target_angle", prov.get("angle", 0.0)))
    except (TypeError, ValueError):
        return 0.0
    return a if math.isfinite(a) else 0.0


def load_inputs(path: str | Path, n_in: int) -> np.ndarray:
    """Inputs from an ``.npy`` file: (N, n_in) or images (N, H, W) with H*W == n_in."""
    p = Path(path)
    try:
        x = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise TauGateError(f"input file {p} does not exist") from None
    except (ValueError, OSError) as e:
        raise TauGateError(f"{p}: not a numpy .npy array ({e})") from None
    if x.ndim == 3:
        x = x.reshape(len(x), -1)  # (N, H, W) -> (N, H*W)
    if x.ndim != 2 or x.shape[1] != n_in:
        raise TauGateError(f"{p}: expected shape (N, {n_in}), got {tuple(x.shape)}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise TauGateError(f"{p}: expected real numbers, got dtype {x.dtype}")
    return np.ascontiguousarray(x, np.float32)


def load_checked(name: str, data_dir, n_in: int, quiet: bool = False):
    """Data set ``name`` (see ``taugate.data.load_dataset``), with a clear error when it does not
    have the ``n_in`` features the model expects (naming the fallback when that is why)."""
    from taugate.data import load_dataset, require_features

    return require_features(load_dataset(name, data_dir, quiet=quiet), n_in, name)
