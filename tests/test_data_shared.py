"""Integration on the real IDX files; runs only when TAUGATE_DATA_DIR points at them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

import taugate.data.download as dl
from taugate.data import load_dataset, rotate_images, rotated_split

DATA_DIR = os.environ.get("TAUGATE_DATA_DIR", "").strip()

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(not DATA_DIR, reason="TAUGATE_DATA_DIR is not set"),
]


@pytest.fixture(autouse=True)
def _no_cache_no_network(monkeypatch, tmp_path):
    monkeypatch.setenv("TAUGATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TAUGATE_OFFLINE", "1")


def _need(*parts: str) -> Path:
    p = Path(DATA_DIR, *parts)
    if not p.is_file():
        pytest.skip(f"{p} not present")
    return p


def test_mnist_10k_from_the_shared_dir():
    _need("mnist", "t10k-images-idx3-ubyte.gz")
    ds = load_dataset("mnist-10k")
    assert ds.source == f"data-dir:{os.path.abspath(Path(DATA_DIR, 'mnist'))}"
    assert (len(ds.y_train), len(ds.y_test)) == (8000, 2000)
    assert ds.image_shape == (28, 28)
    assert set(np.unique(ds.y_train)) == set(np.unique(ds.y_test)) == set(range(10))
    assert ds.split == "stratified 8000/2000 of official t10k (seed 0)"
    x = rotated_split(ds, "test", 90)
    expected = np.rot90(ds.x_test, axes=(1, 2)).reshape(2000, 784)
    np.testing.assert_array_equal(x, expected)


def test_fashion_mnist_full():
    _need("fashion-mnist", "train-images-idx3-ubyte.gz")
    ds = load_dataset("fashion-mnist", DATA_DIR)
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.split == "official 60000/10000"
    assert np.all(np.bincount(ds.y_train) == 6000) and np.all(np.bincount(ds.y_test) == 1000)
    assert ds.x_train.dtype == np.float32 and float(ds.x_train.max()) == 1.0
    assert rotate_images(ds.x_test[:100], 45.0).shape == (100, 28, 28)


def test_mnist_without_train_files_falls_back_loudly(capsys):
    _need("mnist", "t10k-images-idx3-ubyte.gz")
    if Path(DATA_DIR, "mnist", "train-images-idx3-ubyte.gz").exists():
        pytest.skip("this data dir has the full MNIST")
    ds = load_dataset("mnist", DATA_DIR, download=False)
    assert ds.name == "digits" and ds.source == "fallback:sklearn-digits"
    err = capsys.readouterr().err
    assert "data set 'mnist' is not available" in err
    assert "lacks train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in err
    assert "--data-dir" in err


def test_shared_files_match_the_official_checksums():
    checked = 0
    for dataset, table in dl.CHECKSUMS.items():
        for name, md5 in table.items():
            p = Path(DATA_DIR, dataset, name)
            if p.is_file():
                assert hashlib.md5(p.read_bytes()).hexdigest() == md5, p
                checked += 1
    assert checked >= 2
