"""Runtime: loading, input handling, statistics, compacted models, random models, no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from taugate.errors import TauGateError
from taugate.kernels import rowskip
from taugate.runtime import BACKENDS, CompiledModel, load, random_model

try:
    from reference import reference_active, reference_compact, reference_forward, reference_work_cap
except ImportError:  # tests/ imported as a package
    from tests.reference import (
        reference_active,
        reference_compact,
        reference_forward,
        reference_work_cap,
    )

THREADS_MAX = numba.config.NUMBA_NUM_THREADS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model():
    return random_model([20, 16, 12, 3], active=0.4, seed=7)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).standard_normal((9, 20)).astype(np.float32)


def test_backends_match_the_reference_and_report_the_same_stats(model, x):
    ref = reference_forward(model.layers, model.tensors, x)
    masks = reference_active(model.layers, model.tensors, x)
    stats = {}
    for backend in BACKENDS:
        out = model.predict(x, backend=backend)
        assert out.dtype == np.float32 and out.shape == (9, 3)
        np.testing.assert_allclose(out, ref, atol=1e-5)
        stats[backend] = model.last_stats
        assert stats[backend]["backend"] == backend
    for backend in BACKENDS:
        s = stats[backend]
        assert s["batch"] == 9
        assert s["active_counts"] == [m.sum(axis=1).tolist() for m in masks]
        assert s["active_share"] == pytest.approx([m.mean() for m in masks])
        assert s["work_cap"] == pytest.approx(reference_work_cap(model.layers, model.tensors, x))
        assert s["dense_macs"] == 20 * 16 + 16 * 12 + 12 * 3


def test_inputs_that_are_converted(model, x):
    expected = model.predict(x)
    np.testing.assert_array_equal(model.predict(x[0]), model.predict(x[:1]))  # 1-D = batch of 1
    np.testing.assert_allclose(model.predict(x[0]), expected[:1], atol=1e-6)
    np.testing.assert_allclose(model.predict(x.astype(np.float64)), expected)
    np.testing.assert_allclose(model.predict(x.tolist()), expected)
    f_order = np.asfortranarray(x)
    np.testing.assert_array_equal(model.predict(f_order), expected)
    wide = np.zeros((9, 40), np.float32)
    wide[:, ::2] = x
    np.testing.assert_array_equal(model.predict(wide[:, ::2]), expected)  # strided view
    ints = np.arange(40).reshape(2, 20) % 3 - 1
    for backend in BACKENDS:
        np.testing.assert_allclose(
            model.predict(ints, backend=backend), model.predict(ints.astype(np.float32)), atol=1e-6
        )
        np.testing.assert_array_equal(
            model.predict(ints > 0, backend=backend),
            model.predict((ints > 0).astype(np.float32), backend=backend),
        )


@pytest.mark.parametrize(
    ("bad", "pattern"),
    [
        (np.zeros((2, 3, 20), np.float32), r"must be 2-D \(batch, 20\) or 1-D \(20,\), got shape"),
        (np.float32(1.0), r"must be 2-D"),
        (np.zeros((4, 7), np.float32), r"has 7 features per row, expected 20"),
        (np.zeros(19, np.float32), r"has 19 features per row, expected 20"),
        (np.zeros((0, 20), np.float32), r"batch is empty"),
        (np.zeros((2, 20), np.complex64), r"dtype complex64 is not supported"),
        (np.zeros((2, 20), object), r"dtype object is not supported"),
        ([[1.0, 2.0], [3.0]], r"not a numeric array"),
        (np.array(["a"] * 20), r"dtype <U1 is not supported"),
    ],
)
def test_inputs_that_are_refused(model, bad, pattern):
    for backend in BACKENDS:
        with pytest.raises(TauGateError, match=pattern):
            model.predict(bad, backend=backend)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_input_names_the_row(model, x, value):
    bad = x.copy()
    bad[5, 3] = value
    for backend in BACKENDS:
        with pytest.raises(TauGateError, match="input contains NaN or inf at row 5"):
            model.predict(bad, backend=backend)
        with pytest.raises(TauGateError, match="at row 0"):
            model.predict(bad[5], backend=backend)
        model.predict(bad, backend=backend, check_finite=False)  # allowed, result unspecified
    with pytest.raises(TauGateError, match="at row 0"):
        model.predict(np.full((1, 20), 1e300))  # finite float64 that overflows float32


def test_backend_and_threads_are_checked(model, x):
    with pytest.raises(TauGateError, match="unknown backend 'gpu'.*dense, compact, rowskip"):
        model.predict(x, backend="gpu")
    top = numba.config.NUMBA_NUM_THREADS
    for threads in (0, top + 1, 1.5, True, "2"):
        with pytest.raises(TauGateError, match=f"threads must be an integer from 1 to {top}"):
            model.predict(x, threads=threads)
    before = numba.get_num_threads()
    for threads in range(1, top + 1):
        np.testing.assert_allclose(model.predict(x, threads=threads), model.predict(x), atol=1e-6)
        assert numba.get_num_threads() == before


def test_threaded_batch_one_path(model, x, monkeypatch):
    expected = model.predict(x)
    np.testing.assert_array_equal(model.predict(x[0], threads=1), model.predict(x[0]))
    monkeypatch.setattr(rowskip, "PARALLEL_MIN_MACS", 0)  # every model counts as "big"
    calls = []
    real = rowskip._one_par
    monkeypatch.setattr(rowskip, "_one_par", lambda *a: calls.append(a[6]) or real(*a))
    before = numba.get_num_threads()
    for threads in range(1, THREADS_MAX + 1):
        rows = np.concatenate([model.predict(r, threads=threads) for r in x])
        np.testing.assert_allclose(rows, expected, atol=1e-5)
        assert numba.get_num_threads() == before
    assert calls == [n for n in range(2, THREADS_MAX + 1) for _ in x]  # nth passed to the kernel


def test_last_stats_before_any_call():
    assert random_model([4, 3, 2], active=0.5).last_stats is None


def compacted(seed=0):
    """An original 6-8-5-3 model, its kept units, and the compacted model (same function)."""
    orig = random_model([6, 8, 5, 3], active=0.6, seed=seed)
    t, kept = orig.tensors, [[0, 2, 3, 7], [1, 4]]
    t["layers.0.tau"][[1, 4, 5, 6]] = np.inf  # dropped units never fire in the original
    t["layers.1.tau"][[0, 2, 3]] = np.inf
    layers, small = reference_compact(orig.layers, t, kept)
    extra = {"kept_units": kept, "original_layers": orig.layers}
    return orig.layers, t, CompiledModel.from_arrays(layers, small, extra)


def test_dense_scatters_a_compacted_model_back_to_full_size(tmp_path):
    orig_layers, orig_tensors, model = compacted()
    x = np.random.default_rng(2).standard_normal((30, 6)).astype(np.float32)
    ref = reference_forward(orig_layers, orig_tensors, x)
    for backend in BACKENDS:
        np.testing.assert_allclose(model.predict(x, backend=backend), ref, atol=1e-5)
        s = model.last_stats
        assert s["dense_macs"] == 6 * 8 + 8 * 5 + 5 * 3  # original sizes
        masks = reference_active(orig_layers, orig_tensors, x)
        assert s["active_share"] == pytest.approx([m.mean() for m in masks])  # of 8 and 5 units
        assert s["work_cap"] == pytest.approx(
            reference_work_cap(model.layers, model.tensors, x, orig_layers)
        )
    full = model.spec.uncompacted().weights[1].T  # (in, out) of layer 1 at full size: zeros
    # outside the kept units
    assert full.shape == (8, 5) and not full[[1, 4, 5, 6]].any() and not full[:, [0, 2, 3]].any()
    again = load(model.save(tmp_path / "c.taugate"))
    assert again.manifest["kept_units"] == [[0, 2, 3, 7], [1, 4]]
    np.testing.assert_array_equal(again.predict(x, backend="dense"), model.predict(x, "dense"))


def test_load_from_disk(tmp_path, model, x):
    path = CompiledModel.from_arrays(model.layers, model.tensors, {"provenance": {"seed": 7}}).save(
        tmp_path / "m.taugate"
    )
    loaded = load(path)
    assert loaded.sizes == [20, 16, 12, 3] and loaded.layers == model.layers
    assert loaded.manifest["provenance"] == {"seed": 7} and loaded.path == path
    on_disk = json.loads((path / "manifest.json").read_text())
    assert (
        "weights_sha256" in on_disk
        and {**loaded.manifest, "weights_sha256": on_disk["weights_sha256"]} == on_disk
    )
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    with pytest.raises(TauGateError, match="does not exist"):
        load(tmp_path / "missing.taugate")


@pytest.mark.parametrize("active", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_random_model_hits_the_requested_activity(active):
    m = random_model([50, 200, 200, 4], active=active, seed=3)
    m.predict(np.random.default_rng(9).standard_normal((400, 50)))  # fresh inputs
    assert m.last_stats["active_share"] == pytest.approx([active, active], abs=0.08)
    assert all(e["gated"] for e in m.layers[:-1]) and m.manifest["provenance"]["active"] == active


def test_random_model_is_seeded_and_checks_arguments():
    a, b = random_model([5, 4, 2], 0.3, seed=1), random_model([5, 4, 2], 0.3, seed=1)
    np.testing.assert_array_equal(a.tensors["layers.0.weight"], b.tensors["layers.0.weight"])
    calib = np.random.default_rng(0).uniform(size=(64, 5))
    random_model([5, 4, 2], 0.3, calib=calib)
    for sizes in ([5], [5, 0, 2], "784-10"):
        with pytest.raises(TauGateError, match="sizes"):
            random_model(sizes, 0.3)
    with pytest.raises(TauGateError, match="active"):
        random_model([5, 4, 2], 1.5)
    with pytest.raises(TauGateError, match=r"calib must have shape \(N, 5\)"):
        random_model([5, 4, 2], 0.3, calib=np.zeros((3, 4)))


def test_from_arrays_validates(model):
    t = model.tensors
    del t["layers.1.tau"]
    with pytest.raises(TauGateError, match=r"missing tensor 'layers\.1\.tau'"):
        CompiledModel.from_arrays(model.layers, t)
    with pytest.raises(TauGateError, match="reserved"):
        CompiledModel.from_arrays(model.layers, model.tensors, {"layers": []})


def test_warmup_reports_seconds(model):
    assert model.warmup() > 0.0


NO_TORCH = textwrap.dedent(
    """
    import sys
    import numpy as np
    import taugate.runtime as rt
    m = rt.random_model([30, 24, 16, 4], active=0.3)
    m.warmup()
    for backend in rt.BACKENDS:
        m.predict(np.ones((1, 30)), backend=backend)
        m.predict(np.ones((5, 30)), backend=backend, threads=1)
    assert "torch" not in sys.modules, "taugate.runtime imported torch"
    print("ok")
    """
)


def test_runtime_never_imports_torch():
    env = {k: v for k, v in os.environ.items() if k not in ("TAUGATE_CACHE_DIR", "NUMBA_CACHE_DIR")}
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_auto_backend_picks_rowskip_for_small_batches_and_compact_for_large_ones():
    from taugate.runtime import AUTO_ROWSKIP_MAX_BATCH, random_model

    m = random_model([20, 16, 16, 4], 0.3, seed=3)
    x = np.random.default_rng(0).normal(size=(AUTO_ROWSKIP_MAX_BATCH + 1, 20)).astype(np.float32)
    for rows in (1, AUTO_ROWSKIP_MAX_BATCH):
        np.testing.assert_allclose(
            m.predict(x[:rows], backend="auto"), m.predict(x[:rows], backend="rowskip")
        )
        assert m.last_stats["backend"] == "rowskip"
    m.predict(x, backend="auto")  # the share measured last (30 %) is above the sparse limit
    assert m.last_stats["backend"] == "compact"


def test_auto_backend_follows_the_measured_active_share_and_the_layer_size(monkeypatch):
    from taugate.runtime import model as rm
    from taugate.runtime import random_model

    big = rm.AUTO_ROWSKIP_MAX_BATCH + 1
    x = np.random.default_rng(0).normal(size=(big, 20)).astype(np.float32)
    sparse = random_model([20, 64, 64, 4], 0.1, seed=3)
    assert sparse.auto_backend(big) == "compact"  # nothing measured yet: the safe BLAS path
    out = sparse.predict(x, backend="auto")
    np.testing.assert_allclose(out, sparse.predict(x, backend="rowskip"), rtol=1e-5, atol=1e-5)
    assert 0 < np.mean(sparse.last_stats["active_share"]) <= rm.AUTO_SPARSE_MAX_ACTIVE
    sparse.predict(x, backend="auto")  # now measured: sparse, small layers -> per-sample
    assert sparse.last_stats["backend"] == "rowskip"
    monkeypatch.setattr(rm, "AUTO_BLOCKED_MIN_BYTES", 4 * 64 * 64 - 1)  # "bigger than L3"
    sparse.predict(x, backend="auto")
    assert sparse.last_stats["backend"] == "rowskip-batched"
    assert sparse.auto_backend(rm.AUTO_ROWSKIP_MAX_BATCH) == "rowskip"
    dense = random_model([20, 64, 64, 4], 0.5, seed=3)
    dense.predict(x, backend="rowskip")
    assert dense.auto_backend(big) == "compact"  # measured 50 % active


def test_bad_api_arguments_are_clear_errors(model, x):
    with pytest.raises(TauGateError, match="artifact path must be a str or path, got NoneType"):
        load(None)
    with pytest.raises(TauGateError, match="backend must be a string, got list"):
        model.predict(x, backend=["rowskip"])
    with pytest.raises(TauGateError, match="sizes must be a list of >= 2 positive integers"):
        random_model([True, 4, 2], 0.5)
    with pytest.raises(TauGateError, match=r"calib is not a numeric \(N, 2\) array"):
        random_model([2, 4, 2], 0.5, calib=[[1, 2], [3]])
