"""The one backend registry: every inference path TauGate runs or times, one :class:`Backend` each.

``CompiledModel.predict`` (the ``runtime`` entries), ``taugate bench`` and ``taugate sweep`` (every
entry), the sort order of their tables and reports, and the ``--help`` of the commands all read
:data:`REGISTRY`. Adding a backend is one :func:`register` call; nothing else lists backend names.

A backend's ``factory`` is a callable, or ``"module:function"`` imported on first use (so this file
imports nothing heavy, and the torch-free runtime never imports torch):

- a ``runtime`` backend's factory takes a :class:`~taugate.runtime.CompiledModel` and returns
  ``kernel(x, check_finite, threads) -> (logits (B, n_out), counts (B, L))``, where ``x`` is a
  checked C-contiguous float32 (B, n_in) batch and ``counts`` as in ``ModelSpec.forward``;
- any other factory takes ``(model, xs, ctx)``: the compiled model, a list of (B, n_in) float32
  inputs and a :class:`BuildContext`, sets its weights up once and returns a zero-argument callable
  whose k-th call computes the logits of ``xs[k % len(xs)]`` (so every backend of a benchmark
  cycles through the same inputs in lockstep).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from taugate.errors import TauGateError

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class BuildContext:
    """What a non-runtime factory may need besides the model and the inputs."""

    threads: int | None = None  # threads for the backend's own pool (None: its default)
    module: object = None  # the trained torch module (sweeps), for needs_module backends


@dataclass(frozen=True)
class Backend:
    """One inference path (see the module docstring for what ``factory`` returns)."""

    name: str  # what --backends and predict(backend=...) take: lowercase, digits, dashes
    factory: str | Callable  # builds it: a callable or "module:function", imported on first use
    order: int  # position in tables, reports and --help, ascending
    help: str  # one line for --help and the README
    runtime: bool = False  # a CompiledModel.predict backend: torch-free, reports gate statistics
    needs_torch: bool = False  # imports torch
    needs_module: bool = False  # times the trained torch module (sweeps), not the artifact
    requires: tuple[str, ...] = ()  # modules it imports: missing ones give a one-line error
    extra: str | None = None  # the pip extra of taugate that installs ``requires``
    default: bool = False  # timed by `taugate bench` when --backends is not given
    approximate: bool = False  # may differ from the exact function (named so in every output)
    check: str | Callable | None = None  # () -> None, or why it cannot run on this machine

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise TauGateError(
                f"backend name must be lowercase letters, digits and '-', got {self.name!r}"
            )
        if isinstance(self.factory, str) and ":" not in self.factory:
            raise TauGateError(
                f"backend {self.name}: factory must be 'module:function', got {self.factory!r}"
            )
        if self.runtime and (self.needs_torch or self.needs_module):
            raise TauGateError(f"backend {self.name}: a runtime backend cannot need torch")
        if self.approximate and self.default:
            raise TauGateError(f"backend {self.name}: an approximate backend is never a default")
        object.__setattr__(self, "requires", tuple(self.requires))

    def unavailable(self) -> str | None:
        """Why this backend cannot run here (a missing package with how to get it, or what its
        ``check`` says), or None."""
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            how = (
                f"pip install 'taugate[{self.extra}]'"
                if self.extra
                else f"pip install {' '.join(missing)}"
            )
            return f"backend {self.name} needs {', '.join(missing)}, which is not installed: {how}"
        return None if self.check is None else _resolve(self.check)()

    def require(self) -> Backend:
        """``self``, or a :class:`TauGateError` saying why it cannot run here."""
        why = self.unavailable()
        if why:
            raise TauGateError(why)
        return self

    def load(self) -> Callable:
        """The factory (imported now if given as a string)."""
        return _resolve(self.factory)


def _resolve(ref: str | Callable) -> Callable:
    if callable(ref):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


REGISTRY: dict[str, Backend] = {}


def register(backend: Backend, *, replace: bool = False) -> Backend:
    """Add ``backend`` to :data:`REGISTRY` (``replace``: redefine an existing name)."""
    if not isinstance(backend, Backend):
        raise TauGateError(f"register() takes a Backend, got {type(backend).__name__}")
    if backend.name in REGISTRY and not replace:
        raise TauGateError(f"backend {backend.name!r} is registered already")
    REGISTRY[backend.name] = backend
    return backend


def get(name: str) -> Backend:
    """The registered backend ``name``, or an error listing every name."""
    b = REGISTRY.get(name.strip().lower()) if isinstance(name, str) else None
    if b is None:
        raise TauGateError(f"unknown backend {name!r}; choose from {', '.join(names())}")
    return b


def names(*, runtime: bool | None = None, needs_module: bool | None = None,
          approximate: bool | None = None) -> tuple[str, ...]:  # fmt: skip
    """Registered names in report order, optionally only (non-)runtime / (non-)module /
    (non-)approximate ones."""
    out = [b for b in REGISTRY.values()
           if (runtime is None or b.runtime == runtime)
           and (needs_module is None or b.needs_module == needs_module)
           and (approximate is None or b.approximate == approximate)]  # fmt: skip
    return tuple(b.name for b in sorted(out, key=lambda b: (b.order, b.name)))


def rank(name: str) -> tuple[int, str]:
    """Sort key of a backend name: registry order, unknown names last, alphabetically."""
    b = REGISTRY.get(name)
    return (b.order, name) if b is not None else (1 << 30, name)


def parse(
    text_or_names: str | Iterable[str], *, allowed: Iterable[str] | None = None
) -> tuple[str, ...]:
    """A comma list (or iterable) of backend names, checked against ``allowed`` (default: all),
    deduplicated in the given order."""
    items = text_or_names.split(",") if isinstance(text_or_names, str) else list(text_or_names)
    got = tuple(dict.fromkeys(str(n).strip().lower() for n in items))
    allowed = tuple(allowed) if allowed is not None else names()
    bad = [n for n in got if n not in allowed]
    if bad or not got or "" in got:
        what = bad[0] if bad else ""
        raise TauGateError(f"unknown backend {what!r}; choose from {', '.join(allowed)}")
    return got


def select(requested: Iterable[str] | None = None, *, needs_module: bool | None = None,
           defaults_only: bool = True) -> tuple[tuple[str, ...], list[str]]:  # fmt: skip
    """The backends to time, and a note for each one left out.

    ``requested`` names (a comma list or iterable): each must exist, fit ``needs_module`` and be
    able to run here, else an error. None: every registered exact backend that fits (only the
    ``default`` ones with ``defaults_only``) and can run here; the others get a ``not timed: why``
    note (an ``approximate`` one is timed only when named)."""
    usable = names(needs_module=needs_module)
    if requested is not None:
        chosen = parse(requested, allowed=usable)
        for n in chosen:
            get(n).require()
        return chosen, []
    chosen, notes = [], []
    for n in usable:
        b = get(n)
        if b.approximate:  # only ever timed when named
            continue
        if b.default or not defaults_only:
            why = b.unavailable()
            chosen.append(n) if why is None else notes.append(f"not timed: {why}")
    return tuple(chosen), notes


def help_lines(selection: Iterable[str]) -> str:
    """``name: help`` for each of ``selection``, for argparse help texts."""
    # argparse %-formats help strings: a literal % in a backend's help must reach it as %%
    return "; ".join(f"{n}: {get(n).help}" for n in selection).replace("%", "%%")


# ------------------------------------------------------------------------- the built-in backends

for _b in (
    Backend("torch", "taugate.bench.torch_paths:eager", 10,
            "eager PyTorch, dense (uncompacted) matrices with relu(z) * (z > tau) masks; the "
            "reference of every speedup", needs_torch=True, requires=("torch",), default=True),
    Backend("torch-compile", "taugate.bench.torch_paths:compiled", 20,
            "the torch function through torch.compile (inductor, C++ on the CPU; compiled once "
            "per batch size, not timed); needs a C++ compiler", needs_torch=True,
            requires=("torch",), default=True, check="taugate.bench.torch_paths:compile_unavailable"),
    Backend("torch-soft", "taugate.bench.torch_paths:module_soft", 30,
            "the trained nn.Module with smooth gates (sweeps only)", needs_torch=True,
            needs_module=True, requires=("torch",)),
    Backend("torch-hard", "taugate.bench.torch_paths:module_hard", 40,
            "the trained nn.Module with hard gates (sweeps only)", needs_torch=True,
            needs_module=True, requires=("torch",)),
    Backend("onnxruntime", "taugate.bench.ort_path:session", 50,
            "the exported ONNX graph (taugate export) in onnxruntime's CPU provider, intra- and "
            "inter-op threads set to --threads", requires=("onnx", "onnxruntime"), extra="onnx",
            default=True),
    Backend("dense", "taugate.runtime.paths:dense", 60,
            "numpy BLAS on the uncompacted matrices, gates as masks", runtime=True, default=True),
    Backend("compact", "taugate.runtime.paths:compact", 70,
            "numpy BLAS on the compacted matrices", runtime=True, default=True),
    Backend("rowskip", "taugate.runtime.paths:rowskip", 80,
            "Numba kernels that read only the weight rows of nonzero inputs and open gates",
            runtime=True, default=True),
    Backend("rowskip-batched", "taugate.runtime.paths:rowskip_batched", 85,
            "row-skip layer by layer over the whole batch in column blocks that stay in cache: "
            "each weight row read from memory once per batch, not once per sample",
            runtime=True),
    Backend("rowskip-predicted", "taugate.runtime.paths:rowskip_predicted", 86,
            "APPROXIMATE: a low-rank predictor per hidden layer (taugate compile --predictor RANK) "
            "picks the units whose z is computed, exactly, and gated; a unit predicted shut is "
            "skipped even if it would fire", runtime=True, approximate=True),
    Backend("plain-numba", "taugate.bench.plain_path:plain", 88,
            "the straightforward Numba kernel: layer 0 by numpy BLAS, then the open units' "
            "transposed rows added one at a time, sample by sample (a peer for rowskip)"),
    Backend("scipy-sparse", "taugate.bench.scipy_path:csr", 90,
            "layer 0 with BLAS, then the gated activations as a scipy.sparse CSR matrix times "
            "each next layer", requires=("scipy",)),
):  # fmt: skip
    register(_b)
