"""IDX reader / writer: round trips and every kind of broken file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from taugate.data import load_dataset, read_idx, write_idx
from taugate.data.idx import check_images_labels
from taugate.errors import TauGateError


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("TAUGATE_DATA_DIR", raising=False)
    monkeypatch.setenv("TAUGATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TAUGATE_OFFLINE", "1")


def _raw_idx(array: np.ndarray) -> bytes:
    """Uncompressed IDX bytes for a uint8 array (built by hand, independent of write_idx)."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _assert_error(path, match: str | None = None) -> TauGateError:
    with pytest.raises(TauGateError) as info:
        read_idx(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "\n" not in msg
    if match is not None:
        assert match in msg, msg
    return info.value


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize(
    "dtype,shape",
    [
        ("u1", (3, 4, 5)),
        ("i1", (7,)),
        (">i2", (2, 3)),
        ("<i4", (2, 2, 2, 2)),
        ("f4", (4, 3)),
        ("f8", (5,)),
    ],
)
def test_round_trip(tmp_path, gz, dtype, shape):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(shape) * 50).astype(dtype)
    path = write_idx(tmp_path / "a.idx", a, gz=gz)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    b = read_idx(path)
    assert b.shape == a.shape
    assert b.dtype.kind == np.dtype(dtype).kind and b.dtype.itemsize == np.dtype(dtype).itemsize
    assert b.dtype.isnative
    np.testing.assert_array_equal(a, b)
    b[...] = 0  # writable


def test_reader_matches_hand_made_bytes_and_detects_gzip_by_magic(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = tmp_path / "images.gz"  # misleading name: not compressed
    raw.write_bytes(_raw_idx(a))
    np.testing.assert_array_equal(read_idx(raw), a)
    packed = tmp_path / "images-idx3-ubyte"  # no .gz but compressed
    packed.write_bytes(gzip.compress(_raw_idx(a)))
    np.testing.assert_array_equal(read_idx(packed), a)


def test_wrong_magic(tmp_path):
    p = tmp_path / "bad-magic"
    p.write_bytes(b"\x01\x02\x08\x01" + np.array([3], ">u4").tobytes() + b"abc")
    _assert_error(p, "bad magic")


def test_bad_dtype_code(tmp_path):
    p = tmp_path / "bad-dtype.gz"
    p.write_bytes(gzip.compress(b"\x00\x00\x0a\x01" + np.array([3], ">u4").tobytes() + b"abc"))
    _assert_error(p, "dtype code 0x0A")


@pytest.mark.parametrize("ndim", [0, 5])
def test_bad_ndim(tmp_path, ndim):
    p = tmp_path / "bad-ndim"
    p.write_bytes(bytes([0, 0, 8, ndim]) + np.ones(ndim, ">u4").tobytes() + b"x")
    _assert_error(p, f"ndim {ndim}")


def test_too_short_for_magic_and_header(tmp_path):
    p = tmp_path / "tiny"
    p.write_bytes(b"\x00\x00")
    _assert_error(p, "only 2 bytes")
    q = tmp_path / "short-header"
    q.write_bytes(b"\x00\x00\x08\x03" + np.array([2, 2], ">u4").tobytes())
    _assert_error(q, "truncated header")


def test_truncated_payload(tmp_path):
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    blob = _raw_idx(np.zeros((10, 28, 28), np.uint8))
    p.write_bytes(gzip.compress(blob[: 16 + 123]))
    _assert_error(p, "truncated: header says 10x28x28 uint8 (7840 bytes) but only 123 bytes follow")


def test_trailing_bytes(tmp_path):
    p = tmp_path / "trailing"
    p.write_bytes(_raw_idx(np.zeros((2, 3), np.uint8)) + b"\x00\x01")
    _assert_error(p, "2 trailing bytes")


def test_truncated_gzip_stream(tmp_path):
    p = tmp_path / "cut.gz"
    blob = gzip.compress(_raw_idx(np.arange(4000, dtype=np.uint32).astype(np.uint8)))
    p.write_bytes(blob[: len(blob) // 2])
    _assert_error(p, "truncated gzip")


def test_gzip_crc_error(tmp_path):
    p = tmp_path / "crc.gz"
    blob = bytearray(gzip.compress(_raw_idx(np.arange(100, dtype=np.uint8))))
    blob[-8] ^= 0xFF  # first byte of the CRC32 trailer
    p.write_bytes(bytes(blob))
    _assert_error(p, "corrupt gzip")


def test_missing_file(tmp_path):
    _assert_error(tmp_path / "nope" / "train-labels-idx1-ubyte.gz", "does not exist")


def test_write_rejects_bad_arrays(tmp_path):
    with pytest.raises(TauGateError, match="no IDX code"):
        write_idx(tmp_path / "a", np.zeros(3, np.uint16), gz=False)
    with pytest.raises(TauGateError, match="1..4 dims"):
        write_idx(tmp_path / "a", np.zeros((1, 1, 1, 1, 1), np.uint8), gz=False)


def test_check_images_labels():
    img = np.zeros((5, 2, 2), np.uint8)
    lab = np.arange(5, dtype=np.uint8)
    check_images_labels(img, lab, "imgs", "labs")  # fine
    cases = [
        (img, lab[:4], "labs: 4 labels but imgs holds 5 images"),
        (img[0], lab, "imgs: images must be 3-D"),
        (img.astype(np.float32), lab, "imgs: images must be uint8"),
        (img, lab.reshape(5, 1), "labs: labels must be 1-D"),
        (img, lab.astype(np.float32), "labs: labels must be integers"),
        (img, lab + 6, "labs: labels must lie in 0..9, found range 6..10"),
    ]
    for images, labels, msg in cases:
        with pytest.raises(TauGateError) as info:
            check_images_labels(images, labels, "imgs", "labs")
        assert msg in str(info.value)


def test_count_mismatch_in_a_data_dir_names_the_files(tmp_path):
    folder = tmp_path / "data" / "mnist"
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((30, 4, 4), np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(29, np.uint8))
    with pytest.raises(TauGateError) as info:
        load_dataset("mnist-10k", tmp_path / "data")
    msg = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz: 29 labels" in msg
    assert "t10k-images-idx3-ubyte.gz holds 30 images" in msg


def test_absurd_header_sizes_do_not_overflow(tmp_path):
    p = tmp_path / "huge"
    p.write_bytes(b"\x00\x00\x0e\x04" + np.full(4, 0xFFFFFFFF, ">u4").tobytes() + b"x" * 8)
    _assert_error(p, "truncated: header says 4294967295x4294967295x4294967295x4294967295 float64")
