"""The named data sets, the :class:`Dataset` record, and :func:`load_dataset`.

| name          | files (folder)                              | split                                   |
|---------------|---------------------------------------------|-----------------------------------------|
| mnist         | train-* and t10k-* (``mnist/``)             | official 60000/10000                    |
| mnist-10k     | t10k-* only (``mnist/``)                    | stratified 8000/2000 of t10k, seed 0    |
| fashion-mnist | train-* and t10k-* (``fashion-mnist/``)     | official 60000/10000                    |
| digits        | none: sklearn's embedded 8x8 digits         | stratified 80/20, seed 0                |

A named data set that cannot be found or downloaded is replaced by ``digits`` with a loud
warning on stderr; a file that is found but corrupt raises :class:`TauGateError`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taugate.data import sources
from taugate.data.idx import check_images_labels, read_idx
from taugate.errors import TauGateError

__all__ = ["Dataset", "list_datasets", "load_dataset", "stratified_split"]

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
_ALL = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
_T10K = (TEST_IMAGES, TEST_LABELS)
SPLIT_SEED = 0  # seed of the stratified splits (mnist-10k, digits)
TEST_FRACTION = 0.2  # test share of the stratified splits


@dataclass(frozen=True)
class _Spec:
    folder: str | None  # sub-folder of the data dir / cache; None: embedded
    files: tuple[str, ...]  # canonical (.gz) file names needed


_SPECS: dict[str, _Spec] = {
    "mnist": _Spec("mnist", _ALL),
    "mnist-10k": _Spec("mnist", _T10K),
    "fashion-mnist": _Spec("fashion-mnist", _ALL),
    "digits": _Spec(None, ()),
}
FALLBACK = "digits"


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images in [0, 1] with integer labels, plus where they came from and how they were split."""

    name: str  # 'mnist' | 'mnist-10k' | 'fashion-mnist' | 'digits' (what the arrays really hold)
    x_train: np.ndarray  # (N, H, W) float32 in [0, 1]
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray  # (M, H, W) float32 in [0, 1]
    y_test: np.ndarray  # (M,) int64
    source: str  # 'data-dir:/abs', 'cache:/abs', 'download:<url>', 'fallback:sklearn-digits', ...
    split: str  # e.g. 'official 60000/10000'

    def __post_init__(self) -> None:
        for xs, ys in (("x_train", "y_train"), ("x_test", "y_test")):
            x = np.asarray(getattr(self, xs), dtype=np.float32)
            y = np.asarray(getattr(self, ys), dtype=np.int64)
            if x.ndim != 3:
                raise TauGateError(f"Dataset {self.name}: {xs} must be (N, H, W), got {x.shape}")
            if y.shape != (x.shape[0],):
                raise TauGateError(
                    f"Dataset {self.name}: {ys} must be ({x.shape[0]},), got {y.shape}"
                )
            object.__setattr__(self, xs, x)
            object.__setattr__(self, ys, y)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise TauGateError(
                f"Dataset {self.name}: train images {self.x_train.shape[1:]} and test images "
                f"{self.x_test.shape[1:]} differ in size"
            )

    @property
    def image_shape(self) -> tuple[int, int]:
        return (int(self.x_train.shape[1]), int(self.x_train.shape[2]))

    @property
    def n_features(self) -> int:
        h, w = self.image_shape
        return h * w

    @property
    def n_classes(self) -> int:
        return 10

    def provenance(self) -> dict:
        """JSON-able record of what was loaded, for manifests and reports."""
        return {
            "dataset": self.name,
            "source": self.source,
            "split": self.split,
            "n_train": int(self.x_train.shape[0]),
            "n_test": int(self.x_test.shape[0]),
            "image_shape": list(self.image_shape),
        }

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
            f"source={self.source!r}, split={self.split!r})"
        )


def list_datasets() -> list[str]:
    return list(_SPECS)


def stratified_split(
    labels: np.ndarray, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split -> (train_idx, test_idx), both sorted.

    The test size is ``round(N * test_fraction)`` exactly; it is shared out over the classes by
    largest remainder, so each class gets its ideal share to within one image. Within each class
    (in label order) a permutation from one ``np.random.default_rng(seed)`` picks the test images.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    n_test = int(round(n * test_fraction))
    classes, counts = np.unique(labels, return_counts=True)
    ideal = counts * (n_test / n) if n else counts.astype(float)  # (C,)
    quota = np.floor(ideal).astype(np.int64)
    short = n_test - int(quota.sum())
    quota[np.argsort(-(ideal - quota), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c, k in zip(classes, quota, strict=True):
        perm = rng.permutation(np.flatnonzero(labels == c))
        test.append(perm[:k])
        train.append(perm[k:])
    empty = np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(train or [empty])), np.sort(np.concatenate(test or [empty]))


def _to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) -> float32 in [0, 1]."""
    out = images.astype(np.float32)
    np.divide(out, 255.0, out=out)
    return out


def _read_pair(paths: dict[str, Path], images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(paths[images])
    y = read_idx(paths[labels])
    check_images_labels(x, y, paths[images], paths[labels])
    return _to_unit(x), y.astype(np.int64)


def _load_idx(name: str, resolved: sources.Resolved) -> Dataset:
    paths = resolved.paths
    x_te, y_te = _read_pair(paths, TEST_IMAGES, TEST_LABELS)
    if name == "mnist-10k":
        tr, te = stratified_split(y_te)
        split = f"stratified {tr.size}/{te.size} of official t10k (seed {SPLIT_SEED})"
        return Dataset(name, x_te[tr], y_te[tr], x_te[te], y_te[te], resolved.source, split)
    x_tr, y_tr = _read_pair(paths, TRAIN_IMAGES, TRAIN_LABELS)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise TauGateError(
            f"{paths[TEST_IMAGES]}: test images are {x_te.shape[1]}x{x_te.shape[2]} but "
            f"{paths[TRAIN_IMAGES]} holds {x_tr.shape[1]}x{x_tr.shape[2]}"
        )
    split = f"official {x_tr.shape[0]}/{x_te.shape[0]}"
    return Dataset(name, x_tr, y_tr, x_te, y_te, resolved.source, split)


def _load_digits(source: str, note: str = "") -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        raise TauGateError("the embedded 'digits' data set needs scikit-learn") from None
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)  # (1797, 8, 8)
    y = d.target.astype(np.int64)
    tr, te = stratified_split(y)
    split = f"stratified {tr.size}/{te.size} of sklearn digits (seed {SPLIT_SEED}){note}"
    return Dataset("digits", x[tr], y[tr], x[te], y[te], source, split)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool | None = None,
    mirrors: dict[str, list[str]] | None = None,
    checksums: dict[str, dict[str, str]] | None = None,
    quiet: bool = False,
) -> Dataset:
    """Load a named data set: data dir, then cache, then download, then the ``digits`` fallback.

    ``download=None`` downloads unless env ``TAUGATE_OFFLINE=1``. ``mirrors`` / ``checksums``
    override the mirror base URLs / md5 table per data set (``{'mnist': [...]}`` /
    ``{'mnist': {'t10k-images-idx3-ubyte.gz': '<md5>'}}``). ``quiet`` silences the fallback
    warning (the returned ``source`` still starts with ``fallback:``).
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _SPECS:
        raise TauGateError(f"unknown dataset {name!r}; known: {', '.join(_SPECS)}")
    spec = _SPECS[key]
    if spec.folder is None:
        return _load_digits("embedded:sklearn-digits")
    tried: list[str] = []
    resolved = sources.resolve_files(
        key,
        spec.folder,
        spec.files,
        data_dir=data_dir,
        cache_dir=cache_dir,
        download=download,
        mirrors=mirrors,
        checksums=checksums,
        tried=tried,
    )
    if resolved is not None:
        return _load_idx(key, resolved)
    if not quiet:
        msg = sources.fallback_warning(key, spec.folder, spec.files, tried, FALLBACK, cache_dir)
        print(msg, file=sys.stderr, flush=True)
    return _load_digits("fallback:sklearn-digits", note=f"; fallback for unavailable '{key}'")
