"""Data set resolution: data dir, env, cache, file:// downloads, md5 checks, fallback, splits."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import taugate.data.download as dl
from taugate.data import Dataset, default_cache_dir, list_datasets, load_dataset, write_idx
from taugate.data.registry import stratified_split
from taugate.errors import TauGateError

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No real data dir / cache, offline by default, and no URL but file:// can be opened."""
    monkeypatch.delenv("TAUGATE_DATA_DIR", raising=False)
    monkeypatch.setenv("TAUGATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TAUGATE_OFFLINE", "1")
    real = urllib.request.urlopen

    def file_only(url, *args, **kwargs):
        assert str(url).startswith("file:"), f"test tried the network: {url}"
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", file_only)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_idx_set(folder: Path, n_train=40, n_test=20, hw=(5, 6), seed=0, gz=True, files=FILES):
    """Tiny fake MNIST-style IDX files in ``folder``; returns {canonical name: md5}."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": ((np.arange(n_train) + seed) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": ((np.arange(n_test) + seed) % 10).astype(np.uint8),
    }
    sums = {}
    for name in files:
        path = folder / (name if gz else name[: -len(".gz")])
        write_idx(path, arrays[name], gz=gz)
        sums[name] = _md5(path)
    return sums


def test_list_and_unknown_name():
    assert list_datasets() == ["mnist", "mnist-10k", "fashion-mnist", "digits"]
    with pytest.raises(TauGateError, match="unknown dataset 'cifar'; known: mnist, mnist-10k"):
        load_dataset("cifar")


def test_data_dir_argument_wins_over_env_and_cache(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "arg" / "mnist", n_test=20)
    make_idx_set(tmp_path / "env" / "mnist", n_test=30)
    make_idx_set(tmp_path / "cache" / "mnist", n_test=40)
    monkeypatch.setenv("TAUGATE_DATA_DIR", str(tmp_path / "env"))
    ds = load_dataset("mnist", tmp_path / "arg")
    assert ds.source == f"data-dir:{tmp_path / 'arg' / 'mnist'}"
    assert ds.x_test.shape == (20, 5, 6)
    assert ds.split == "official 40/20"
    env = load_dataset("mnist")
    assert env.source == f"data-dir:{tmp_path / 'env' / 'mnist'}" and len(env.y_test) == 30
    monkeypatch.delenv("TAUGATE_DATA_DIR")
    cached = load_dataset("mnist")
    assert cached.source == f"cache:{tmp_path / 'cache' / 'mnist'}" and len(cached.y_test) == 40


def test_values_dtypes_and_provenance(tmp_path):
    make_idx_set(tmp_path / "fashion-mnist", gz=False)  # raw names are accepted too
    ds = load_dataset("fashion-mnist", tmp_path)
    assert ds.name == "fashion-mnist"
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    raw = np.random.default_rng(0).integers(0, 256, (40, 5, 6), dtype=np.uint8)
    np.testing.assert_array_equal(ds.x_train, raw.astype(np.float32) / 255.0)
    assert (ds.image_shape, ds.n_features, ds.n_classes) == ((5, 6), 30, 10)
    prov = json.loads(json.dumps(ds.provenance()))
    assert prov == {
        "dataset": "fashion-mnist",
        "source": f"data-dir:{tmp_path / 'fashion-mnist'}",
        "split": "official 40/20",
        "n_train": 40,
        "n_test": 20,
        "image_shape": [5, 6],
    }


def test_missing_data_dir_raises(tmp_path, monkeypatch):
    with pytest.raises(TauGateError, match="data dir .*nowhere does not exist"):
        load_dataset("mnist", tmp_path / "nowhere")
    monkeypatch.setenv("TAUGATE_DATA_DIR", str(tmp_path / "gone"))
    with pytest.raises(TauGateError, match="gone does not exist .*TAUGATE_DATA_DIR"):
        load_dataset("mnist")


def test_corrupt_file_raises_instead_of_falling_back(tmp_path):
    make_idx_set(tmp_path / "data" / "mnist")
    bad = tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-20])
    with pytest.raises(TauGateError, match="train-images-idx3-ubyte.gz: truncated gzip"):
        load_dataset("mnist", tmp_path / "data")
    make_idx_set(tmp_path / "cache" / "mnist")  # a corrupt cached file raises too
    labels = tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(b"garbage!")
    with pytest.raises(TauGateError, match="t10k-labels-idx1-ubyte.gz: not an IDX file"):
        load_dataset("mnist")


def test_download_into_cache_with_checksums_argument(tmp_path):
    sums = make_idx_set(tmp_path / "mirror")
    base = (tmp_path / "mirror").as_uri() + "/"
    ds = load_dataset("mnist", download=True, mirrors={"mnist": [base]}, checksums={"mnist": sums})
    assert ds.source == f"download:{base}"
    cache = tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)  # no temp files left
    again = load_dataset("mnist", download=False)
    assert again.source == f"cache:{cache}"
    np.testing.assert_array_equal(again.x_train, ds.x_train)


def test_download_verified_against_patched_table_and_env_not_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("TAUGATE_OFFLINE")  # download=None now means: download
    sums = make_idx_set(tmp_path / "mirror", files=FILES[2:])
    monkeypatch.setitem(dl.CHECKSUMS, "mnist", sums)
    base = (tmp_path / "mirror").as_uri()
    ds = load_dataset("mnist-10k", mirrors={"mnist": [base]})  # needs only the t10k files
    assert ds.source == f"download:{base}"
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(FILES[2:])
    assert (len(ds.y_train), len(ds.y_test)) == (16, 4)


def test_md5_mismatch_on_every_mirror_raises_and_leaves_no_file(tmp_path):
    sums = make_idx_set(tmp_path / "m1")
    make_idx_set(tmp_path / "m2", seed=1)
    wrong = {**sums, FILES[0]: "0" * 32}
    bases = [(tmp_path / m).as_uri() + "/" for m in ("m1", "m2")]
    with pytest.raises(TauGateError) as info:
        load_dataset("mnist", download=True, mirrors={"mnist": bases}, checksums={"mnist": wrong})
    msg = str(info.value)
    assert f"{bases[0]}{FILES[0]}: md5 mismatch: expected {'0' * 32}, got {sums[FILES[0]]}" in msg
    assert bases[1] in msg and "\n" not in msg
    cache = tmp_path / "cache" / "mnist"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_first_mirror_failing_then_second_used(tmp_path):
    sums = make_idx_set(tmp_path / "good")
    make_idx_set(tmp_path / "other", seed=7)  # right names, wrong bytes: md5 mismatch
    missing = (tmp_path / "missing").as_uri() + "/"
    other = (tmp_path / "other").as_uri() + "/"
    good = (tmp_path / "good").as_uri() + "/"
    for first in (missing, other):
        mirrors = {"mnist": [first, good]}
        ds = load_dataset("mnist", download=True, mirrors=mirrors, checksums={"mnist": sums})
        assert ds.source == f"download:{good}"
        for name in FILES:
            assert _md5(tmp_path / "cache" / "mnist" / name) == sums[name]
            (tmp_path / "cache" / "mnist" / name).unlink()


def test_all_mirrors_unreachable_falls_back_loudly(tmp_path, capsys):
    sums = make_idx_set(tmp_path / "m")
    bad = [(tmp_path / x).as_uri() for x in ("nope1", "nope2")]
    ds = load_dataset("mnist", download=True, mirrors={"mnist": bad}, checksums={"mnist": sums})
    assert ds.name == "digits" and ds.source == "fallback:sklearn-digits"
    err = capsys.readouterr().err
    assert "nope1/train-images-idx3-ubyte.gz" in err and "nope2/" in err


def test_offline_falls_back_to_digits_with_warning(tmp_path, capsys):
    sums = make_idx_set(tmp_path / "mirror")
    mirrors = {"mnist": [(tmp_path / "mirror").as_uri()]}
    ds = load_dataset("mnist", mirrors=mirrors, checksums={"mnist": sums})  # TAUGATE_OFFLINE=1
    assert ds.name == "digits"
    assert ds.source == "fallback:sklearn-digits"
    assert "fallback for unavailable 'mnist'" in ds.split
    assert ds.image_shape == (8, 8)
    err = capsys.readouterr().err
    assert "WARNING: data set 'mnist' is not available" in err
    assert "--data-dir" in err and "TAUGATE_DATA_DIR" in err
    assert "download: disabled (TAUGATE_OFFLINE=1)" in err
    assert len(err.splitlines()) > 5
    assert not (tmp_path / "cache" / "mnist").exists()  # nothing was downloaded
    load_dataset("fashion-mnist", quiet=True)
    assert capsys.readouterr().err == ""
    # an explicit download=True beats the env switch; download=False beats its absence
    ds = load_dataset("mnist", download=True, mirrors=mirrors, checksums={"mnist": sums})
    assert ds.source.startswith("download:")


def test_download_false_without_offline_env(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TAUGATE_OFFLINE")
    ds = load_dataset("mnist-10k", download=False)
    assert ds.source == "fallback:sklearn-digits"
    assert "download: disabled (download=False)" in capsys.readouterr().err


def test_digits_direct():
    ds = load_dataset("digits")
    assert ds.source == "embedded:sklearn-digits"
    assert ds.x_train.shape[1:] == (8, 8) and len(ds.y_train) + len(ds.y_test) == 1797
    assert len(ds.y_test) == 359
    assert ds.x_train.dtype == np.float32 and 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    assert set(np.unique(ds.y_test)) == set(range(10))


def _make_t10k(folder: Path, n=10000):
    """Unbalanced labels; each image's two first pixels encode its index (to check disjointness)."""
    rng = np.random.default_rng(3)
    labels = rng.choice(10, size=n, p=np.linspace(1, 3, 10) / np.linspace(1, 3, 10).sum())
    images = np.zeros((n, 2, 2), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return labels


def _ids(x: np.ndarray) -> np.ndarray:
    px = np.rint(x * 255).astype(np.int64)
    return px[:, 0, 0] * 256 + px[:, 0, 1]


def test_mnist_10k_split(tmp_path):
    labels = _make_t10k(tmp_path / "mnist")
    a = load_dataset("mnist-10k", tmp_path)
    b = load_dataset("mnist-10k", tmp_path)
    assert (len(a.y_train), len(a.y_test)) == (8000, 2000)
    assert a.split == "stratified 8000/2000 of official t10k (seed 0)"
    np.testing.assert_array_equal(a.x_train, b.x_train)  # deterministic across calls
    np.testing.assert_array_equal(a.y_test, b.y_test)
    tr, te = _ids(a.x_train), _ids(a.x_test)
    assert len(np.intersect1d(tr, te)) == 0
    assert sorted(np.concatenate([tr, te])) == list(range(10000))
    np.testing.assert_array_equal(a.y_test, labels[te])
    ideal = np.bincount(labels, minlength=10) * 0.2
    assert np.all(np.abs(np.bincount(a.y_test, minlength=10) - ideal) <= 1)


def test_stratified_split_edge_cases():
    y = np.array([0] * 7 + [1] * 3 + [2] * 1)
    tr, te = stratified_split(y, 0.5, seed=0)
    assert len(te) == 6 and len(tr) == 5  # round(5.5) == 6 (Python rounds half to even)
    assert np.all(np.abs(np.bincount(y[te], minlength=3) - np.bincount(y) * 6 / 11) <= 1)
    assert len(np.union1d(tr, te)) == 11


def test_default_cache_dir(monkeypatch, tmp_path):
    assert default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("TAUGATE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "taugate"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "taugate"


def test_cache_dir_argument(tmp_path):
    make_idx_set(tmp_path / "elsewhere" / "fashion-mnist")
    ds = load_dataset("fashion-mnist", cache_dir=tmp_path / "elsewhere")
    assert ds.source == f"cache:{tmp_path / 'elsewhere' / 'fashion-mnist'}"


def test_dataset_checks_shapes():
    x = np.zeros((3, 2, 2), np.float32)
    with pytest.raises(TauGateError, match="y_train must be"):
        Dataset("t", x, np.zeros(2), x, np.zeros(3), "s", "sp")
    with pytest.raises(TauGateError, match="differ in size"):
        Dataset("t", x, np.zeros(3), np.zeros((3, 3, 3)), np.zeros(3), "s", "sp")
    ds = Dataset("t", x.astype(np.float64), np.zeros(3), x, np.zeros(3), "s", "sp")
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
