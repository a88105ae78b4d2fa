"""Data: IDX reader, named data sets (data dir / cache / download / embedded fallback), rotation.

from taugate.data import load_dataset, rotated_split
ds = load_dataset("mnist-10k", "/path/to/data")  # data dir holding mnist/, fashion-mnist/
x = rotated_split(ds, "test", 45.0)  # (N, H*W) float32, cached per process
"""

from taugate.data.idx import read_idx, write_idx
from taugate.data.registry import Dataset, list_datasets, load_dataset
from taugate.data.rotate import rotate_images, rotated_split
from taugate.data.sources import default_cache_dir
from taugate.errors import TauGateError


def require_features(ds: Dataset, n_in: int, asked: str) -> Dataset:
    """Raise a clear error when data set ``ds`` (loaded for the name ``asked``) does not have the
    ``n_in`` features a model expects, naming the fallback when that is why."""
    if ds.n_features == n_in:
        return ds
    if ds.source.startswith("fallback:"):
        raise TauGateError(
            f"data set {asked!r} is not available here (fell back to the 8x8 digits, "
            f"{ds.n_features} features; see the warning above) but the model expects {n_in}; "
            "pass --data-dir with the real IDX files"
        )
    raise TauGateError(
        f"data set {ds.name} has {ds.n_features} features but the model expects {n_in}"
    )


__all__ = [
    "Dataset",
    "default_cache_dir",
    "list_datasets",
    "load_dataset",
    "read_idx",
    "require_features",
    "rotate_images",
    "rotated_split",
    "write_idx",
]
