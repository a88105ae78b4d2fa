"""Data: IDX reader, named data sets (data dir / cache / download / embedded fallback), rotation.

from taugate.data import load_dataset, rotated_split
ds = load_dataset("mnist-10k", "/path/to/data")  # data dir holding mnist/, fashion-mnist/
x = rotated_split(ds, "test", 45.0)  # (N, H*W) float32, cached per process
"""

from taugate.data.idx import read_idx, write_idx
from taugate.data.registry import Dataset, list_datasets, load_dataset
from taugate.data.rotate import rotate_images, rotated_split
from taugate.data.sources import default_cache_dir

__all__ = [
    "Dataset",
    "default_cache_dir",
    "list_datasets",
    "load_dataset",
    "read_idx",
    "rotate_images",
    "rotated_split",
    "write_idx",
]
