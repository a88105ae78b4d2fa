"""The inference paths the benchmarks compare, each as a zero-argument callable on fixed inputs.

- ``torch``: eager PyTorch on the dense (uncompacted) matrices, ``relu(z) * (z > tau)`` masks: what a
  user would write first; the reference for every speedup;
- ``torch-soft`` / ``torch-hard``: the trained ``nn.Module`` itself with smooth / hard gates (sweeps);
- ``dense`` / ``compact`` / ``rowskip``: :mod:`taugate.runtime` backends;
- ``scipy-sparse``: layer 0 with BLAS, then the hard-gated activations as a ``scipy.sparse`` CSR matrix
  multiplied into each next (compacted) weight matrix.
"""

from __future__ import annotations

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


def layer_arrays(model, dense: bool) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Per layer (W (out, in), b (out,), tau (out,) or None) of a runtime ``CompiledModel``:
    uncompacted when ``dense`` (dropped units: zero weights, tau = +inf), else as compiled."""
    L = len(model.layers)
    t = model.tensors
    arrs = [
        (t[f"layers.{i}.weight"], t[f"layers.{i}.bias"], t.get(f"layers.{i}.tau")) for i in range(L)
    ]
    kept = model.manifest.get("kept_units")
    if not dense or kept is None:
        return arrs
    sizes = model.original_sizes
    out = []
    for i, (w, b, tau) in enumerate(arrs):
        rows = np.asarray(kept[i]) if i < L - 1 else np.arange(sizes[i + 1])
        cols = np.asarray(kept[i - 1]) if i > 0 else np.arange(sizes[0])
        wf = np.zeros((sizes[i + 1], sizes[i]), np.float32)
        wf[np.ix_(rows, cols)] = w  # (out_full, in_full) <- (out, in)
        bf = np.zeros(sizes[i + 1], np.float32)
        bf[rows] = b
        tf = None
        if i < L - 1:  # dropped hidden units never fire
            tf = np.full(sizes[i + 1], np.inf, np.float32)
            tf[rows] = tau if tau is not None else -np.inf
        out.append((wf, bf, tf))
    return out


def torch_dense(model, x: np.ndarray) -> Callable[[], object]:
    """Eager torch on the uncompacted matrices with masks (the same function as the artifact)."""
    import torch

    arrs = layer_arrays(model, dense=True)
    L = len(arrs)
    ws = [torch.from_numpy(np.ascontiguousarray(w)) for w, _, _ in arrs]
    bs = [torch.from_numpy(np.ascontiguousarray(b)) for _, b, _ in arrs]
    taus = [torch.from_numpy(t) if t is not None else None for _, _, t in arrs]
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))

    def run():
        with torch.inference_mode():
            h = xt
            for i in range(L):
                z = torch.nn.functional.linear(h, ws[i], bs[i])  # (B, out)
                if i < L - 1:
                    h = torch.relu(z) if taus[i] is None else torch.relu(z) * (z > taus[i])
                else:
                    h = z
            return h

    return run


def torch_module(module, x: np.ndarray, hard: bool) -> Callable[[], object]:
    """The trained torch module itself (soft or hard gates), eager, no autograd."""
    import torch

    from taugate.nn.model import harden_

    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    module.eval()

    def run():
        harden_(module, hard)
        with torch.inference_mode():
            return module(xt)

    return run


def scipy_sparse(model, x: np.ndarray) -> Callable[[], object]:
    """Layer 0 dense; each later layer ``csr_matrix(h) @ W.T + b`` on the compacted matrices."""
    from scipy import sparse

    arrs = layer_arrays(model, dense=False)
    L = len(arrs)
    w0, b0, t0 = arrs[0]
    w0t = np.ascontiguousarray(w0.T)  # (in, out)
    wts = [np.ascontiguousarray(w.T) for w, _, _ in arrs]  # (in, out) each
    thr = [np.maximum(t, 0) if t is not None else np.zeros_like(b) for _, b, t in arrs]
    xc = np.ascontiguousarray(x, np.float32)

    def run():
        z = xc @ w0t + b0  # (B, out_0)
        h = np.where(z > thr[0], z, np.float32(0)) if L > 1 else z
        for i in range(1, L):
            z = np.asarray(sparse.csr_matrix(h) @ wts[i]) + arrs[i][1]  # (B, out_i)
            h = np.where(z > thr[i], z, np.float32(0)) if i < L - 1 else z
        return h

    return run


def runtime_fn(
    model, x: np.ndarray, backend: str, threads: int | None = None
) -> Callable[[], object]:
    """``model.predict`` on fixed inputs; with ``threads`` > 1 a large batch-1 row-skip call may use
    the threaded kernel (see ``CompiledModel.predict``)."""
    xc = np.ascontiguousarray(x, np.float32)
    return lambda: model.predict(xc, backend=backend, threads=threads)


def make_fns(
    model, x: np.ndarray, backends, module=None, threads: int | None = None
) -> dict[str, Callable[[], object]]:
    """One callable per backend, all on the same inputs ``x`` (B, n_in)."""
    fns = {}
    for name in backends:
        if name == "torch":
            fns[name] = torch_dense(model, x)
        elif name in ("torch-soft", "torch-hard"):
            if module is None:
                raise TauGateError(f"backend {name} needs the trained torch module (sweeps only)")
            fns[name] = torch_module(module, x, hard=name == "torch-hard")
        elif name == "scipy-sparse":
            fns[name] = scipy_sparse(model, x)
        else:
            fns[name] = runtime_fn(model, x, name, threads)
    return fns


def to_numpy(out) -> np.ndarray:
    return out.detach().numpy() if hasattr(out, "detach") else np.asarray(out)
