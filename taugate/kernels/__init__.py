"""Numba kernels: private ``_njit`` functions behind validating public functions (no torch).

Importing this package first decides where Numba caches compiled code (see ``_cache``).
"""

from taugate.kernels._cache import CACHE_ENABLED
from taugate.kernels.layout import Packed, pack
from taugate.kernels.rowskip import forward

__all__ = ["CACHE_ENABLED", "Packed", "forward", "pack"]
