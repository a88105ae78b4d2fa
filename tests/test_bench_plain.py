"""The ``plain-numba`` peer backend (taugate.bench.plain_path) computes the gated network: it is
checked against the slow reference on random shapes, thresholds and batch sizes, since the speed
comparison with row-skip means nothing unless both compute the same function."""

from __future__ import annotations

import numpy as np
import pytest

from taugate.bench.plain_path import plain
from taugate.runtime import CompiledModel

try:
    from reference import reference_forward, separate_ties
    from test_kernels import MODES, build
except ImportError:  # tests/ imported as a package
    from tests.reference import reference_forward, separate_ties
    from tests.test_kernels import MODES, build


@pytest.mark.parametrize("seed", range(12))
def test_plain_numba_matches_the_reference(seed):
    rng = np.random.default_rng(seed)
    n_hidden = int(rng.integers(0, 3))
    sizes = [int(v) for v in rng.integers(1, 200, n_hidden + 2)]
    modes = [str(rng.choice(MODES)) for _ in range(n_hidden)]
    layers, tensors = build(sizes, modes, seed)
    xs = [rng.standard_normal((int(b), sizes[0])).astype(np.float32) for b in (1, 7, 64)]
    for x in xs:
        tensors = separate_ties(layers, tensors, x)
    model = CompiledModel.from_arrays(layers, tensors)
    run = plain(model, xs, None)
    for x in xs:  # the k-th call computes xs[k % len(xs)]
        ref = reference_forward(layers, tensors, x)
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(run(), ref, rtol=0, atol=1e-4 * scale)
