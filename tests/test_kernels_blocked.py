"""The blocked batched row-skip path (``rowskip.run(..., blocked=True)``, the ``rowskip-batched``
backend): the same logits and counts as the per-sample path and the slow reference, on sparse and
dense inputs (both layer-0 ways: BLAS, and zero features skipped), one and two threads, column
blocks narrower than a row, batch sizes 1-300."""

from __future__ import annotations

import numba
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taugate.kernels import rowskip

try:
    from reference import reference_active, reference_forward, separate_ties
    from test_kernels import MODES, build
except ImportError:  # tests/ imported as a package
    from tests.reference import reference_active, reference_forward, separate_ties
    from tests.test_kernels import MODES, build

THREADS = [t for t in (1, 2) if t <= numba.config.NUMBA_NUM_THREADS]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_blocked_path_matches_the_per_sample_path_and_the_reference(data):
    n_hidden = data.draw(st.integers(0, 3))
    width = st.one_of(st.integers(1, 40), st.integers(100, 700))
    sizes = [data.draw(width) for _ in range(n_hidden + 2)]
    modes = [data.draw(st.sampled_from(MODES)) for _ in range(n_hidden)]
    batch = data.draw(st.one_of(st.just(1), st.integers(2, 70), st.integers(200, 300)))
    zeros = data.draw(st.sampled_from([0.0, 0.6, 0.95, 1.0]))  # share of input features zero
    block = data.draw(st.sampled_from([64, 4096, 8 << 20]))  # bytes per column block
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed + 1)
    layers, tensors = build(sizes, modes, seed)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    x[rng.random(x.shape) < zeros] = 0.0
    tensors = separate_ties(layers, tensors, x)
    ref = reference_forward(layers, tensors, x)
    active = reference_active(layers, tensors, x)  # per hidden layer (B, out) bool
    L = len(layers)
    ws = [tensors[f"layers.{i}.weight"] for i in range(L)]
    bs = [tensors[f"layers.{i}.bias"] for i in range(L)]
    taus = [tensors.get(f"layers.{i}.tau") for i in range(L)]
    packed = rowskip.pack(ws, bs, taus)
    _, want_counts = rowskip.forward(packed, x)
    scale = max(1.0, float(np.abs(ref).max()))
    for threads in THREADS:  # one thread: BLAS for dense inputs; two: zero features skipped
        old, rowskip.BLOCK_BYTES = rowskip.BLOCK_BYTES, block
        try:
            out, counts = rowskip.run(packed, x, False, True, threads, blocked=True)
        finally:
            rowskip.BLOCK_BYTES = old
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * scale)
        assert counts[:, 0].tolist() == np.count_nonzero(x, axis=1).tolist()
        # hidden counts: exact but for units whose z is within float32 rounding of 0 (a unit at
        # z = 1e-9 adds nothing to the logits, so separate_ties leaves it; the column blocks sum
        # in another order than whole rows)
        slack = max(1, int(0.01 * max(sizes)))
        assert np.abs(counts - want_counts).max() <= slack
        for i, a in enumerate(active):
            assert np.abs(counts[:, i + 1] - a.sum(axis=1)).max() <= slack
