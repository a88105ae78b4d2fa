"""FFN-block benchmarks: the skipping kernel against its dense twin and a numpy (BLAS) FFN.

One transformer FFN block, d_model 1024, 4096 units, each unit's threshold the 80th percentile of
its pre-activation over random inputs (so ~20 % of the units are open per token): ReLU (plain FFN)
and SwiGLU (gated-linear, silu), batch 1 and 8. Each shape is one pytest-benchmark group holding
``skip`` (``ffn_forward``), ``dense`` (``ffn_forward(dense=True)``, the same loops over every
row) and ``numpy`` (two or three BLAS calls). ``extra_info["work_cap"]`` is the FFN work cap, dense
multiply-adds / the multiply-adds skipping needs (``ffn_macs``); the share of it reached is
``(dense time / skip time) / work_cap``.

Everything runs on ONE thread (Numba's, and BLAS's through threadpoolctl), and the calls cycle
through 16 different inputs so that no call finds the previous one's open rows in cache. "warm":
one block, whose skipping working set (Wz plus the open rows, ~19-22 MB) partly stays in a 32 MB
L3 while the dense one (32-48 MB) does not; "cold": calls cycle through 3 blocks, like
consecutive layers of a model, so every call streams its weights from DRAM. Run with
``make bench`` or ``pytest bench/test_ffn_bench.py --benchmark-only``.
"""

import itertools

import numba
import numpy as np
import pytest

from taugate.kernels import ffn

D_MODEL, UNITS, OPEN = 1024, 4096, 0.2
KINDS = {"relu": (0, False), "swiglu": (3, True)}  # (activation code, glu)
BATCHES = [1, 8]
IMPLS = ["skip", "dense", "numpy"]
POOL = 16  # distinct inputs cycled through
LAYERS = 3  # "cold": blocks cycled through, 96-144 MB, so every call streams its weights from DRAM
_BLOCKS: dict = {}


def _block(kind: str, seed: int = 0) -> ffn.FFNPacked:
    """Random FFN block with thresholds at the (1 - OPEN) quantile of z over random inputs."""
    if (kind, seed) not in _BLOCKS:
        act, glu = KINDS[kind]
        rng = np.random.default_rng(seed)

        def w(rows, cols, fan_in):
            return (rng.standard_normal((rows, cols)) / np.sqrt(fan_in)).astype(np.float32)

        wz, bz = w(UNITS, D_MODEL, D_MODEL), np.zeros(UNITS, np.float32)
        wdt, bd = w(UNITS, D_MODEL, UNITS), np.zeros(D_MODEL, np.float32)
        x = rng.standard_normal((1024, D_MODEL)).astype(np.float32)  # (1024, d_model)
        thr = np.quantile(x @ wz.T + bz, 1.0 - OPEN, axis=0).astype(np.float32)  # (F,)
        up = {"wu": w(UNITS, D_MODEL, D_MODEL), "bu": np.zeros(UNITS, np.float32)} if glu else {}
        packed = ffn.pack_ffn(wz, bz, wdt, bd, thr, act=act, **up)
        ffn.warmup(packed)
        _BLOCKS[kind, seed] = packed
    return _BLOCKS[kind, seed]


def _numpy_ffn(p: ffn.FFNPacked):
    """The same block as three BLAS calls, weights in torch's own layouts (up / gate (F, d_in),
    down (d_out, F)) and tokens as columns, the fastest orientation for OpenBLAS here."""
    wz, wu = np.ascontiguousarray(p.view("wz")), np.ascontiguousarray(p.view("wu"))
    wd = np.ascontiguousarray(p.view("wdt").T)  # (d_out, F): down as stored by torch
    bz, bu, thr, bd = p.bz[:, None], p.bu[:, None], p.thr[0][:, None], p.view("bd")[:, None]

    def fn(x):
        z = wz @ x.T + bz  # (F, B)
        h = np.maximum(z, 0) if p.act == 0 else z * 0.5 * (1.0 + np.tanh(0.5 * z))  # relu | silu
        if p.glu:
            h *= wu @ x.T + bu
        h *= z > thr
        return (wd @ h + bd).T  # (B, d_out)

    return fn


@pytest.fixture
def one_thread():
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    with threadpool_limits(1, user_api="blas"):
        yield
    numba.set_num_threads(previous)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("cache", ["warm", "cold"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_ffn(benchmark, one_thread, kind, cache, batch, impl):
    blocks = [_block(kind, seed) for seed in range(1 if cache == "warm" else LAYERS)]
    p = blocks[0]
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((batch, D_MODEL)).astype(np.float32) for _ in range(POOL)]
    out = np.empty((batch, D_MODEL), np.float32)
    counts = np.concatenate([ffn.ffn_forward(p, x, threads=1)[1] for x in xs])
    fns = {
        "skip": lambda q, x: ffn.ffn_forward(q, x, out=out, threads=1),
        "dense": lambda q, x: ffn.ffn_forward(q, x, out=out, dense=True, threads=1),
        "numpy": lambda q, x: numpy_fns[id(q)](x),
    }
    numpy_fns = {id(q): _numpy_ffn(q) for q in blocks} if impl == "numpy" else {}
    ref = _numpy_ffn(p)(xs[0])
    np.testing.assert_allclose(ffn.ffn_forward(p, xs[0], threads=1)[0], ref, rtol=0, atol=1e-3)
    pairs = [(blocks[i % len(blocks)], xs[i % POOL]) for i in range(POOL * len(blocks))]
    fn, calls = fns[impl], itertools.cycle(pairs)
    benchmark.group = (
        f"FFN {D_MODEL}-{UNITS}-{D_MODEL} {kind}, {OPEN:.0%} open, batch {batch}, {cache} cache"
    )
    benchmark.extra_info.update(
        impl=impl,
        threads=1,
        work_cap=p.macs_dense / ffn.ffn_macs(p, counts),
        open_share=float(counts.mean() / UNITS),
    )
    benchmark(lambda: fn(*next(calls)))
