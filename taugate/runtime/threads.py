"""Numba's thread count for the duration of one call, restored afterwards."""

from __future__ import annotations

from contextlib import contextmanager

import numba

from taugate.kernels.rowskip import check_threads

MAX_THREADS = numba.config.NUMBA_NUM_THREADS  # what numba.set_num_threads accepts


@contextmanager
def numba_threads(threads: int | None):
    """Run the block with ``threads`` Numba threads (checked: 1 to ``NUMBA_NUM_THREADS``); None
    leaves the count alone."""
    if threads is None:
        yield None
        return
    n = check_threads(threads)
    previous = numba.get_num_threads()
    if n == previous:
        yield n
        return
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(previous)
