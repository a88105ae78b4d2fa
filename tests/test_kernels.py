"""Every backend and kernel path equals the slow reference; the Numba disk cache works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taugate.errors import TauGateError
from taugate.kernels import _cache, rowskip
from taugate.runtime import BACKENDS, CompiledModel

try:
    from reference import reference_active, reference_forward, reference_work_cap, separate_ties
except ImportError:  # tests/ imported as a package
    from tests.reference import (
        reference_active,
        reference_forward,
        reference_work_cap,
        separate_ties,
    )

THREADS = [t for t in (1, 2) if t <= numba.config.NUMBA_NUM_THREADS]
MODES = ("pos", "zero", "neg", "none_active", "all_active", "mixed", "ungated")


def thresholds(mode, n, rng):
    if mode == "pos":
        return rng.uniform(0.0, 1.0, n)
    if mode == "neg":
        return -rng.uniform(0.0, 1.0, n)
    if mode == "mixed":
        return rng.choice([1e30, -1e30, 0.5, np.inf], n)
    return np.full(n, {"zero": 0.0, "none_active": 1e30, "all_active": -1e30}[mode])


def build(sizes, modes, seed):
    """Random gated MLP: ``modes[i]`` picks the thresholds of hidden layer i."""
    rng = np.random.default_rng(seed)
    layers, tensors = [], {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        mode = None if last else modes[i]
        gated = mode not in (None, "ungated")
        act = "none" if last else "relu"
        layers.append({"in": n_in, "out": n_out, "gated": gated, "activation": act})
        w = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
        b = 0.3 * rng.standard_normal(n_out) + (5.0 if mode == "all_active" else 0.0)
        tensors[f"layers.{i}.weight"] = w.astype(np.float32)
        tensors[f"layers.{i}.bias"] = b.astype(np.float32)
        if gated:
            tensors[f"layers.{i}.tau"] = thresholds(mode, n_out, rng).astype(np.float32)
    return layers, tensors


def assert_close(got, ref):
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * scale)


@st.composite
def cases(draw):
    n_hidden = draw(st.integers(1, 3))
    width = st.one_of(st.integers(1, 16), st.integers(1, 160), st.integers(161, 2048))
    sizes = [draw(width) for _ in range(n_hidden + 2)]
    modes = [draw(st.sampled_from(MODES)) for _ in range(n_hidden)]
    batch = draw(st.one_of(st.just(1), st.integers(2, 8), st.integers(9, 300)))
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    batch = max(1, min(batch, 20_000_000 // macs))  # keeps the slow reference bounded
    return sizes, modes, batch, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_backend_matches_the_reference(case):
    sizes, modes, batch, seed = case
    layers, tensors = build(sizes, modes, seed)
    x = np.random.default_rng(seed + 1).standard_normal((batch, sizes[0])).astype(np.float32)
    tensors = separate_ties(layers, tensors, x)
    ref = reference_forward(layers, tensors, x)
    model = CompiledModel.from_arrays(layers, tensors)
    for backend in BACKENDS:
        for threads in THREADS:
            assert_close(model.predict(x, backend=backend, threads=threads), ref)
    packed = model.kernel("rowskip").packed
    for parallel in (False, True):
        out, counts = rowskip.forward(packed, x[:1], parallel=parallel)
        assert_close(out, ref[:1])
    cap = reference_work_cap(layers, tensors, x)
    assert model.last_stats["work_cap"] == pytest.approx(cap, rel=0.05)


def test_rows_with_and_without_active_units():
    # rows 0, 2 (exactly at tau), 3 have no active hidden unit; rows 1 and 4 have some
    layers = [
        {"in": 2, "out": 3, "gated": True, "activation": "relu"},
        {"in": 3, "out": 2, "gated": False, "activation": "none"},
    ]
    tensors = {
        "layers.0.weight": np.array([[1, 0], [0, 1], [1, 1]], np.float32),
        "layers.0.bias": np.zeros(3, np.float32),
        "layers.0.tau": np.array([1.0, 1.0, 1.0], np.float32),
        "layers.1.weight": np.array([[1, 2, 3], [-1, 0, 1]], np.float32),
        "layers.1.bias": np.array([0.5, -0.5], np.float32),
    }
    x = np.array([[0.2, 0.3], [2.0, 1.5], [1.0, 0.0], [-3.0, -3.0], [0.5, 2.0]], np.float32)
    ref = reference_forward(layers, tensors, x)
    active = reference_active(layers, tensors, x)[0]
    assert active.sum(axis=1).tolist() == [0, 3, 0, 0, 2]
    model = CompiledModel.from_arrays(layers, tensors)
    for backend in BACKENDS:
        np.testing.assert_allclose(model.predict(x, backend=backend), ref, atol=1e-6)
        assert model.last_stats["active_counts"] == [[0, 3, 0, 0, 2]]
        rows = [model.predict(r, backend=backend) for r in x]  # batch-1 path, row by row
        np.testing.assert_allclose(np.concatenate(rows), ref, atol=1e-6)


def test_batch_one_and_batched_paths_agree():
    layers, tensors = build([300, 200, 100, 7], ["pos", "mixed"], seed=3)
    x = np.random.default_rng(0).standard_normal((40, 300)).astype(np.float32)
    packed = CompiledModel.from_arrays(layers, tensors).kernel("rowskip").packed
    batched, counts = rowskip.forward(packed, x)
    for parallel in (False, True):
        for r in range(len(x)):
            out, c = rowskip.forward(packed, x[r : r + 1], parallel=parallel)
            np.testing.assert_allclose(out[0], batched[r], rtol=1e-5, atol=1e-5)
            assert c[0].tolist() == counts[r].tolist()


def test_single_linear_layer_and_one_dimensional_input():
    layers = [{"in": 6, "out": 3, "gated": False, "activation": "none"}]
    rng = np.random.default_rng(1)
    tensors = {
        "layers.0.weight": rng.standard_normal((3, 6)).astype(np.float32),
        "layers.0.bias": rng.standard_normal(3).astype(np.float32),
    }
    model = CompiledModel.from_arrays(layers, tensors)
    x = rng.standard_normal(6).astype(np.float32)
    for backend in BACKENDS:
        out = model.predict(x, backend=backend)
        assert out.shape == (1, 3)
        assert_close(out, reference_forward(layers, tensors, x))
        assert model.last_stats["active_share"] == []
    assert_close(model.predict(np.stack([x, x])), reference_forward(layers, tensors, [x, x]))


def test_pack_and_forward_validate_their_arguments():
    w, b = np.ones((3, 2), np.float32), np.zeros(3, np.float32)
    w2, b2 = np.ones((1, 3), np.float32), np.zeros(1, np.float32)
    with pytest.raises(TauGateError, match="weight 0"):
        rowskip.pack([w.astype(np.float64), w2], [b, b2], [None, None])
    with pytest.raises(TauGateError, match="weight 1 has 2 inputs, expected 3"):
        rowskip.pack([w, np.ones((1, 3), np.float32)[:, :2].copy()], [b, b2], [None, None])
    with pytest.raises(TauGateError, match="tau 0"):
        rowskip.pack([w, w2], [b, b2], [np.zeros(2, np.float32), None])
    with pytest.raises(TauGateError, match="output layer"):
        rowskip.pack([w, w2], [b, b2], [None, b2])
    packed = rowskip.pack([w, w2], [b, b2], [b, None])
    for bad in (np.ones((1, 2)), np.ones((1, 3), np.float32), np.ones((0, 2), np.float32), [1.0]):
        with pytest.raises(TauGateError, match="rowskip: input must be"):
            rowskip.forward(packed, bad)
    nan = np.ones((3, 2), np.float32)
    nan[2, 1] = np.inf
    with pytest.raises(TauGateError, match="NaN or inf at row 2"):
        rowskip.forward(packed, nan)
    for parallel in (False, True):
        with pytest.raises(TauGateError, match="NaN or inf at row 0"):
            rowskip.forward(packed, nan[2:], parallel=parallel)


def test_cache_dir_choice(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    pkg = tmp_path / "pkg"
    env = {"TAUGATE_CACHE_DIR": str(tmp_path / "tg"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert _cache.choose_cache_dir({"NUMBA_CACHE_DIR": str(tmp_path / "nb")}, pkg)[0] == "numba-env"
    assert _cache.choose_cache_dir(env, pkg) == ("in-tree", pkg / "__pycache__")
    # read-only install: the project cache dir, then the per-user one, then nothing
    ro = blocked / "pkg"
    assert _cache.choose_cache_dir(env, ro) == ("taugate-env", tmp_path / "tg" / "numba")
    env = {"NUMBA_CACHE_DIR": str(blocked / "x"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert _cache.choose_cache_dir(env, ro) == ("user", tmp_path / "xdg" / "taugate" / "numba")
    env["XDG_CACHE_HOME"] = str(blocked / "xdg")
    assert _cache.choose_cache_dir(env, blocked / "pkg") == ("off", None)
    with pytest.warns(RuntimeWarning, match="no writable Numba cache"):
        assert _cache.configure(env, blocked / "pkg") is False


CACHE_SCRIPT = textwrap.dedent(
    """
    import json, numpy as np
    from taugate.kernels import rowskip
    w, b = np.ones((4, 3), np.float32), np.zeros(4, np.float32)
    p = rowskip.pack([w, np.ones((2, 4), np.float32)], [b, np.zeros(2, np.float32)], [b, None])
    x = np.ones((2, 3), np.float32)
    rowskip.run(p, x[:1], False, True, 1)
    rowskip.run(p, x[:1], True, True, 2)
    rowskip.run(p, x, False, True, 2)
    rowskip.run(p, x, False, True, 2, blocked=True)
    kernels = (rowskip._one, rowskip._one_par, rowskip._batch, rowskip._batch_blocked)
    print(json.dumps({"hits": [sum(k.stats.cache_hits.values()) for k in kernels]}))
    """
)


@pytest.mark.slow
def test_second_process_loads_kernels_from_the_disk_cache(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))  # a fresh, empty cache
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run():
        cmd = [sys.executable, "-c", CACHE_SCRIPT]
        done = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert run()["hits"] == [0, 0, 0, 0]  # fresh cache dir: compiled, then written
    index = [f for _, _, files in os.walk(tmp_path / "numba") for f in files if f.endswith(".nbi")]
    for name in ("_njit.one-", "_njit.one_par-", "_njit.batch-", "_njit.batch_blocked-"):
        assert any(name in f for f in index), (name, index)
    assert run()["hits"] == [1, 1, 1, 1]  # second process: every path loaded from disk


@pytest.mark.parametrize("threads", THREADS)
def test_zero_inputs_are_skipped_and_counted_in_the_work_cap(threads):
    """Image-like inputs (most features exactly 0, one row all 0): every path equals the
    reference, and the work cap counts a layer-0 row only for each nonzero input feature."""
    layers, tensors = build([300, 200, 150, 7], ["mixed", "pos"], seed=11)
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (9, 300)).astype(np.float32)
    x[rng.random(x.shape) < 0.7] = 0.0
    x[4] = 0.0
    separate_ties(layers, tensors, x)
    ref = reference_forward(layers, tensors, x)
    model = CompiledModel.from_arrays(layers, tensors)
    for backend in BACKENDS:
        np.testing.assert_allclose(
            model.predict(x, backend=backend, threads=threads), ref, atol=1e-4
        )
        assert model.last_stats["work_cap"] == pytest.approx(reference_work_cap(layers, tensors, x))
        rows = [model.predict(r, backend=backend, threads=threads) for r in x]  # batch-1 path
        np.testing.assert_allclose(np.concatenate(rows), ref, atol=1e-4)
    dense_only = reference_work_cap(layers, tensors, np.ones_like(x))
    assert model.last_stats["work_cap"] > 1.5 * dense_only  # 70 % zeros: layer 0 mostly skipped
