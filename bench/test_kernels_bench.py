"""Forward-pass benchmarks of every backend at representative shapes.

Random gated 784-W-W-10 models (``taugate.runtime.random_model``) at widths 128-4096 and active
shares 10-50 %, batch 1 and batched. Each shape x batch is one pytest-benchmark *group*, so the
backends of a shape are compared side by side; Numba is compiled (``model.warmup()``) and
torch.compile is compiled (while its callable is built) before any timing, and pytest-benchmark's
own warm-up runs first. Run with ``make bench``; results land in
``runs/bench.json`` (``--benchmark-json``), each entry with the work cap in ``extra_info``.
"""

import numpy as np
import pytest

from taugate import backends as registry
from taugate.bench.backends import make_fns
from taugate.runtime import random_model

SHAPES = [
    (128, 0.5),
    (512, 0.1),
    (512, 0.5),
    (1024, 0.2),
    (2048, 0.2),
    (4096, 0.1),
    (4096, 0.2),
    (4096, 0.5),
]
BATCHES = [1, 64]
# every backend of the registry that times a compiled model and can run here
BACKENDS = [n for n in registry.names(needs_module=False, approximate=False)
            if registry.get(n).unavailable() is None]  # fmt: skip
_MODELS: dict = {}


def _model(width, active):
    if (width, active) not in _MODELS:
        m = random_model([784, width, width, 10], active, seed=0)
        m.warmup()
        _MODELS[(width, active)] = m
    return _MODELS[(width, active)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("width,active", SHAPES)
def test_forward(benchmark, width, active, batch, backend):
    model = _model(width, active)
    x = np.random.default_rng(1).standard_normal((batch, 784)).astype(np.float32)  # (B, 784)
    fn = make_fns(model, x, [backend])[backend]
    model.predict(x, backend="compact")
    stats = model.last_stats
    benchmark.group = f"784-{width}-{width}-10, {int(active * 100)}% active, batch {batch}"
    benchmark.extra_info.update(
        work_cap=stats["work_cap"], active_share=stats["active_share"], backend=backend
    )
    benchmark(fn)
