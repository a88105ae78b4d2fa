"""The machine a benchmark ran on, and the thread limits it ran under."""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager

import numpy as np

from taugate.errors import TauGateError


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int | None = None) -> dict:
    """CPU, cores, threads, Numba threading layer, BLAS and software versions."""
    import numba
    import scipy

    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads or numba.get_num_threads(),
        "platform": platform.platform(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT", "unset"),
    }
    try:
        info["numba_threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        info["numba_threading_layer"] = f"not initialised ({numba.config.THREADING_LAYER})"
    try:
        from threadpoolctl import threadpool_info

        with thread_limit(threads):  # report the BLAS threads the timings ran with
            blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        info["blas"] = ", ".join(
            f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
            for p in blas
        )
    except Exception:  # threadpoolctl missing or failing: say so, do not fail the benchmark
        info["blas"] = "unknown"
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "numba": numba.__version__, "scipy": scipy.__version__}  # fmt: skip
    try:
        import torch

        versions["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    from taugate import __version__

    versions["taugate"] = __version__
    info["versions"] = versions
    return info


@contextmanager
def thread_limit(threads: int | None):
    """Use ``threads`` for Numba, torch and BLAS inside the block (None: leave as is)."""
    if threads is None:
        yield
        return
    import numba

    if not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise TauGateError(
            f"--threads must be from 1 to {numba.config.NUMBA_NUM_THREADS}, got {threads}"
        )
    old_nb = numba.get_num_threads()
    numba.set_num_threads(threads)
    torch_old = None
    try:
        import torch

        torch_old = torch.get_num_threads()
        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=threads)
    except ImportError:
        limiter = None
    try:
        yield
    finally:
        numba.set_num_threads(old_nb)
        if torch_old is not None:
            torch.set_num_threads(torch_old)
        if limiter is not None:
            limiter.restore_original_limits()
