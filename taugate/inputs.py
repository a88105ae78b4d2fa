"""Inputs for a model, without torch: the rules of ``predict`` (:func:`as_batch`), ``.npy`` /
``.npz`` files, or a data set's split at a rotation angle.

Shared by the runtime, ``compile`` (calibration / evaluation) and the ``predict`` and ``bench``
commands.
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


def as_float32(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` as float32, the rule of ``CompiledModel.predict`` and of input files: float, integer
    and bool values are converted (beyond float32 they become inf, which callers refuse); any other
    dtype is an error starting with ``what``."""
    if x.dtype.kind not in "fiub":
        raise TauGateError(f"{what} dtype {x.dtype} is not supported (need real numbers)")
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(np.float32, copy=False)


_F32 = np.dtype(np.float32)


def as_batch(x, n_in: int) -> np.ndarray:
    """``x`` as the C-contiguous float32 (B >= 1, n_in) batch every backend takes.

    A 1-D (n_in,) vector is a batch of one; float, integer and bool inputs are converted (values
    beyond float32 become inf, refused by the finiteness check of the kernels); complex, object
    and string inputs, a wrong rank or feature count and an empty batch are errors; a
    non-contiguous array is copied. An array that is already right is returned as is (fast).
    """
    if (
        type(x) is np.ndarray
        and x.dtype is _F32
        and x.ndim == 2
        and x.shape[1] == n_in
        and x.shape[0]
        and x.flags.c_contiguous
    ):
        return x  # the hot path: already what every backend takes
    if type(x) is not np.ndarray:
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as e:
            raise TauGateError(f"input is not a numeric array: {e}") from None
    if x.dtype != _F32:
        x = as_float32(x, "input")
    if x.ndim == 1:
        x = x.reshape(1, -1)  # (n_in,) -> (1, n_in)
    elif x.ndim != 2:
        raise TauGateError(
            f"input must be 2-D (batch, {n_in}) or 1-D ({n_in},), got shape {x.shape}"
        )
    if x.shape[1] != n_in:
        raise TauGateError(f"input has {x.shape[1]} features per row, expected {n_in}")
    if x.shape[0] == 0:
        raise TauGateError("input batch is empty (0 rows)")
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def load_inputs(path: str | Path, n_in: int) -> np.ndarray:
    """Inputs (N, n_in) float32 from an ``.npy`` file, or an ``.npz`` holding exactly one array.

    Same rules as ``CompiledModel.predict``: (N, n_in) rows, a 1-D (n_in,) vector is one row, and
    images (N, H, W) with H*W == n_in are flattened; float, integer and bool values are converted
    to float32; complex, datetime / timedelta, object, string and structured arrays are refused.
    NaN or inf (also a value too large for float32) is an error naming the row of the file.
    """
    p = Path(path)
    x = as_float32(_load_array(p), f"{p}:")
    if x.ndim == 1:
        x = x.reshape(1, -1)  # (n_in,) -> (1, n_in)
    elif x.ndim == 3:
        x = x.reshape(x.shape[0], x.shape[1] * x.shape[2])  # (N, H, W) -> (N, H*W)
    if x.ndim != 2 or x.shape[1] != n_in:
        raise TauGateError(
            f"{p}: expected shape (N, {n_in}), got {tuple(x.shape)} (also accepted: one row "
            f"({n_in},), or images (N, H, W) with H*W == {n_in})"
        )
    x = np.ascontiguousarray(x)
    ok = np.isfinite(x).all(axis=1)  # (N,)
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        raise TauGateError(
            f"{p}: NaN or inf at row {row} (of {len(x)}; values beyond float32 count as inf)"
        )
    return x


def _load_array(p: Path) -> np.ndarray:
    """The array in an ``.npy`` file, or the only array in an ``.npz`` file."""
    try:
        loaded = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise TauGateError(f"input file {p} does not exist") from None
    except IsADirectoryError:
        raise TauGateError(
            f"input file {p} is a directory; expected an .npy or .npz file"
        ) from None
    except (ValueError, OSError, EOFError) as e:
        raise _unreadable(p, e) from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:  # NpzFile
        names = list(loaded.files)
        if len(names) != 1:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise TauGateError(
                f"{p}: an .npz input must hold exactly one array, found {len(names)}"
                + (f" ({shown})" if names else "")
            )
        try:
            return loaded[names[0]]
        except (ValueError, OSError, EOFError) as e:
            raise _unreadable(p, e) from None


def _unreadable(p: Path, e: Exception) -> TauGateError:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if text.startswith("Object arrays cannot be loaded"):  # never unpickled
        return TauGateError(f"{p}: dtype object is not supported (need real numbers)")
    if "pickled" in text:
        text = "it holds pickled data, which is never loaded"
    return TauGateError(f"{p}: not a numpy .npy / .npz array ({text})")


def load_checked(name: str, data_dir, n_in: int, quiet: bool = False):
    """Data set ``name`` (see ``taugate.data.load_dataset``), with a clear error when it does not
    have the ``n_in`` features the model expects (naming the fallback when that is why)."""
    from taugate.data import load_dataset, require_features

    return require_features(load_dataset(name, data_dir, quiet=quiet), n_in, name)
