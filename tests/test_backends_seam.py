"""Adding a backend is one :func:`taugate.backends.register` call, end to end.

A toy non-runtime backend (float64 numpy) and a toy runtime backend are registered here and then
show up, with nothing else changed, in ``taugate bench`` (table, pivot, JSON, ``--help``),
``taugate sweep --help``, the sweep reports' backend order, ``SweepConfig``,
``CompiledModel.predict`` and ``taugate predict --help``. Then ``bench_model``'s agreement check
before timing, and the one real inductor timing (torch-compile next to onnxruntime). The
registry's own rules are checked in tests/test_backends_registry.py.

Every test that registers a backend restores :data:`taugate.backends.REGISTRY` afterwards.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from taugate import backends as registry
from taugate.backends import Backend, BuildContext
from taugate.bench.run import bench_model
from taugate.bench.timing import TimingConfig
from taugate.cli import main
from taugate.errors import TauGateError

try:
    import backends_helpers as shared
    from backends_helpers import _header_of, _help, _pivot_header, float64_factory, runtime_factory
except ImportError:  # tests/ imported as a package
    from tests import backends_helpers as shared
    from tests.backends_helpers import (
        _header_of,
        _help,
        _pivot_header,
        float64_factory,
        runtime_factory,
    )

# the shared fixtures, bound here under their own names so that pytest finds them in this module
clean_registry, model, x = shared.clean_registry, shared.model, shared.x

FAST = TimingConfig(rounds=3, sample_seconds=0.0005)

TOY, TOY_HELP = "toyf64", "float64 numpy forward on the uncompacted matrices (a test toy)"
TOY_RT, TOY_RT_HELP = "toyrt", "ModelSpec forward wrapped as a runtime kernel (a test toy)"


def wrong_factory(model, xs, ctx):
    """Logits that are off by one everywhere: must never pass the agreement check."""
    good = float64_factory(model, xs, ctx)
    return lambda: good() + np.float32(1.0)


@pytest.fixture
def toys(clean_registry):
    """The toy backends, each added with one register() call and nothing else."""
    # order 65: between dense (60) and compact (70); 75: between compact (70) and rowskip (80)
    registry.register(Backend(TOY, float64_factory, 65, TOY_HELP))
    registry.register(Backend(TOY_RT, runtime_factory, 75, TOY_RT_HELP, runtime=True))
    return TOY, TOY_RT


# ------------------------------------------------------------- 1. adding a backend is one entry


def test_a_registered_backend_is_benched_in_registry_order(toys, tmp_path, capsys):
    out = tmp_path / "f.json"
    assert main(["bench", "--random", "16", "--active", "0.5", "--batch-sizes", "1,4", "--rounds",
                 "3", "--backends", f"torch,{TOY},rowskip", "--json", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [(r["backend"], r["batch"]) for r in rows] == [
        (b, n) for n in (1, 4) for b in ("torch", TOY, "rowskip")
    ]
    for r in rows:
        assert r["median_ms"] > 0 and np.isfinite(r["speedup_vs_torch"])
    # the rows table: one line per (backend, batch), the toy between torch and rowskip
    table = [ln.split()[0] for ln in text.splitlines() if ln.split()[:1] in (["torch"], [TOY],
             ["rowskip"]) and len(ln.split()) > 2]  # fmt: skip
    assert table == ["torch", TOY, "rowskip"] * 2
    header = _pivot_header(text)
    assert header[:4] == ["batch", "torch", TOY, "rowskip"]
    assert "rowskip vs torch" in header


def test_a_registered_backend_is_in_the_help_of_bench_and_sweep(toys, capsys):
    for command in ("bench", "sweep"):
        text = _help(command, capsys)
        assert f"{TOY}: {TOY_HELP}" in text, command
        # listed where its order puts it: after dense, before compact
        assert text.index("dense: numpy BLAS") < text.index(f"{TOY}:") < text.index("compact:")
    assert f"{TOY_RT}: {TOY_RT_HELP}" in _help("bench", capsys)  # runtime ones are benchable too


def test_sweep_reports_sort_a_registered_backend_by_its_order(toys):
    from taugate.sweep.stats import summarise
    from taugate.sweep.summary import summary_markdown

    def row(backend, batch, seed):
        ms = {"torch": 4.0, TOY: 3.0, "compact": 2.0, "rowskip": 1.0}[backend] + 0.1 * seed
        return {"lambda": 0.01, "seed": seed, "width": 128, "backend": backend, "batch": batch,
                "acc_0_soft": 0.97, "acc_angle_soft": 0.9, "acc_0_hard": 0.96,
                "acc_angle_hard": 0.9, "acc_0_compiled": 0.96, "acc_angle_compiled": 0.9,
                "active_L1": 0.3, "active_L2": 0.3, "active_mean": 0.3, "median_ms": ms,
                "speedup_vs_torch": 4.0 / ms, "speedup_vs_dense": 3.0 / ms, "work_cap": 2.0,
                "cap_share": 1.5 / ms / 2.0, "angle": 30.0, "dataset": "mnist"}  # fmt: skip

    rows = [row(b, n, s) for b in ("rowskip", TOY, "compact", "torch") for n in (64, 1)
            for s in (0, 1)]  # fmt: skip
    order = ["torch", TOY, "compact", "rowskip"]
    summ = summarise(rows)
    # grouped by width, lambda, backend (registry order), batch
    assert [(s["backend"], s["batch"]) for s in summ] == [(b, n) for b in order for n in (1, 64)]
    md = summary_markdown(rows)
    assert f"- backends: {', '.join(order)}" in md
    speed = [ln for ln in md.splitlines() if ln.startswith("| λ | active % | torch (ms)")]
    assert len(speed) == 2, md  # batch 1 and batch 64
    header = _header_of(speed[0], "torch (ms)")
    assert header[2:6] == ["torch (ms)", f"{TOY} vs torch", "compact vs torch", "rowskip vs torch"]


def test_sweep_config_takes_a_registered_backend(toys):
    from taugate.sweep.config import SweepConfig

    cfg = SweepConfig.from_flat(dataset="digits", backends=(TOY,), lambdas=(0.0,), seeds=1)
    assert cfg.backends == (TOY,)
    assert cfg.to_dict()["backends"] == [TOY]
    default = SweepConfig.from_flat(dataset="digits").backends  # every available one, in order
    assert default == registry.select(defaults_only=False)[0]
    assert set(default) == {n for n in registry.names(approximate=False)
                            if registry.get(n).unavailable() is None}  # fmt: skip
    assert default.index("dense") < default.index(TOY) < default.index("compact")
    assert default.index("compact") < default.index(TOY_RT) < default.index("rowskip")


def test_a_registered_runtime_backend_runs_in_predict(toys, model, x, capsys):
    out = model.predict(x, backend=TOY_RT)
    stats = model.last_stats
    ref = model.predict(x, backend="compact")
    assert out.dtype == np.float32 and out.shape == (10, 4)
    np.testing.assert_array_equal(out, ref)
    assert stats["backend"] == TOY_RT and stats["batch"] == 10
    assert stats["active_counts"] == model.last_stats["active_counts"]  # compact's, same inputs
    assert stats["work_cap"] == pytest.approx(model.last_stats["work_cap"])
    assert registry.names(runtime=True) == (
        "dense",
        "compact",
        TOY_RT,
        "rowskip",
        "rowskip-batched",
        "rowskip-predicted",
    )
    text = _help("predict", capsys)
    assert (
        f"dense | compact | {TOY_RT} | rowskip | rowskip-batched | rowskip-predicted | auto" in text
    )
    assert f"{TOY_RT}: {TOY_RT_HELP}" in text
    assert f"{TOY}:" not in text  # not a runtime backend: predict does not take it


def test_runtime_kernels_are_built_once_per_backend(clean_registry, model, x):
    """``get`` accepts any case and spaces; predict must not rebuild the kernel on every call.

    FAILS (source bug): ``CompiledModel.predict`` looks the kernel up under the name as given
    (``"TOYRT"``) but ``kernel`` stores it under the registered name (``"toyrt"``), so every call
    with a non-canonical name builds the kernel again (for rowskip: re-packs every weight)."""
    built = []

    def counting(m):
        built.append(m)
        return runtime_factory(m)

    registry.register(Backend("toycount", counting, 75, "counts its builds", runtime=True))
    ref = model.predict(x, backend="compact")
    for name in ("toycount", "toycount", "TOYCOUNT", " toycount "):
        np.testing.assert_array_equal(model.predict(x, backend=name), ref)
    assert len(built) == 1


# ------------------------------------------------------------ 2. agreement is checked first


def test_bench_model_refuses_a_backend_that_disagrees(clean_registry, model, x):
    registry.register(Backend("toywrong", wrong_factory, 65, "off by one"))
    with pytest.raises(TauGateError, match="backend toywrong disagrees with dense on input 0"):
        bench_model(model, x, (1,), ("dense", "toywrong", "rowskip"), timing=FAST)
    with pytest.raises(TauGateError, match="disagrees"):
        bench_model(model, x, (3,), ("toywrong", "compact"), timing=FAST)


def test_bench_model_times_agreeing_registered_backends(toys, model, x):
    rows, info = bench_model(model, x, (1, 3), ("dense", TOY, TOY_RT, "rowskip"), timing=FAST)
    assert [(r["backend"], r["batch"]) for r in rows] == [
        (b, n) for n in (1, 3) for b in ("dense", TOY, TOY_RT, "rowskip")
    ]
    assert all(r["median_ms"] > 0 and np.isfinite(r["speedup_vs_dense"]) for r in rows)
    assert info["compile_seconds"] >= 0


def test_bench_model_tolerates_a_module_backend_that_disagrees(clean_registry, model, x):
    seen = []

    def module_factory(m, xs, ctx):
        seen.append(ctx)
        return wrong_factory(m, xs, ctx)

    registry.register(Backend("toymod", module_factory, 35, "the module", needs_module=True))
    module = object()  # what the sweep passes: the trained torch module
    rows, _ = bench_model(model, x, (1, 4), ("dense", "toymod", "rowskip"), timing=FAST,
                          module=module, threads=1)  # fmt: skip
    assert {(r["backend"], r["batch"]) for r in rows} == {
        (b, n) for n in (1, 4) for b in ("dense", "toymod", "rowskip")
    }
    assert seen and all(c == BuildContext(threads=1, module=module) for c in seen)


def test_bench_model_times_a_module_backend_alone(clean_registry, model, x):
    """A sweep may time the trained module alone (``--backends torch-hard``).

    FAILS (source bug): with no non-module backend, ``_cycling_fns`` calls ``check_agreement({})``,
    which indexes ``names[0]`` of an empty list: IndexError instead of timing."""
    registry.register(Backend("toymod", float64_factory, 35, "the module", needs_module=True))
    rows, _ = bench_model(model, x, (1,), ("toymod",), timing=FAST, module=object())
    assert [r["backend"] for r in rows] == ["toymod"]


# --------------------------------------------- 3. torch-compile and onnxruntime, timed for real


@pytest.mark.skipif(
    registry.get("torch-compile").unavailable() is not None
    or registry.get("onnxruntime").unavailable() is not None,
    reason="needs a C++ compiler for inductor and onnxruntime",
)
def test_bench_times_torch_compile_and_onnxruntime(tmp_path, capsys):
    """The one test that compiles with inductor (15-40 s the first time)."""
    out = tmp_path / "b.json"
    assert main(["bench", "--random", "32", "--batch-sizes", "1,8", "--rounds", "3", "--backends",
                 "torch,torch-compile,onnxruntime,rowskip", "--json", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    names = ("torch", "torch-compile", "onnxruntime", "rowskip")
    assert [(r["backend"], r["batch"]) for r in rows] == [(b, n) for n in (1, 8) for b in names]
    assert all(r["median_ms"] > 0 and r["speedup_vs_torch"] > 0 for r in rows)
    header = _pivot_header(text)
    assert header[:5] == ["batch", *names]
    assert "rowskip vs torch-compile" in header and "rowskip vs onnxruntime" in header
    body = [ln.strip("|").split("|") for ln in text.splitlines() if ln.startswith("| 32 |")]
    assert [c[2].strip() for c in body] == ["1", "8"]  # width, active, batch, ...
    # every latency and every rowskip ratio was measured: none is "-"
    assert all(c.strip() not in ("", "-") for cells in body for c in cells[3 : 3 + 4 + 3])
