"""The FFN-block kernels of a mode bank (taugate.kernels.ffn with an (M, F) threshold and gain
table): every path, with a mode per token, equals the slow reference, and each token equals its
mode's single-mode block (gains folded into WdT); bad modes and tables get one-line errors."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taugate.errors import TauGateError
from taugate.kernels import ffn

try:
    from reference import reference_ffn, separate_ffn_ties
    from test_kernels_ffn import ACTS, MODES, assert_close, block
except ImportError:  # tests/ imported as a package
    from tests.reference import reference_ffn, separate_ffn_ties
    from tests.test_kernels_ffn import ACTS, MODES, assert_close, block

THREADS = [t for t in (1, 2) if t <= numba.config.NUMBA_NUM_THREADS]


def bank(d_in, F, d_out, glu, kinds, seed):
    """A random block and one (thr, gain) row per entry of ``kinds`` (threshold kinds of
    :func:`block`); gains in [-0.5, 2), some exactly 0 and 1."""
    a, _ = block(d_in, F, d_out, glu, "normal", seed)
    thr = np.stack([block(d_in, F, d_out, glu, k, seed + 1 + i)[1] for i, k in enumerate(kinds)])
    rng = np.random.default_rng(seed + 99)
    gain = rng.uniform(-0.5, 2.0, (len(kinds), F))  # (M, F)
    gain[rng.random(gain.shape) < 0.1] = 0.0
    gain[rng.random(gain.shape) < 0.1] = 1.0
    return a, thr, gain.astype(np.float32)


@st.composite
def cases(draw):
    size = st.one_of(st.integers(1, 16), st.integers(1, 200))
    d_in, d_out = draw(size), draw(size)
    F = draw(st.one_of(size, st.integers(1000, 2000)))
    N = draw(st.one_of(st.just(1), st.integers(2, 40)))
    N = max(1, min(N, 16_000 // F))  # keeps the slow reference bounded
    kinds = draw(st.lists(st.sampled_from(MODES), min_size=1, max_size=4))
    modes = draw(st.lists(st.integers(0, len(kinds) - 1), min_size=N, max_size=N))
    act, glu = draw(st.sampled_from(sorted(ACTS))), draw(st.booleans())
    blk = draw(st.one_of(st.none(), st.integers(1, 80)))
    return d_in, F, d_out, kinds, modes, act, glu, blk, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_mixed_modes_match_the_reference_and_each_single_mode_block(case):
    d_in, F, d_out, kinds, modes, act, glu, blk, seed = case
    a, thr, gain = bank(d_in, F, d_out, glu, kinds, seed)
    N = len(modes)
    x = np.random.default_rng(seed + 1).standard_normal((N, d_in)).astype(np.float32)
    thr = separate_ffn_ties(x, a["wz"], a["bz"], thr)  # (M, F)
    modes = np.array(modes, np.int64)
    ref, counts = reference_ffn(x, thr=thr, act_name=act, gain=gain, modes=modes, **a)
    packed = ffn.pack_ffn(thr=thr, gain=gain, act=ACTS[act], **a)
    assert packed.n_modes == len(kinds) and packed.gain.shape == (len(kinds), F)
    for threads in THREADS:
        for dense in (False, True):
            y, c = ffn.ffn_forward(packed, x, modes=modes, dense=dense, threads=threads, block=blk)
            assert_close(y, ref)
            assert c.tolist() == counts.tolist()
    for n in {0, N - 1}:  # the batch-1 path, 2-D and 1-D
        y, c = ffn.ffn_forward(packed, x[n : n + 1], modes=modes[n : n + 1])
        assert_close(y, ref[n : n + 1])
        y, c = ffn.ffn_forward(packed, x[n], modes=int(modes[n]))
        assert_close(y, ref[n])
        assert c.tolist() == counts[n : n + 1].tolist()
    for m in sorted(set(modes.tolist())):  # each token equals its mode's one-mode block
        rows = np.flatnonzero(modes == m)
        folded = a | {"wdt": np.ascontiguousarray(a["wdt"] * gain[m][:, None])}  # (F, d_out)
        single = ffn.pack_ffn(thr=thr[m], act=ACTS[act], **folded)
        want, wc = ffn.ffn_forward(single, np.ascontiguousarray(x[rows]))
        y, c = ffn.ffn_forward(packed, np.ascontiguousarray(x[rows]), modes=m, block=blk)
        assert_close(y, want)
        assert c.tolist() == wc.tolist()


def test_modes_change_the_result():
    """Two modes with different thresholds and gains give different outputs for the same token:
    the mode index is really used (the property test above could not see a kernel ignoring it
    when both modes happened to agree)."""
    a, _ = block(8, 64, 5, True, "normal", 0)
    thr = np.stack([np.full(64, -np.inf), np.full(64, np.inf)]).astype(np.float32)  # open | shut
    gain = np.stack([np.full(64, 2.0), np.ones(64)]).astype(np.float32)
    p = ffn.pack_ffn(thr=thr, gain=gain, act=3, **a)
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    y, c = ffn.ffn_forward(p, x, modes=np.array([0, 1, 0, 1]))
    assert c.tolist() == [64, 0, 64, 0]
    np.testing.assert_array_equal(y[1], a["bd"])
    ref, _ = reference_ffn(x[:1], thr=thr[0], act_name="silu", gain=gain[0], **a)
    assert_close(y[:1], ref)


def test_bad_modes_and_tables_are_one_line_errors():
    a, thr, gain = bank(3, 4, 5, False, ("normal", "high", "low"), 0)
    p = ffn.pack_ffn(thr=thr, gain=gain, act=0, **a)
    x = np.ones((6, 3), np.float32)
    cases = {
        "the block has 3 modes; give modes=": None,
        "mode 3 is out of range for 3 modes": 3,
        r"modes\[2\] = -1 is out of range for 3 modes": np.array([0, 1, -1, 0, 0, 0]),
        r"modes must be an int or \(6,\) integers": np.zeros(5, np.int64),
        r"modes must be an int or \(6,\) integers \(one per token\), got float64": np.zeros(6),
    }
    for msg, modes in cases.items():
        with pytest.raises(TauGateError, match=msg) as e:
            ffn.ffn_forward(p, x, modes=modes)
        assert "\n" not in str(e.value)
    with pytest.raises(TauGateError, match="modes must be an int"):
        ffn.ffn_forward(p, x, modes=True)
    for msg, change in {
        r"gain must be float32 of shape \(3, 4\)": {"gain": gain[:2]},
        "gain contains NaN": {"gain": np.full((3, 4), np.nan, np.float32)},
        r"thr must be float32 of shape \(3, 4\)": {"thr": thr[:, :3]},
    }.items():
        with pytest.raises(TauGateError, match=msg):
            ffn.pack_ffn(**(a | {"thr": thr, "gain": gain} | change), act=0)
    single = ffn.pack_ffn(thr=thr[0], act=0, **a)  # one mode: modes optional, 0 only
    assert single.n_modes == 1 and single.gain.shape == (0, 4)
    ffn.ffn_forward(single, x)
    with pytest.raises(TauGateError, match="mode 1 is out of range for 1 modes"):
        ffn.ffn_forward(single, x, modes=1)
