"""Rotation: scipy reference, exact quarter turns, identity, angle checks, per-process cache."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import scipy.ndimage as ndi

from taugate.data import Dataset, rotate_images, rotated_split
from taugate.data import rotate as rot
from taugate.errors import TauGateError


def _batch(n=6, h=28, w=28, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, h, w)).astype(np.float32)


def _reference(images: np.ndarray, angle: float) -> np.ndarray:
    return np.stack(
        [
            ndi.rotate(im, angle, reshape=False, order=1, mode="grid-constant", cval=0.0)
            for im in images
        ]
    )


def _dataset(n_train=12, n_test=5, hw=(7, 9)) -> Dataset:
    rng = np.random.default_rng(1)
    return Dataset(
        "test",
        rng.random((n_train, *hw)).astype(np.float32),
        np.arange(n_train) % 10,
        rng.random((n_test, *hw)).astype(np.float32),
        np.arange(n_test) % 10,
        "synthetic",
        "none",
    )


@pytest.mark.parametrize("shape", [(28, 28), (7, 10), (9, 9)])
@pytest.mark.parametrize("angle", [17.0, 45, -30.0, 123.4, 200.0, 0.001, -721.5])
def test_matches_scipy(shape, angle):
    x = _batch(5, *shape)
    got = rotate_images(x, angle)
    ref = _reference(x, angle)
    assert got.shape == x.shape and got.dtype == np.float32
    # 'grid-constant' (zero fill, blended at the border) matches everywhere, not only inside
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got[:, 3:-3, 3:-3], ref[:, 3:-3, 3:-3], atol=1e-5, rtol=0)


@pytest.mark.parametrize("k,angle", [(1, 90), (2, 180), (3, 270), (3, -90), (1, 450.0)])
def test_quarter_turns_are_exact_permutations(k, angle):
    x = _batch(3, 8, 8)
    np.testing.assert_array_equal(rotate_images(x, angle), np.rot90(x, k=k, axes=(1, 2)))
    y = _batch(2, 5, 5)
    np.testing.assert_array_equal(rotate_images(y, angle), np.rot90(y, k=k, axes=(1, 2)))


def test_zero_is_an_exact_copy_and_360_is_identity():
    x = _batch()
    y = rotate_images(x, 0)
    assert y is not x and not np.shares_memory(x, y)
    np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(rotate_images(x, 360.0), x, atol=1e-6)
    np.testing.assert_allclose(rotate_images(x, -360), x, atol=1e-6)


def test_batch_equals_one_by_one_and_any_dtype():
    x = _batch(300, 6, 6)  # more than one gather block
    whole = rotate_images(x, 33.3)
    for i in (0, 255, 256, 299):
        np.testing.assert_array_equal(whole[i], rotate_images(x[i : i + 1], 33.3)[0])
    u8 = (x * 255).astype(np.uint8)
    out = rotate_images(u8, 10)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, rotate_images(u8.astype(np.float32), 10))


@pytest.mark.parametrize("bad", ["45", None, float("nan"), float("inf"), True, [1.0], 1j])
def test_angle_must_be_a_finite_number(bad):
    with pytest.raises(TauGateError, match="finite number"):
        rotate_images(_batch(), bad)
    with pytest.raises(TauGateError, match="finite number"):
        rotated_split(_dataset(), "train", bad)


def test_numpy_scalars_are_angles():
    x = _batch(2)
    np.testing.assert_array_equal(rotate_images(x, np.float32(30)), rotate_images(x, 30.0))
    np.testing.assert_array_equal(rotate_images(x, np.int64(90)), rotate_images(x, 90))


def test_images_must_be_a_batch():
    with pytest.raises(TauGateError, match=r"\(N, H, W\)"):
        rotate_images(np.zeros((28, 28)), 10)


def test_rotated_split_cache_identity():
    ds = _dataset()
    a = rotated_split(ds, "train", 30)
    assert a.shape == (12, 63) and a.dtype == np.float32 and a.flags.c_contiguous
    assert not a.flags.writeable
    assert rotated_split(ds, "train", 30.0) is a
    np.testing.assert_array_equal(a, rotate_images(ds.x_train, 30).reshape(12, 63))
    assert rotated_split(ds, "test", 30) is not a
    assert rotated_split(ds, "test", 30).shape == (5, 63)
    assert rotated_split(ds, "train", 31) is not a
    zero = rotated_split(ds, "train", 0)
    assert rotated_split(ds, "train", -0.0) is zero
    np.testing.assert_array_equal(zero, ds.x_train.reshape(12, 63))
    assert not np.shares_memory(zero, ds.x_train)
    other = _dataset()  # same content, other object: its own cache entry
    assert rotated_split(other, "train", 30) is not a
    with pytest.raises(TauGateError, match="'train' or 'test'"):
        rotated_split(ds, "val", 30)
    with pytest.raises(TauGateError, match="expects a Dataset"):
        rotated_split(ds.x_train, "train", 30)


def test_rotated_split_cache_is_freed_with_the_dataset():
    ds = _dataset()
    rotated_split(ds, "test", 12)
    n = len(rot._cache)
    del ds
    gc.collect()
    assert len(rot._cache) == n - 1
