"""The torch backends the benchmarks compare (factories named in :mod:`taugate.backends`).

- ``torch``: eager PyTorch on the dense (uncompacted) matrices with ``relu(z) * (z > tau)`` masks:
  what a user would write first, and the reference of every speedup;
- ``torch-compile``: the same function through ``torch.compile`` (inductor; on the CPU it generates
  and compiles C++, so it needs a C++ compiler). It is compiled for each input shape while the
  benchmark sets up, never inside a timing;
- ``torch-soft`` / ``torch-hard``: the trained ``nn.Module`` itself with smooth / hard gates.
"""

from __future__ import annotations

import itertools
import os
import shutil

import numpy as np


def _tensors(xs):
    import torch

    return [torch.from_numpy(np.ascontiguousarray(x, np.float32)) for x in xs]


def _dense_function(model):
    """``f(x)``: the artifact's function in torch, on the uncompacted matrices."""
    import torch

    spec = model.spec.uncompacted()  # a compacted model's dropped units: threshold +inf
    L = len(spec.layers)
    ws = [torch.from_numpy(np.array(w)) for w in spec.weights]  # (out, in), own writable copies
    bs = [torch.from_numpy(np.array(b)) for b in spec.biases]
    # relu(z) * (z > max(tau, 0)) is relu(z) * (z > tau); an ungated layer is a plain relu
    thr = [torch.from_numpy(np.array(t)) for t in spec.thresholds]
    taus = [t if e.gated else None for t, e in zip(thr, spec.layers)]

    def f(h):
        for i in range(L):
            z = torch.nn.functional.linear(h, ws[i], bs[i])  # (B, out)
            if i == L - 1:
                return z
            h = torch.relu(z) if taus[i] is None else torch.relu(z) * (z > taus[i])
        return h

    return f


def eager(model, xs, ctx):
    import torch

    f, nxt = _dense_function(model), itertools.cycle(_tensors(xs)).__next__

    def run():
        with torch.inference_mode():
            return f(nxt())

    return run


def compile_unavailable() -> str | None:
    """Why torch.compile (inductor) cannot run here: no C++ compiler, or a torch without it."""
    cxx = os.environ.get("CXX", "g++")
    if (
        shutil.which(cxx) is None
        and shutil.which("c++") is None
        and shutil.which("clang++") is None
    ):
        return (f"backend torch-compile needs a C++ compiler for inductor's CPU code, and none "
                f"({cxx}, c++, clang++) is on PATH")  # fmt: skip
    try:
        import torch

        torch.compile  # noqa: B018  (torch < 2.0 has none)
    except (ImportError, AttributeError):
        return "backend torch-compile needs torch >= 2.0 with torch.compile"
    return None


def compiled(model, xs, ctx):
    """``torch.compile(f)`` with static shapes, compiled here once per distinct input shape."""
    import torch

    from taugate.errors import TauGateError

    # dynamo keeps at most cache_size_limit compiled versions per code object (then silently runs
    # eager); every model and batch size is a new one, so start from an empty cache each time
    torch._dynamo.reset()
    f = torch.compile(_dense_function(model), backend="inductor", dynamic=False)
    xs_t = _tensors(xs)
    try:
        with torch.inference_mode():
            for x in {tuple(x.shape): x for x in xs_t}.values():
                f(x)  # compile now (seconds), never inside a timing
    except Exception as e:  # inductor's failures come as many types; report one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TauGateError(f"backend torch-compile failed to compile: {first}") from None
    nxt = itertools.cycle(xs_t).__next__

    def run():
        with torch.inference_mode():
            return f(nxt())

    return run


def _module(model, xs, ctx, hard: bool):
    import torch

    from taugate.errors import TauGateError
    from taugate.nn.model import harden_

    module = ctx.module
    if module is None:
        raise TauGateError(
            "backends torch-soft / torch-hard need the trained torch module (sweeps only)"
        )
    nxt = itertools.cycle(_tensors(xs)).__next__
    module.eval()

    def run():
        harden_(module, hard)
        with torch.inference_mode():
            return module(nxt())

    return run


def module_soft(model, xs, ctx):
    return _module(model, xs, ctx, hard=False)


def module_hard(model, xs, ctx):
    return _module(model, xs, ctx, hard=True)
