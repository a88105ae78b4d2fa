"""The inference paths the benchmarks compare, each as a zero-argument callable over fixed inputs.

Each backend sets its weights up once and then cycles through its list of inputs, call by call, so
every path reads one copy of the weights however many inputs a timing cycles through.

- ``torch``: eager PyTorch on the dense (uncompacted) matrices, ``relu(z) * (z > tau)`` masks: what a
  user would write first; the reference for every speedup;
- ``torch-soft`` / ``torch-hard``: the trained ``nn.Module`` itself with smooth / hard gates (sweeps);
- ``dense`` / ``compact`` / ``rowskip``: :mod:`taugate.runtime` backends;
- ``scipy-sparse``: layer 0 with BLAS, then the hard-gated activations as a ``scipy.sparse`` CSR matrix
  multiplied into each next (compacted) weight matrix.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from taugate.errors import TauGateError

RUNTIME_BACKENDS = ("dense", "compact", "rowskip")
MODEL_BACKENDS = ("torch", "dense", "compact", "rowskip", "scipy-sparse")
ALL_BACKENDS = ("torch", "torch-soft", "torch-hard", "dense", "compact", "rowskip", "scipy-sparse")


def parse_backends(names, allowed=ALL_BACKENDS) -> tuple[str, ...]:
    names = tuple(n.strip().lower() for n in names)
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise TauGateError(
            f"unknown backend {bad[0] if bad else ''!r}; choose from {', '.join(allowed)}"
        )
    return tuple(dict.fromkeys(names))


def _cycle(items: list) -> Callable[[], object]:
    """Each call returns the next item, round and round."""
    it = itertools.cycle(items)
    return lambda: next(it)


def torch_dense(model, xs: list[np.ndarray]) -> Callable[[], object]:
    """Eager torch on the uncompacted matrices with masks (the same function as the artifact)."""
    import torch

    mats, biases, thrs = model.arrays(dense=True)
    L = len(mats)
    ws = [torch.from_numpy(np.ascontiguousarray(m.T)) for m in mats]  # (out, in)
    bs = [torch.from_numpy(b) for b in biases]
    # gated layers: relu(z) * (z > max(tau, 0)) is relu(z) * (z > tau); dropped units: thr = +inf
    gated = [e["gated"] or "kept_units" in model.manifest for e in model.layers[:-1]]
    taus = [torch.from_numpy(t) if g else None for t, g in zip(thrs, gated)]
    nxt = _cycle([torch.from_numpy(np.ascontiguousarray(x, np.float32)) for x in xs])

    def run():
        with torch.inference_mode():
            h = nxt()
            for i in range(L):
                z = torch.nn.functional.linear(h, ws[i], bs[i])  # (B, out)
                if i < L - 1:
                    h = torch.relu(z) if taus[i] is None else torch.relu(z) * (z > taus[i])
                else:
                    h = z
            return h

    return run


def torch_module(module, xs: list[np.ndarray], hard: bool) -> Callable[[], object]:
    """The trained torch module itself (soft or hard gates), eager, no autograd."""
    import torch

    from taugate.nn.model import harden_

    nxt = _cycle([torch.from_numpy(np.ascontiguousarray(x, np.float32)) for x in xs])
    module.eval()

    def run():
        harden_(module, hard)
        with torch.inference_mode():
            return module(nxt())

    return run


def scipy_sparse(model, xs: list[np.ndarray]) -> Callable[[], object]:
    """Layer 0 dense; each later layer ``csr_matrix(h) @ W.T + b`` on the compacted matrices."""
    from scipy import sparse

    mats, biases, thr = model.arrays(dense=False)  # (in, out), (out,), max(tau, 0) per hidden layer
    wts = [np.ascontiguousarray(m) for m in mats]  # C order for the CSR @ dense products
    L = len(wts)
    nxt = _cycle([np.ascontiguousarray(x, np.float32) for x in xs])

    def run():
        z = nxt() @ wts[0] + biases[0]  # (B, out_0)
        h = np.where(z > thr[0], z, np.float32(0)) if L > 1 else z
        for i in range(1, L):
            z = np.asarray(sparse.csr_matrix(h) @ wts[i]) + biases[i]  # (B, out_i)
            h = np.where(z > thr[i], z, np.float32(0)) if i < L - 1 else z
        return h

    return run


def runtime_fn(
    model, xs: list[np.ndarray], backend: str, threads: int | None = None
) -> Callable[[], object]:
    """``model.predict`` over the inputs; with ``threads`` > 1 a large batch-1 row-skip call may use
    the threaded kernel (see ``CompiledModel.predict``)."""
    nxt = _cycle([np.ascontiguousarray(x, np.float32) for x in xs])
    return lambda: model.predict(nxt(), backend=backend, threads=threads)


def make_fns(
    model, xs, backends, module=None, threads: int | None = None
) -> dict[str, Callable[[], object]]:
    """One callable per backend over the same inputs: ``xs`` is one (B, n_in) array or a list of
    them, taken in turn, so call k of every backend computes input k (mod len(xs))."""
    xs = [xs] if isinstance(xs, np.ndarray) else list(xs)
    fns = {}
    for name in backends:
        if name == "torch":
            fns[name] = torch_dense(model, xs)
        elif name in ("torch-soft", "torch-hard"):
            if module is None:
                raise TauGateError(f"backend {name} needs the trained torch module (sweeps only)")
            fns[name] = torch_module(module, xs, hard=name == "torch-hard")
        elif name == "scipy-sparse":
            fns[name] = scipy_sparse(model, xs)
        else:
            fns[name] = runtime_fn(model, xs, name, threads)
    return fns


def to_numpy(out) -> np.ndarray:
    return out.detach().numpy() if hasattr(out, "detach") else np.asarray(out)
