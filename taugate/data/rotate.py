"""Image rotation for the rotated-task protocol: bilinear, zero fill, vectorised over the batch.

Convention (matches ``scipy.ndimage.rotate(img, angle, reshape=False, order=1,
mode='grid-constant', cval=0)``): rotation about the centre ``((H-1)/2, (W-1)/2)``, a positive
angle turns the picture counter-clockwise (as ``np.rot90``). Output pixel ``(r, c)`` samples the
input at ``(cy + cos*(r-cy) + sin*(c-cx), cx - sin*(r-cy) + cos*(c-cx))`` by bilinear
interpolation, where every pixel outside the image counts as 0: a sample near the border blends
the edge pixels with zeros (it is not cut off), as scipy's 'grid-constant' mode does.

Sample coordinates within 1e-9 of an integer are snapped to it, so multiples of 90 degrees are
exact pixel permutations and 0 / 360 degrees give an exact copy.
"""

from __future__ import annotations

import math
import numbers
import threading
import weakref
from functools import lru_cache

import numpy as np

from taugate.data.registry import Dataset
from taugate.errors import TauGateError

__all__ = ["check_angle", "rotate_images", "rotated_split"]

_SNAP = 1e-9
_CHUNK = 128  # images per gather block: keeps the (chunk, 4, H*W) temporary in cache


def check_angle(angle) -> float:
    """``angle`` as a float; TauGateError unless it is a finite real number (not a bool)."""
    if isinstance(angle, bool) or not isinstance(angle, numbers.Real):
        raise TauGateError(f"rotation angle must be a finite number of degrees, got {angle!r}")
    a = float(angle)
    if not math.isfinite(a):
        raise TauGateError(f"rotation angle must be a finite number of degrees, got {a}")
    return a


def _cos_sin_deg(angle: float) -> tuple[float, float]:
    """cos/sin of degrees, exact at multiples of 90."""
    a = angle % 360.0
    exact = {0.0: (1.0, 0.0), 90.0: (0.0, 1.0), 180.0: (-1.0, 0.0), 270.0: (0.0, -1.0)}
    if a in exact:
        return exact[a]
    rad = math.radians(a)
    return math.cos(rad), math.sin(rad)


@lru_cache(maxsize=64)
def _plan(h: int, w: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Gather plan for one (H, W, angle): flat source indices and weights, both (4, H*W), one
    row per corner (top-left, top-right, bottom-left, bottom-right).

    Corners outside the image get weight 0 (and a harmless index 0): the zero fill.
    """
    cos, sin = _cos_sin_deg(angle)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    r, c = np.meshgrid(
        np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij"
    )
    dr, dc = (r - cy).ravel(), (c - cx).ravel()  # (H*W,)
    src_r = cy + cos * dr + sin * dc  # (H*W,)
    src_c = cx - sin * dr + cos * dc
    for s in (src_r, src_c):
        near = np.round(s)
        snap = np.abs(s - near) < _SNAP
        s[snap] = near[snap]
    r0, c0 = np.floor(src_r), np.floor(src_c)
    fr, fc = src_r - r0, src_c - c0  # fractional parts in [0, 1)
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    idx = np.empty((4, h * w), dtype=np.int64)
    wts = np.empty((4, h * w), dtype=np.float64)
    for k, (dy, dx, wy, wx) in enumerate(
        ((0, 0, 1 - fr, 1 - fc), (0, 1, 1 - fr, fc), (1, 0, fr, 1 - fc), (1, 1, fr, fc))
    ):
        rr, cc = r0 + dy, c0 + dx
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        idx[k] = np.where(inside, rr * w + cc, 0)
        wts[k] = np.where(inside, wy * wx, 0.0)
    idx.flags.writeable = False
    wts32 = wts.astype(np.float32)
    wts32.flags.writeable = False
    return idx, wts32


def rotate_images(images: np.ndarray, angle: float) -> np.ndarray:
    """Rotate every image of an (N, H, W) batch by ``angle`` degrees (counter-clockwise > 0).

    Returns a new (N, H, W) float32 array; angle 0 returns an exact copy. Each output pixel is
    summed in a fixed order, so an image's result does not depend on the batch it came in.
    """
    a = check_angle(angle)
    x = np.asarray(images)
    if x.ndim != 3:
        raise TauGateError(f"rotate_images expects an (N, H, W) batch, got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    n, h, w = x.shape
    if a % 360.0 == 0.0:
        return x.copy()
    idx, wts = _plan(h, w, a)  # (4, H*W) each
    flat = x.reshape(n, h * w)  # (N, H*W)
    out = np.empty((n, h * w), dtype=np.float32)
    for start in range(0, n, _CHUNK):  # blocks of images, not a per-image loop
        g = flat[start : start + _CHUNK][:, idx]  # (B, 4, H*W)
        g *= wts  # (B, 4, H*W) * (4, H*W)
        o = out[start : start + _CHUNK]  # (B, H*W) view
        np.add(g[:, 0], g[:, 1], out=o)
        o += g[:, 2]
        o += g[:, 3]
    return out.reshape(n, h, w)


_lock = threading.Lock()
_cache: weakref.WeakKeyDictionary[Dataset, dict[tuple[str, float], np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


def rotated_split(ds: Dataset, split: str, angle: float) -> np.ndarray:
    """The ``'train'`` or ``'test'`` images of ``ds`` rotated by ``angle``, flattened to
    (N, H*W) float32, C-contiguous and read-only.

    Computed once per (dataset object, split, angle) per process; later calls return the same
    array object. The cache holds the data set weakly: it is freed with the data set.
    """
    if not isinstance(ds, Dataset):
        raise TauGateError(f"rotated_split expects a Dataset, got {type(ds).__name__}")
    if split not in ("train", "test"):
        raise TauGateError(f"split must be 'train' or 'test', got {split!r}")
    a = check_angle(angle) + 0.0  # -0.0 -> 0.0
    key = (split, a)
    with _lock:
        per_ds = _cache.setdefault(ds, {})
        hit = per_ds.get(key)
        if hit is not None:
            return hit
        images = ds.x_train if split == "train" else ds.x_test
        n, h, w = images.shape
        out = np.ascontiguousarray(rotate_images(images, a).reshape(n, h * w))  # (N, H*W)
        out.flags.writeable = False
        per_ds[key] = out
        return out
