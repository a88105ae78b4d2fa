"""IDX files (the MNIST / Fashion-MNIST format): a strict reader, a writer, and image/label checks.

Layout: magic ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 sizes, then the
payload in C order (big-endian for multi-byte types). Files may be gzip-compressed; gzip is
detected by its magic bytes ``1f 8b``, not by the file name. Every problem raises
:class:`TauGateError` with a one-line message that starts with the file path.

Why hand-written: the usual readers (``idx2numpy``, ``python-mnist``, torchvision's) trust the
header, so a truncated download, a wrong dtype code or trailing bytes give a reshape traceback or
silently wrong arrays. This one checks every size against the payload, is eighty lines of numpy,
and needs no further dependency.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from taugate.errors import TauGateError
from taugate.io import atomic_write_bytes

__all__ = ["IDX_DTYPES", "check_images_labels", "read_idx", "write_idx"]

# dtype code -> big-endian numpy dtype, as in the IDX spec (LeCun)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _dims_text(dims: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in dims) if dims else "()"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if it starts with the gzip magic."""
    if not path.exists():
        raise TauGateError(f"{path}: file does not exist")
    if not path.is_file():
        raise TauGateError(f"{path}: not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TauGateError(f"{path}: cannot read: {e.strerror or e}") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise TauGateError(f"{path}: truncated gzip stream (file cut short?)") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        raise TauGateError(f"{path}: corrupt gzip stream: {e}") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip or raw) into a writable native-endian array of the stored shape."""
    p = Path(path)
    data = _read_bytes(p)
    if len(data) < 4:
        raise TauGateError(f"{p}: not an IDX file: only {len(data)} bytes, need a 4-byte magic")
    if data[0] != 0 or data[1] != 0:
        raise TauGateError(
            f"{p}: not an IDX file: bad magic {data[:4].hex(' ')} (expected 00 00 <dtype> <ndim>)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise TauGateError(f"{p}: unknown IDX dtype code 0x{code:02X} (known: {known})")
    if not 1 <= ndim <= 4:
        raise TauGateError(f"{p}: unsupported IDX ndim {ndim} (expected 1..4)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise TauGateError(
            f"{p}: truncated header: {ndim} dims need {header} bytes but the file has {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow on absurd headers
    got = len(data) - header
    what = f"header says {_dims_text(dims)} {dtype.name} ({expected} bytes)"
    if got < expected:
        raise TauGateError(f"{p}: truncated: {what} but only {got} bytes follow")
    if got > expected:
        raise TauGateError(f"{p}: {got - expected} trailing bytes: {what} but {got} bytes follow")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)  # native order, writable


def write_idx(path: str | os.PathLike, array: np.ndarray, gz: bool = True) -> Path:
    """Write ``array`` (1-4 dims, an IDX dtype) as an IDX file, gzip-compressed if ``gz``, atomically."""
    a = np.asarray(array)
    code = _CODE_OF_KIND.get((a.dtype.kind, a.dtype.itemsize))
    if code is None:
        raise TauGateError(f"{path}: dtype {a.dtype} has no IDX code")
    if not 1 <= a.ndim <= 4:
        raise TauGateError(f"{path}: IDX needs 1..4 dims, got shape {a.shape}")
    header = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(a, dtype=IDX_DTYPES[code]).tobytes()
    blob = header + payload
    if gz:
        blob = gzip.compress(blob, compresslevel=6, mtime=0)
    return atomic_write_bytes(path, blob)


def check_images_labels(
    images: np.ndarray,
    labels: np.ndarray,
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    n_classes: int = 10,
) -> None:
    """Check an images/labels pair: uint8 (N, H, W) images, integer (N,) labels in 0..n_classes-1."""
    if images.ndim != 3:
        raise TauGateError(f"{images_path}: images must be 3-D (N, H, W), got shape {images.shape}")
    if images.dtype != np.uint8:
        raise TauGateError(f"{images_path}: images must be uint8 (dtype 0x08), got {images.dtype}")
    if labels.ndim != 1:
        raise TauGateError(f"{labels_path}: labels must be 1-D (N,), got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TauGateError(f"{labels_path}: labels must be integers, got {labels.dtype}")
    if images.shape[0] != labels.shape[0]:
        raise TauGateError(
            f"{labels_path}: {labels.shape[0]} labels but {images_path} holds "
            f"{images.shape[0]} images"
        )
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_classes:
            raise TauGateError(
                f"{labels_path}: labels must lie in 0..{n_classes - 1}, found range {lo}..{hi}"
            )
