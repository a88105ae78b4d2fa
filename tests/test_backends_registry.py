"""The one backend registry (``taugate/backends.py``) and everything that reads it.

Adding a backend is one :func:`taugate.backends.register` call: a toy non-runtime backend (float64
numpy) and a toy runtime backend are registered here and then show up, with nothing else changed,
in ``taugate bench`` (table, pivot, JSON, ``--help``), ``taugate sweep --help``, the sweep reports'
backend order, ``SweepConfig``, ``CompiledModel.predict`` and ``taugate predict --help``. Then the
registry's own rules, the one-line errors for missing packages, the torch-compile compiler check
(with one real inductor timing) and ``bench_model``'s agreement check before timing.

Every test that registers a backend restores :data:`taugate.backends.REGISTRY` afterwards.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import shutil

import numpy as np
import pytest

from taugate import backends as registry
from taugate.backends import Backend, BuildContext
from taugate.bench.run import bench_model
from taugate.bench.timing import TimingConfig
from taugate.cli import main
from taugate.errors import TauGateError
from taugate.runtime import random_model

BUILT_IN = ("torch", "torch-compile", "torch-soft", "torch-hard", "onnxruntime", "dense",
            "compact", "rowskip", "scipy-sparse")  # fmt: skip
FAST = TimingConfig(rounds=3, sample_seconds=0.0005)

TOY, TOY_HELP = "toyf64", "float64 numpy forward on the uncompacted matrices (a test toy)"
TOY_RT, TOY_RT_HELP = "toyrt", "ModelSpec forward wrapped as a runtime kernel (a test toy)"


# ------------------------------------------------------------------------------ the toy backends


def float64_factory(model, xs, ctx):
    """A non-runtime factory: weights set up once in float64, call k computes xs[k % len(xs)]."""
    spec = model.spec.uncompacted()
    ws = [np.ascontiguousarray(w.T, np.float64) for w in spec.weights]  # (in, out)
    bs = [np.asarray(b, np.float64) for b in spec.biases]
    thr = [np.asarray(t, np.float64) for t in spec.thresholds]
    nxt = itertools.cycle([np.asarray(x, np.float64) for x in xs]).__next__

    def run():
        h = nxt()
        for i in range(len(ws)):
            z = h @ ws[i] + bs[i]  # (B, out_i)
            h = np.where(z > thr[i], z, 0.0) if i < len(ws) - 1 else z
        return h.astype(np.float32)

    return run


def runtime_factory(model):
    """A runtime factory: kernel(x, check_finite, threads) -> (logits, counts)."""
    spec = model.spec

    def kernel(x, check_finite, threads):
        if check_finite and not np.isfinite(x).all():
            raise TauGateError("input contains NaN or inf")
        return spec.forward(x)

    return kernel


def wrong_factory(model, xs, ctx):
    """Logits that are off by one everywhere: must never pass the agreement check."""
    good = float64_factory(model, xs, ctx)
    return lambda: good() + np.float32(1.0)


@pytest.fixture
def clean_registry():
    """REGISTRY as it was before the test, whatever the test registered or replaced."""
    saved = dict(registry.REGISTRY)
    yield registry.REGISTRY
    registry.REGISTRY.clear()
    registry.REGISTRY.update(saved)


@pytest.fixture
def toys(clean_registry):
    """The toy backends, each added with one register() call and nothing else."""
    # order 65: between dense (60) and compact (70); 75: between compact (70) and rowskip (80)
    registry.register(Backend(TOY, float64_factory, 65, TOY_HELP))
    registry.register(Backend(TOY_RT, runtime_factory, 75, TOY_RT_HELP, runtime=True))
    return TOY, TOY_RT


@pytest.fixture(scope="module")
def model():
    return random_model([24, 16, 12, 4], active=0.4, seed=3)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(5).standard_normal((10, 24)).astype(np.float32)


def _flat(text: str) -> str:
    """argparse re-wraps help texts: compare with every run of whitespace as one space."""
    return " ".join(text.split())


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    return _flat(capsys.readouterr().out)


def _header_of(markdown: str, column: str) -> list[str]:
    """The column names of the first Markdown table with a column ``column``."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and column in cells:
            return cells
    raise AssertionError(f"no table with a column {column!r} in:\n{markdown}")


def _pivot_header(text: str) -> list[str]:
    """The columns of the bench pivot from ``batch`` on (--random adds width and active first)."""
    header = _header_of(text, "batch")
    assert header[:2] == ["width", "active"], header
    return header[header.index("batch") :]


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
    assert set(default) == {n for n in registry.names() if registry.get(n).unavailable() is None}
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
    assert registry.names(runtime=True) == ("dense", "compact", TOY_RT, "rowskip")
    text = _help("predict", capsys)
    assert f"dense | compact | {TOY_RT} | rowskip | auto" in text
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


# ---------------------------------------------------------------------------- 2. registry rules


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"name": "Bad Name"}, "lowercase letters, digits and '-'"),
        ({"name": "x_y"}, "got 'x_y'"),
        ({"name": "9lives"}, "got '9lives'"),
        ({"name": ""}, "got ''"),
        ({"factory": "taugate.bench.scipy_path.csr"}, "factory must be 'module:function'"),
        ({"runtime": True, "needs_torch": True}, "a runtime backend cannot need torch"),
        ({"runtime": True, "needs_module": True}, "a runtime backend cannot need torch"),
    ],
)
def test_bad_backend_entries_are_refused(kw, message):
    args = {"name": "toy", "factory": "taugate.bench.scipy_path:csr", "order": 5, "help": "h", **kw}
    with pytest.raises(TauGateError, match=message.replace("(", r"\(")):
        Backend(**args)


def test_a_name_registers_once_unless_replaced(clean_registry):
    first = registry.register(Backend("toy", float64_factory, 65, "first"))
    assert registry.get("toy") is first
    with pytest.raises(TauGateError, match="backend 'toy' is registered already"):
        registry.register(Backend("toy", float64_factory, 66, "second"))
    assert registry.get("toy") is first
    second = registry.register(Backend("toy", float64_factory, 95, "second"), replace=True)
    assert registry.get("toy") is second and registry.names()[-1] == "toy"
    with pytest.raises(TauGateError, match="backend 'rowskip' is registered already"):
        registry.register(Backend("rowskip", runtime_factory, 1, "x", runtime=True))
    with pytest.raises(TauGateError, match="register\\(\\) takes a Backend, got dict"):
        registry.register({"name": "toy2"})


def test_entries_are_frozen_and_requires_is_a_tuple():
    b = Backend("toy", float64_factory, 1, "h", requires=["numpy"])
    assert b.requires == ("numpy",) and b.unavailable() is None and b.require() is b
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.order = 2  # type: ignore[misc]
    assert b.load() is float64_factory
    from taugate.bench.scipy_path import csr

    assert registry.get("scipy-sparse").load() is csr  # a "module:function" string, imported


def test_get_lists_every_name_and_normalises():
    with pytest.raises(TauGateError, match="unknown backend 'nope'; choose from") as e:
        registry.get("nope")
    listed = str(e.value).split("choose from ")[1].split(", ")
    assert tuple(listed) == registry.names() == BUILT_IN
    assert registry.get(" Compact ") is registry.REGISTRY["compact"]
    with pytest.raises(TauGateError, match="unknown backend 3"):
        registry.get(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, bad",
    [("torch,,dense", "''"), ("torch,gpu", "'gpu'"), ("", "''"), (["dense", "tpu"], "'tpu'")],
)
def test_parse_names_the_bad_entry(text, bad):
    with pytest.raises(TauGateError, match=f"unknown backend {bad}; choose from torch, ") as e:
        registry.parse(text)
    assert "\n" not in str(e.value)


def test_parse_dedups_in_the_given_order_and_checks_allowed():
    assert registry.parse("rowskip, torch,ROWSKIP,dense,torch") == ("rowskip", "torch", "dense")
    assert registry.parse(["compact", " dense"]) == ("compact", "dense")
    with pytest.raises(TauGateError, match="unknown backend 'torch'; choose from dense, rowskip$"):
        registry.parse("dense,torch", allowed=("dense", "rowskip"))
    usable = registry.names(needs_module=False)
    with pytest.raises(TauGateError, match="unknown backend 'torch-hard'"):
        registry.parse("torch,torch-hard", allowed=usable)


def test_names_rank_and_the_built_in_order():
    assert registry.names() == BUILT_IN
    assert [registry.get(n).order for n in BUILT_IN] == sorted(
        registry.get(n).order for n in BUILT_IN
    )
    assert registry.names(runtime=True) == ("dense", "compact", "rowskip")
    assert registry.names(runtime=False) == tuple(n for n in BUILT_IN if n not in
                                                  ("dense", "compact", "rowskip"))  # fmt: skip
    assert registry.names(needs_module=True) == ("torch-soft", "torch-hard")
    assert registry.names(runtime=True, needs_module=True) == ()
    assert sorted(["zz", "rowskip", "aa", "torch", "scipy-sparse"], key=registry.rank) == [
        "torch",
        "rowskip",
        "scipy-sparse",
        "aa",
        "zz",
    ]
    assert all(registry.rank("nope") > registry.rank(n) for n in BUILT_IN)
    from taugate import runtime

    assert runtime.BACKENDS == registry.names(runtime=True)
    defaults = [n for n in BUILT_IN if registry.get(n).default]
    assert defaults == ["torch", "torch-compile", "onnxruntime", "dense", "compact", "rowskip"]


def test_help_lines():
    text = registry.help_lines(("dense", "rowskip"))
    assert text == (f"dense: {registry.get('dense').help}; rowskip: {registry.get('rowskip').help}")
    with pytest.raises(TauGateError, match="unknown backend 'nope'"):
        registry.help_lines(("dense", "nope"))


def test_help_texts_may_contain_a_percent_sign(clean_registry, capsys):
    """A backend's help is "one line for --help and the README"; the README writes "20 % active".

    FAILS (source bug): argparse %-formats every help string, and ``help_lines`` does not escape
    ``%``, so one registered help text with a ``%`` crashes ``--help`` of bench, sweep (and
    predict, for a runtime backend) with ``TypeError: %o format: an integer is required``."""
    registry.register(Backend("toypct", float64_factory, 65, "exact to 100 % of float64"))
    assert "toypct: exact to 100 % of float64" in _help("bench", capsys)


# ------------------------------------------------------------ 3. predict takes runtime backends


@pytest.mark.parametrize("name", ["torch", "onnxruntime", "scipy-sparse", "torch-hard"])
def test_predict_refuses_a_non_runtime_backend(model, x, name):
    with pytest.raises(TauGateError) as e:
        model.predict(x, backend=name)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"backend {name!r} is not a runtime backend" in msg
    assert "predict takes dense, compact, rowskip, auto" in msg and "taugate bench" in msg


def test_predict_refuses_an_unknown_backend(model, x):
    with pytest.raises(TauGateError, match="unknown backend 'gpu'; choose from torch, "):
        model.predict(x, backend="gpu")
    with pytest.raises(TauGateError, match="backend must be a string, got int"):
        model.predict(x, backend=1)


# --------------------------------------------------------------------------- 4. missing packages


def test_a_missing_module_gives_the_pip_extra():
    b = Backend("toymiss", float64_factory, 99, "h", requires=("numpy", "no_such_module_xyz"),
                extra="onnx")  # fmt: skip
    why = b.unavailable()
    assert why == ("backend toymiss needs no_such_module_xyz, which is not installed: "
                   "pip install 'taugate[onnx]'")  # fmt: skip
    with pytest.raises(TauGateError) as e:
        b.require()
    assert str(e.value) == why
    plain = Backend("toymiss", float64_factory, 99, "h", requires=("no_such_module_xyz",))
    assert plain.unavailable().endswith("pip install no_such_module_xyz")


def test_check_says_why_a_backend_cannot_run():
    b = Backend("toycheck", float64_factory, 99, "h", check=lambda: "no accelerator here")
    assert b.unavailable() == "no accelerator here"
    with pytest.raises(TauGateError, match="^no accelerator here$"):
        b.require()
    ok = Backend("toycheck", float64_factory, 99, "h",
                 check="taugate.bench.torch_paths:compile_unavailable")  # fmt: skip
    assert ok.unavailable() == registry.get("torch-compile").unavailable()
    # requires is checked first: a missing module is reported even if the check would pass
    both = dataclasses.replace(b, requires=("no_such_module_xyz",))
    assert "no_such_module_xyz" in both.unavailable()


def test_predict_gives_the_one_line_error_for_a_missing_module(clean_registry, model, x):
    """``requires``: "modules it imports: missing ones give a one-line error".

    FAILS (source bug): ``CompiledModel.kernel`` calls ``b.load()`` without ``b.require()``, so a
    runtime backend whose package is missing raises ``ModuleNotFoundError`` from the import (and a
    runtime backend's ``check`` is never run), not the TauGateError with the pip hint that
    ``taugate bench`` gives for the same backend."""
    registry.register(Backend("toyext", "no_such_module_xyz:kernel", 75, "h", runtime=True,
                              requires=("no_such_module_xyz",), extra="fast"))  # fmt: skip
    with pytest.raises(TauGateError, match=r"pip install 'taugate\[fast\]'"):
        model.predict(x, backend="toyext")


@pytest.fixture
def no_onnxruntime(monkeypatch):
    """onnxruntime looks uninstalled (importlib.util.find_spec finds nothing)."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kw):
        return None if name.split(".")[0] == "onnxruntime" else real(name, *args, **kw)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_bench_defaults_skip_what_cannot_run_here_with_a_note(
    no_onnxruntime, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("PATH", str(tmp_path))  # and no C++ compiler: torch-compile cannot run
    monkeypatch.delenv("CXX", raising=False)
    out = tmp_path / "b.json"
    assert main(["bench", "--random", "16", "--active", "0.5", "--batch-sizes", "1", "--rounds",
                 "3", "--json", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    notes = [ln for ln in text.splitlines() if ln.startswith("note: not timed: ")]
    assert len(notes) == 2, text
    assert "backend torch-compile needs a C++ compiler" in notes[0]
    assert notes[1] == ("note: not timed: backend onnxruntime needs onnxruntime, which is not "
                        "installed: pip install 'taugate[onnx]'")  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert [r["backend"] for r in rows] == ["torch", "dense", "compact", "rowskip"]
    assert all(r["median_ms"] > 0 for r in rows)
    assert _pivot_header(text)[:5] == ["batch", "torch", "dense", "compact", "rowskip"]


def test_bench_asked_for_a_missing_backend_is_a_one_line_error(no_onnxruntime, tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "--random", "16", "--batch-sizes", "1", "--rounds", "3",
                 "--backends", "rowskip,onnxruntime", "--json", str(out)]) == 2  # fmt: skip
    cap = capsys.readouterr()
    assert cap.err == ("taugate: error: backend onnxruntime needs onnxruntime, which is not "
                       "installed: pip install 'taugate[onnx]'\n")  # fmt: skip
    assert cap.out == "" and not out.exists()  # refused before anything was timed or written


def test_sweep_config_refuses_a_missing_backend_and_leaves_it_out_by_default(no_onnxruntime):
    from taugate.sweep.config import SweepConfig

    with pytest.raises(TauGateError, match=r"pip install 'taugate\[onnx\]'"):
        SweepConfig.from_flat(dataset="digits", backends=("onnxruntime",))
    assert "onnxruntime" not in SweepConfig.from_flat(dataset="digits").backends


# --------------------------------------------------------------------------- 5. torch-compile


def test_compile_unavailable_without_a_cxx_compiler(monkeypatch, tmp_path):
    from taugate.bench.torch_paths import compile_unavailable

    if shutil.which("g++") or shutil.which("c++") or shutil.which("clang++"):
        assert compile_unavailable() is None
        monkeypatch.setenv("CXX", "no-such-cxx")  # falls back to c++ / clang++ on PATH
        assert compile_unavailable() is None
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    why = compile_unavailable()
    assert why is not None and "needs a C++ compiler" in why and "g++" in why
    assert registry.get("torch-compile").unavailable() == why
    with pytest.raises(TauGateError, match="C\\+\\+ compiler"):
        registry.get("torch-compile").require()


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


# ------------------------------------------------------------ 6. agreement is checked first


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
