"""Zero-argument callables over fixed inputs, one per backend of :mod:`taugate.backends`.

Each backend sets its weights up once and then cycles through its list of inputs, call by call,
so every path reads one copy of the weights however many inputs a timing cycles through, and call
k of every backend computes input k (mod the number of inputs).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from taugate import backends as registry
from taugate.backends import BuildContext


def make_fn(name: str, model, xs: list[np.ndarray], ctx: BuildContext) -> Callable[[], object]:
    """The callable of backend ``name`` (checked to be available here) over ``xs``."""
    b = registry.get(name).require()
    if b.runtime:  # through predict(), as a user calls it; threads > 1 may pick a threaded path
        nxt = itertools.cycle([np.ascontiguousarray(x, np.float32) for x in xs]).__next__
        model.kernel(b.name)  # built now, not inside a timing
        return lambda: model.predict(nxt(), backend=b.name, threads=ctx.threads)
    return b.load()(model, xs, ctx)


def make_fns(model, xs, backends, module=None, threads: int | None = None) -> dict[str, Callable]:
    """One callable per backend over the same inputs: ``xs`` is one (B, n_in) array or a list of
    them, taken in turn."""
    xs = [xs] if isinstance(xs, np.ndarray) else list(xs)
    ctx = BuildContext(threads=threads, module=module)
    return {name: make_fn(name, model, xs, ctx) for name in backends}


def to_numpy(out) -> np.ndarray:
    return out.detach().numpy() if hasattr(out, "detach") else np.asarray(out)
