"""The backend registry's own rules (``taugate/backends.py``), and the checks that read it.

Checks that bad entries are refused and a name registers once unless replaced; that entries are
frozen; that ``get``, ``parse``, ``names``, ``rank`` and ``help_lines`` list, normalise and order
the built-in backends as documented; that predict refuses non-runtime and unknown backends; the
one-line errors (with the pip extra) for missing packages in predict, bench and ``SweepConfig``,
and bench leaving out, with a note, what cannot run here; and the torch-compile compiler check.
Adding a backend end to end is checked in tests/test_backends_seam.py.

Every test that registers a backend restores :data:`taugate.backends.REGISTRY` afterwards.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil

import pytest

from taugate import backends as registry
from taugate.backends import Backend
from taugate.cli import main
from taugate.errors import TauGateError

try:
    import backends_helpers as shared
    from backends_helpers import _help, _pivot_header, float64_factory, runtime_factory
except ImportError:  # tests/ imported as a package
    from tests import backends_helpers as shared
    from tests.backends_helpers import _help, _pivot_header, float64_factory, runtime_factory

# the shared fixtures, bound here under their own names so that pytest finds them in this module
clean_registry, model, x = shared.clean_registry, shared.model, shared.x

BUILT_IN = ("torch", "torch-compile", "torch-soft", "torch-hard", "onnxruntime", "dense",
            "compact", "rowskip", "rowskip-batched", "rowskip-predicted", "plain-numba",
            "scipy-sparse")  # fmt: skip


# ---------------------------------------------------------------------------- 1. registry rules


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
    runtime_names = ("dense", "compact", "rowskip", "rowskip-batched", "rowskip-predicted")
    assert registry.names(runtime=True) == runtime_names
    assert registry.names(approximate=True) == ("rowskip-predicted",)
    assert registry.names(runtime=False) == tuple(n for n in BUILT_IN if n not in runtime_names)
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

    assert runtime.BACKENDS == registry.names(runtime=True)[:-1]
    assert runtime.APPROXIMATE_BACKENDS == ("rowskip-predicted",)
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


# ------------------------------------------------------------ 2. predict takes runtime backends


@pytest.mark.parametrize("name", ["torch", "onnxruntime", "scipy-sparse", "torch-hard"])
def test_predict_refuses_a_non_runtime_backend(model, x, name):
    with pytest.raises(TauGateError) as e:
        model.predict(x, backend=name)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"backend {name!r} is not a runtime backend" in msg
    assert "predict takes dense, compact, rowskip, rowskip-batched, rowskip-predicted, auto" in msg
    assert "taugate bench" in msg


def test_predict_refuses_an_unknown_backend(model, x):
    with pytest.raises(TauGateError, match="unknown backend 'gpu'; choose from torch, "):
        model.predict(x, backend="gpu")
    with pytest.raises(TauGateError, match="backend must be a string, got int"):
        model.predict(x, backend=1)


# --------------------------------------------------------------------------- 3. missing packages


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


# --------------------------------------------------------------------------- 4. torch-compile


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
