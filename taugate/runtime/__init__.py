"""Deployment runtime: run an artifact v1 with numpy and Numba only (never imports torch).

>>> model = load("mnist.taugate")            # or random_model([784, 4096, 4096, 10], active=0.2)
>>> logits = model.predict(x)                 # (B, n_out) float32; backend="rowskip" by default
>>> model.last_stats["work_cap"]              # dense MACs / MACs row skipping needed for x

The runtime backends (``dense``, ``compact``, ``rowskip``; see :mod:`taugate.backends`) compute the
same function. Numba compiles the kernels on first use (seconds) and caches them on disk
(``cache=True``; see :mod:`taugate.kernels._cache`). Call :meth:`CompiledModel.warmup` before timing.

Files: ``model.py`` the container and ``predict``; ``paths.py`` the backends' kernels;
``stats.py`` the gate statistics; ``synthetic.py`` random models (the per-call Numba thread
count: :mod:`taugate.kernels.threads`). Input rules: :func:`taugate.inputs.as_batch`.
"""

from __future__ import annotations

from pathlib import Path

from taugate import backends as _registry
from taugate.runtime.model import AUTO_ROWSKIP_MAX_BATCH, CompiledModel
from taugate.runtime.synthetic import random_model

BACKENDS = _registry.names(runtime=True, approximate=False)  # the exact ones predict() takes
# and the approximate one (needs a predictor: taugate compile --predictor RANK); besides "auto"
APPROXIMATE_BACKENDS = _registry.names(runtime=True, approximate=True)

__all__ = [
    "APPROXIMATE_BACKENDS", "AUTO_ROWSKIP_MAX_BATCH", "BACKENDS", "CompiledModel", "load", "random_model"
]  # fmt: skip


def load(path) -> CompiledModel:
    """Read and verify the artifact directory at ``path`` (see :mod:`taugate.artifact`)."""
    from taugate.artifact import read_model

    spec, extra, predictor = read_model(path)
    return CompiledModel(spec, extra, path=Path(path), predictor=predictor)
