"""Numba's thread count: the one check of a ``threads`` argument, and the count for one call."""

from __future__ import annotations

from contextlib import contextmanager

import numba
import numpy as np

from taugate.errors import TauGateError

MAX_THREADS = numba.config.NUMBA_NUM_THREADS  # what numba.set_num_threads accepts


def check_threads(threads, prefix: str = "") -> int:
    """``threads`` as an int from 1 to ``NUMBA_NUM_THREADS``, else an error (``prefix`` first)."""
    ok = isinstance(threads, (int, np.integer)) and not isinstance(threads, bool)
    if not ok or not 1 <= threads <= MAX_THREADS:
        raise TauGateError(
            f"{prefix}threads must be an integer from 1 to {MAX_THREADS}, got {threads!r}"
        )
    return int(threads)


@contextmanager
def numba_threads(threads: int | None, prefix: str = ""):
    """Run the block with ``threads`` Numba threads (checked; restored afterwards) and yield the
    count in use; None leaves the count alone."""
    previous = numba.get_num_threads()
    n = previous if threads is None else check_threads(threads, prefix)
    if n == previous:
        yield n
        return
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(previous)
