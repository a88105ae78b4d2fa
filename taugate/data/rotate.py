"""Image rotation for the rotated-task protocol: ``scipy.ndimage.rotate`` on the whole batch, and a
per-process cache of each data set's rotated splits.

Convention: ``scipy.ndimage.rotate(img, angle, reshape=False, order=1, mode='grid-constant',
cval=0)`` per image: rotation about the centre, a positive angle turns the picture
counter-clockwise (as ``np.rot90``), bilinear, every pixel outside the image counts as 0 (a sample
near the border blends the edge pixels with zeros). scipy takes sines and cosines in degrees
exactly, so quarter turns are exact pixel permutations; 0 (and 360) degrees give an exact copy.
What is ours: the angle check, the batch layout and the cache.
"""

from __future__ import annotations

import math
import numbers
import threading
import weakref

import numpy as np

from taugate.data.registry import Dataset
from taugate.errors import TauGateError

__all__ = ["check_angle", "rotate_images", "rotated_split"]


def check_angle(angle) -> float:
    """``angle`` as a float; TauGateError unless it is a finite real number (not a bool)."""
    if isinstance(angle, bool) or not isinstance(angle, numbers.Real):
        raise TauGateError(f"rotation angle must be a finite number of degrees, got {angle!r}")
    a = float(angle)
    if not math.isfinite(a):
        raise TauGateError(f"rotation angle must be a finite number of degrees, got {a}")
    return a


def rotate_images(images: np.ndarray, angle: float) -> np.ndarray:
    """Rotate every image of an (N, H, W) batch by ``angle`` degrees (counter-clockwise > 0).

    Returns a new (N, H, W) float32 array; a multiple of 360 degrees returns an exact copy. Each
    image's result does not depend on the batch it came in.
    """
    from scipy import ndimage

    a = check_angle(angle)
    x = np.asarray(images)
    if x.ndim != 3:
        raise TauGateError(f"rotate_images expects an (N, H, W) batch, got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if a % 360.0 == 0.0:
        return x.copy()
    # axes=(2, 1): the plane of (W, H), as ndimage.rotate's default axes=(1, 0) for one (H, W) image
    return ndimage.rotate(x, a, axes=(2, 1), reshape=False, order=1, mode="grid-constant", cval=0.0)


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
