"""The FFN-block kernels (taugate.kernels.ffn) equal the slow reference on every path; validation,
zero-copy, the work count and the Numba disk cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taugate.errors import TauGateError
from taugate.kernels import _cache, ffn

try:
    from reference import reference_ffn, reference_phi, separate_ffn_ties
except ImportError:  # tests/ imported as a package
    from tests.reference import reference_ffn, reference_phi, separate_ffn_ties

THREADS = [t for t in (1, 2) if t <= numba.config.NUMBA_NUM_THREADS]
ACTS = {"relu": 0, "gelu": 1, "gelu-tanh": 2, "silu": 3}
MODES = ("normal", "low", "high", "all_open", "all_shut", "very_negative", "mixed")


def block(d_in, F, d_out, glu, mode, seed):
    """Random FFN block (float32 weights scaled so z and y are O(1)) and its thresholds."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)

    arrays = {"wz": w(F, d_in), "bz": (0.3 * rng.standard_normal(F)).astype(np.float32)}
    wdt = (rng.standard_normal((F, d_out)) / np.sqrt(F)).astype(np.float32)  # fan-in F
    arrays |= {"wdt": wdt, "bd": rng.standard_normal(d_out).astype(np.float32)}
    if glu:
        arrays |= {"wu": w(F, d_in), "bu": (0.3 * rng.standard_normal(F)).astype(np.float32)}
    thr = {
        "normal": lambda: rng.standard_normal(F),
        "low": lambda: rng.uniform(-8.0, -1.0, F),
        "high": lambda: rng.uniform(1.0, 3.0, F),
        "all_open": lambda: np.full(F, -np.inf),
        "all_shut": lambda: np.full(F, np.inf),
        "very_negative": lambda: np.full(F, -1e30),
        "mixed": lambda: rng.choice([-np.inf, np.inf, -1e30, 1e30, 0.5, -0.5], F),
    }[mode]()
    return arrays, thr.astype(np.float32)


def assert_close(got, ref):
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * scale)


@st.composite
def cases(draw):
    size = st.one_of(st.integers(1, 16), st.integers(1, 300))
    d_in, d_out = draw(size), draw(size)
    F = draw(st.one_of(size, size, st.integers(1000, 3000)))
    N = draw(st.one_of(st.just(1), st.integers(2, 40), st.integers(65, 140)))  # > 64: 2+ chunks
    N = max(1, min(N, 20_000 // F))  # keeps the slow reference bounded
    act, glu, mode = (
        draw(st.sampled_from(sorted(ACTS))),
        draw(st.booleans()),
        draw(st.sampled_from(MODES)),
    )
    blk = draw(st.one_of(st.none(), st.integers(1, 80)))  # units per block of the batched path
    return d_in, F, d_out, N, act, glu, mode, blk, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_path_matches_the_reference(case):
    d_in, F, d_out, N, act, glu, mode, blk, seed = case
    a, thr = block(d_in, F, d_out, glu, mode, seed)
    x = np.random.default_rng(seed + 1).standard_normal((N, d_in)).astype(np.float32)
    thr = separate_ffn_ties(x, a["wz"], a["bz"], thr)
    ref, counts = reference_ffn(x, thr=thr, act_name=act, **a)
    packed = ffn.pack_ffn(thr=thr, act=ACTS[act], **a)
    for threads in THREADS:
        for dense in (False, True):
            y, c = ffn.ffn_forward(packed, x, dense=dense, threads=threads, block=blk)
            assert y.shape == (N, d_out) and y.dtype == np.float32 and c.dtype == np.int64
            assert_close(y, ref)
            assert c.tolist() == counts.tolist()
    for dense in (False, True):  # batch-1 path: the first and last rows, 2-D and 1-D
        y, c = ffn.ffn_forward(packed, x[-1:], dense=dense)
        assert_close(y, ref[-1:])
        assert c.tolist() == counts[-1:].tolist()
        y, c = ffn.ffn_forward(packed, x[0], dense=dense)
        assert y.shape == (d_out,)
        assert_close(y, ref[0])
        assert c.tolist() == counts[:1].tolist()
    if mode == "all_shut":
        assert not counts.any() and (y == a["bd"]).all()
    if mode in ("all_open", "very_negative"):
        assert (counts == F).all()


def test_activations_match_the_reference():
    z = np.concatenate([np.linspace(-30, 30, 601), [-1e30, -100.0, 0.0, 100.0, 1e30]])
    z = z.astype(np.float32)
    for name, code in ACTS.items():
        got = np.array([ffn._k.phi(code, v) for v in z], np.float64)
        ref = reference_phi(name, z.astype(np.float64))
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-6, err_msg=name)


def test_hand_computed_block_and_work_count():
    # 2 inputs, 3 units, 2 outputs; thr makes unit 0 open, unit 1 shut at the tie z = thr
    wz = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    bz = np.zeros(3, np.float32)
    wdt = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    bd = np.array([0.5, -0.5], np.float32)
    thr = np.array([0.0, 1.0, np.inf], np.float32)
    x = np.array([[2.0, 1.0], [-1.0, 3.0]], np.float32)  # z = (2, 1, 3), (-1, 3, 2)
    p = ffn.pack_ffn(wz, bz, wdt, bd, thr, act=0)
    y, c = ffn.ffn_forward(p, x)
    np.testing.assert_allclose(y, [[2.5, 3.5], [9.5, 11.5]])  # row 0: 2 * (1, 2); row 1: 3 * (3, 4)
    assert c.tolist() == [1, 1]
    assert p.macs_dense == 3 * 2 + 3 * 2
    assert ffn.ffn_macs(p, [0, 3]) == 3 * 2 + 1.5 * 2
    g = ffn.pack_ffn(wz, bz, wdt, bd, thr, act=0, wu=wz, bu=np.ones(3, np.float32))
    y, c = ffn.ffn_forward(g, x)  # h = relu(z) * (z + 1)
    np.testing.assert_allclose(y, [[6.5, 11.5], [36.5, 47.5]])
    assert g.macs_dense == 3 * 2 * 2 + 3 * 2
    assert ffn.ffn_macs(g, np.array([1, 2])) == 3 * 2 + 1.5 * (2 + 2)
    with pytest.raises(TauGateError, match="counts"):
        ffn.ffn_macs(g, [])


def test_pack_validates_every_array():
    rng = np.random.default_rng(0)
    a = {"wz": rng.standard_normal((4, 3)), "bz": np.zeros(4), "wdt": rng.standard_normal((4, 5))}
    a = {k: v.astype(np.float32) for k, v in (a | {"bd": np.zeros(5), "thr": np.zeros(4)}).items()}
    ffn.pack_ffn(**a, act=3)
    bad = {
        "wz must be": {"wz": np.ones((0, 3), np.float32)},
        r"bz must be float32 of shape \(4,\), got float64": {"bz": np.zeros(4)},
        r"wdt must be float32 of shape \(4, 5\)": {"wdt": np.ones((3, 5), np.float32)},
        r"bd must be float32 of shape \(5,\), got float32 \(4,\)": {"bd": np.zeros(4, np.float32)},
        "thr contains NaN": {"thr": np.array([0, np.nan, 0, 0], np.float32)},
        "wz contains NaN": {"wz": np.full((4, 3), np.nan, np.float32)},
        "wdt contains inf": {"wdt": np.full((4, 5), np.inf, np.float32)},
        r"wu must be float32 of shape \(4, 3\)": {"wu": np.ones((4, 2), np.float32), "bu": a["bz"]},
        "needs both wu and bu": {"wu": a["wz"]},
    }
    for msg, change in bad.items():
        with pytest.raises(TauGateError, match=msg):
            ffn.pack_ffn(**(a | change), act=0)
    for act in (4, -1, 1.0, True, "relu"):
        with pytest.raises(TauGateError, match="act must be an activation code"):
            ffn.pack_ffn(**a, act=act)
    inf = ffn.pack_ffn(**(a | {"thr": np.array([np.inf, -np.inf, 0, 1], np.float32)}), act=0)
    assert inf.sizes == (3, 4, 5) and inf.wz.shape == (4, 16) and inf.wz.ctypes.data % 64 == 0


def test_forward_validates_x_out_and_threads():
    a, thr = block(3, 4, 5, False, "normal", 0)
    p = ffn.pack_ffn(thr=thr, act=0, **a)
    x = np.ones((6, 3), np.float32)
    for bad in (x.astype(np.float64), x[:, :2], np.ones((6, 6), np.float32)[:, ::2], x[:0], [1.0]):
        with pytest.raises(TauGateError, match=r"x must be C-contiguous float32 \(N, 3\)"):
            ffn.ffn_forward(p, bad)
    for out in (np.empty((6, 5)), np.empty((6, 4), np.float32), np.empty((5, 6), np.float32).T):
        with pytest.raises(TauGateError, match=r"out must be writable C-contiguous float32 \(6,"):
            ffn.ffn_forward(p, x, out=out)
    for threads in (0, numba.config.NUMBA_NUM_THREADS + 1, 1.5):
        with pytest.raises(TauGateError, match="threads must be an integer"):
            ffn.ffn_forward(p, x, threads=threads)
    for blk in (0, -3, 2.0, True):
        with pytest.raises(TauGateError, match="block must be a positive unit count"):
            ffn.ffn_forward(p, x, block=blk)


def test_block_units_spans_a_fixed_share_of_each_weight():
    """The batched path's default block: BLOCK_BYTES of a weight's rows, a multiple of 16, within
    [16, F]."""
    assert ffn._k.BLOCK_BYTES == 4 << 20
    for d_in, F, want in ((1024, 2048, 1024), (1000, 2048, 1040), (8, 100, 100), (65536, 40, 16)):
        z = np.zeros((F, d_in), np.float32)
        p = ffn.pack_ffn(z, z[:, 0].copy(), np.zeros((F, 4), np.float32), np.zeros(4, np.float32),
                         z[:, 0].copy(), act=0)  # fmt: skip
        assert ffn.block_units(p) == want, (d_in, F)


@pytest.mark.parametrize("threads", THREADS)
def test_non_finite_rows_are_named_or_passed_through(threads):
    a, thr = block(20, 50, 7, True, "normal", 3)
    p = ffn.pack_ffn(thr=thr, act=3, **a)
    x = np.random.default_rng(0).standard_normal((9, 20)).astype(np.float32)
    x[4, 3], x[7, 0] = np.nan, np.inf
    with pytest.raises(TauGateError, match="NaN or inf at row 4"):
        ffn.ffn_forward(p, x, threads=threads)
    for dense in (False, True):
        with pytest.raises(TauGateError, match="NaN or inf at row 0"):
            ffn.ffn_forward(p, x[4], dense=dense)
        y, c = ffn.ffn_forward(p, x, dense=dense, check_finite=False, threads=threads)
        ok = np.isfinite(x).all(axis=1)
        ref, counts = reference_ffn(x[ok], thr=thr, act_name="silu", **a)
        assert_close(y[ok], ref)
        assert c[ok].tolist() == counts.tolist()
        ffn.ffn_forward(p, x[4], dense=dense, check_finite=False)  # no crash


def test_torch_views_are_used_without_copies():
    torch = pytest.importorskip("torch")
    a, thr = block(1000, 200, 100, True, "normal", 5)
    p = ffn.pack_ffn(thr=thr, act=1, **a)
    t = torch.randn(40, 1000)
    x = t.numpy()
    out_t = torch.empty(40, 100)
    ffn.warmup(p)
    ref, _ = reference_ffn(x, thr=thr, act_name="gelu", **a)
    for threads in THREADS:
        for rows in (slice(0, 1), slice(None)):
            out = out_t[rows].numpy()
            tracemalloc.start()
            # block 16: the batched path's per-chunk scratch (z of a block per token) stays small
            y, _ = ffn.ffn_forward(p, x[rows], out=out, threads=threads, block=16)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert y is out and np.shares_memory(out_t.numpy(), y)
            assert peak < 32768 < x.nbytes // 4  # neither x (160 kB) copied nor y allocated
            assert_close(out_t[rows].numpy(), ref[rows])
    with pytest.raises(TauGateError, match="x must be C-contiguous float32"):
        ffn.ffn_forward(p, t.T.contiguous().numpy().T)  # a strided view is refused, not copied


CACHE_SCRIPT = textwrap.dedent(
    """
    import json, numpy as np
    from taugate.kernels import ffn
    z = np.zeros((3, 2), np.float32)
    p = ffn.pack_ffn(z, z[:, 0].copy(), z, z[0].copy(), z[:, 0].copy(), act=0)
    ffn.warmup(p)
    kernels = (ffn._k.one, ffn._k.one_dense, ffn._k.batch)
    print(json.dumps({"hits": [sum(k.stats.cache_hits.values()) for k in kernels]}))
    """
)


@pytest.mark.skipif(not _cache.CACHE_ENABLED, reason="no writable Numba cache directory")
def test_second_process_loads_kernels_from_the_disk_cache():
    """This process compiles (or loads) every path and Numba writes them to its disk cache; a
    second process then loads each one from there instead of compiling."""
    z = np.zeros((3, 2), np.float32)
    ffn.warmup(ffn.pack_ffn(z, z[:, 0].copy(), z, z[0].copy(), z[:, 0].copy(), act=0))
    kernels = (ffn._k.one, ffn._k.one_dense, ffn._k.batch)
    for k in kernels:
        index = [f for f in os.listdir(k._cache._cache_path) if f.endswith(".nbi")]
        assert any(f"_njit_ffn.{k.__name__}-" in f for f in index), (k.__name__, index)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-c", CACHE_SCRIPT]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["hits"] == [1, 1, 1]
