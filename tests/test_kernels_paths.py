"""The three row-skip paths (serial batch 1, threaded batch 1, batched) against the reference,
including the threaded path's column blocks (empty ones too) and its row-split later layers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taugate.errors import TauGateError
from taugate.kernels import rowskip
from taugate.runtime import CompiledModel

try:
    from reference import reference_active, reference_forward
    from test_kernels import MODES, assert_close, build, separate_ties
except ImportError:  # tests/ imported as a package
    from tests.reference import reference_active, reference_forward
    from tests.test_kernels import MODES, assert_close, build, separate_ties


@st.composite
def deep_cases(draw):
    n_hidden = draw(st.integers(1, 4))
    width = st.one_of(st.integers(1, 20), st.integers(21, 300))
    sizes = [draw(width) for _ in range(n_hidden + 2)]
    modes = [draw(st.sampled_from(MODES)) for _ in range(n_hidden)]
    return sizes, modes, draw(st.integers(2, 5)), draw(st.integers(0, 2**32 - 1))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(deep_cases())
def test_threaded_batch_one_path_splits_every_layer(monkeypatch_layers, case):
    """nth threads (more than the machine has is allowed: blocks then share threads), every later
    layer split across them (LAYER_MIN_MACS = 0); equals the reference and the serial path."""
    sizes, modes, nth, seed = case
    layers, tensors = build(sizes, modes, seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((3, sizes[0])).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = 0.0  # some zero features, skipped in layer 0
    tensors = separate_ties(layers, tensors, x)
    ref = reference_forward(layers, tensors, x)
    masks = reference_active(layers, tensors, x)
    packed = CompiledModel.from_arrays(layers, tensors).kernel("rowskip").packed
    for r in range(len(x)):
        out, counts = rowskip.run(packed, x[r : r + 1], True, True, nth)
        assert_close(out, ref[r : r + 1])
        serial_out, serial_counts = rowskip.run(packed, x[r : r + 1], False, True, 1)
        assert counts.tolist() == serial_counts.tolist()
        assert counts[0, 0] == np.count_nonzero(x[r])
        assert counts[0, 1:].tolist() == [int(m[r].sum()) for m in masks]


@pytest.fixture
def monkeypatch_layers():
    """Force the threaded path to split every later layer, then restore the threshold."""
    before = rowskip.LAYER_MIN_MACS
    rowskip.LAYER_MIN_MACS = 0
    yield
    rowskip.LAYER_MIN_MACS = before


def test_paths_report_input_nonzeros_and_active_counts():
    layers, tensors = build([40, 33, 17, 5], ["pos", "neg"], seed=2)
    x = np.random.default_rng(3).standard_normal((6, 40)).astype(np.float32)
    x[:, ::3] = 0.0
    x[1] = 0.0
    masks = reference_active(layers, tensors, x)
    packed = CompiledModel.from_arrays(layers, tensors).kernel("rowskip").packed
    expected = [[int(np.count_nonzero(x[r]))] + [int(m[r].sum()) for m in masks] for r in range(6)]
    assert rowskip.forward(packed, x)[1].tolist() == expected  # batched
    for parallel in (False, True):
        rows = [rowskip.forward(packed, x[r : r + 1], parallel, threads=2)[1][0] for r in range(6)]
        assert np.asarray(rows).tolist() == expected


def test_forward_checks_threads_and_restores_the_thread_count():
    import numba

    layers, tensors = build([8, 6, 3], ["pos"], seed=0)
    packed = CompiledModel.from_arrays(layers, tensors).kernel("rowskip").packed
    x = np.ones((2, 8), np.float32)
    top = numba.config.NUMBA_NUM_THREADS
    for bad in (0, top + 1, 1.5, "2"):
        with pytest.raises(TauGateError, match="rowskip: threads must be an integer"):
            rowskip.forward(packed, x, threads=bad)
    before = numba.get_num_threads()
    assert_close(rowskip.forward(packed, x, threads=1)[0], reference_forward(layers, tensors, x))
    assert numba.get_num_threads() == before


def test_single_layer_model_on_every_path():
    layers, tensors = build([37, 9], [], seed=4)
    x = np.random.default_rng(0).standard_normal((4, 37)).astype(np.float32)
    ref = reference_forward(layers, tensors, x)
    packed = CompiledModel.from_arrays(layers, tensors).kernel("rowskip").packed
    assert_close(rowskip.run(packed, x, False, True, 2)[0], ref)
    for parallel, nth in ((False, 1), (True, 2), (True, 5)):
        for r in range(4):
            assert_close(rowskip.run(packed, x[r : r + 1], parallel, True, nth)[0], ref[r : r + 1])
