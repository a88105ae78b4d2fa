"""Predicted gates: a cheap guess, per gated layer, of which units will fire (numpy, torch-free).

A gated layer computes ``z = W x + b`` and opens unit ``j`` iff ``z_j > thr_j``. Knowing which
units open needs ``z``: the dense first pass that caps every skipping kernel. A predictor guesses
``z`` from the layer's input at a fraction of the cost; the kernel (``rowskip-predicted``) then
computes the exact ``z_j`` only for units whose guess clears ``thr_j - margin * sigma_j`` and gates
them exactly. A unit predicted shut is skipped even if it would have fired: that is the
approximation, measured as **recall** (the share of truly open units that were computed).

Kinds (``PredictorConfig.kind``):

- ``lowrank`` (the one the kernels run): ``z_hat = (x A) B + b`` with ``A = W^T V``, ``B = V^T``
  and ``V`` (out, r) the top ``r`` right singular vectors of ``X W^T`` over the calibration inputs
  ``X`` (reduced-rank regression: the best rank-r map for the inputs the layer actually sees).
  Cost ``r * (in + out)`` multiply-adds instead of ``in * out``.
- ``signbit`` (SparseInfer-style, measured for comparison): ``s_j = sum_i sign(x_i) sign(W_ji)``
  over the nonzero inputs, mapped to ``z_hat_j = a_j s_j + c_j`` by a per-unit least-squares fit.
  It needs only bit operations, but at the same recall it marks far more units active than
  low-rank does on the trained models here (see ``compare_kinds`` and the README), and the exact
  dot products of marked units are what costs, so the kernels run low-rank.

``sigma_j`` is the standard deviation of ``z_j - z_hat_j`` on the calibration inputs, so the
``margin`` is in units of each unit's own prediction error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taugate.errors import TauGateError

KINDS = ("lowrank", "signbit")


@dataclass
class PredictorConfig:
    """Which predictor ``taugate compile --predictor RANK`` fits to each gated layer."""

    rank: int = 16  # columns of the low-rank map; 1 <= rank <= min(in, out) of every gated layer
    kind: str = "lowrank"  # lowrank (run by the kernels) or signbit (measured for comparison)
    margin: float = 2.0  # default safety margin in prediction-error stds (a run may change it)
    # MLP layers that get one: "first", layer 0 alone (the dense first pass; a later layer's
    # input is already sparse, and row-skip reads only its open inputs' rows, which measured
    # cheaper than the predicted layer's dense dot products), or "all" hidden layers
    layers: str = "first"

    def __post_init__(self) -> None:
        if self.layers not in ("first", "all"):
            raise TauGateError(f"predictor layers must be 'first' or 'all', got {self.layers!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, (int, np.integer)):
            raise TauGateError(f"predictor rank must be an integer, got {self.rank!r}")
        if self.rank < 1:
            raise TauGateError(f"predictor rank must be >= 1, got {self.rank}")
        if self.kind not in KINDS:
            raise TauGateError(
                f"predictor kind must be one of {', '.join(KINDS)}, got {self.kind!r}"
            )
        check_margin(self.margin)


def check_margin(margin) -> float:
    """``margin`` as a float: a real number (negative shrinks the computed set), or +inf (every
    unit computed: exact)."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.floating, np.integer)):
        raise TauGateError(f"predictor margin must be a number, got {margin!r}")
    if np.isnan(margin) or margin == -np.inf:
        raise TauGateError(f"predictor margin must be a number or +inf, got {margin!r}")
    return float(margin)


@dataclass(frozen=True, eq=False)
class LowRank:
    """One layer's low-rank predictor: ``z_hat = (x @ a) @ b + bias``."""

    a: np.ndarray  # (in, r) float32: W^T V
    b: np.ndarray  # (r, out) float32: V^T
    sigma: np.ndarray  # (out,) float32 >= 0: std of z - z_hat on the calibration inputs

    @property
    def rank(self) -> int:
        return int(self.a.shape[1])

    def z_hat(self, x: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """The guessed pre-activations (N, out) of inputs x (N, in)."""
        return (x @ self.a) @ self.b + bias  # (N, r) @ (r, out) + (out,)

    def computed(self, x, bias, thr, margin: float) -> np.ndarray:
        """(N, out) bool: the units the kernel computes exactly for inputs x (N, in)."""
        if margin == np.inf:  # every unit (and no inf * 0 for a unit with sigma 0)
            return np.ones((len(x), self.b.shape[1]), bool)
        return self.z_hat(x, bias) > thr - np.float32(margin) * self.sigma  # (N, out)

    def macs(self) -> int:
        """Multiply-adds of one guess for a dense input."""
        return self.rank * (self.a.shape[0] + self.b.shape[1])

    def tensors(self, prefix: str) -> dict[str, np.ndarray]:
        """Artifact tensors ``{prefix}.a``, ``.b``, ``.sigma``."""
        return {f"{prefix}.a": self.a, f"{prefix}.b": self.b, f"{prefix}.sigma": self.sigma}


def check_rank(rank: int, n_in: int, n_out: int, where: str) -> None:
    """A one-line error unless ``1 <= rank <= min(n_in, n_out)`` (a higher rank costs more than the
    layer itself and predicts nothing more)."""
    top = min(n_in, n_out)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= top:
        raise TauGateError(
            f"{where}: predictor rank must be in 1..{top} for a layer of {n_in} inputs and "
            f"{n_out} units, got {rank!r}"
        )


def check_lowrank(p: LowRank, n_in: int, n_out: int, where: str) -> LowRank:
    """``p`` if its arrays fit a layer of ``n_in`` inputs and ``n_out`` units, else a one-line
    error naming the array and the expected shape."""
    if not isinstance(p, LowRank):
        raise TauGateError(f"{where}: expected a LowRank predictor, got {type(p).__name__}")
    r = p.a.shape[1] if isinstance(p.a, np.ndarray) and p.a.ndim == 2 else -1
    for name, arr, shape in (("a", p.a, (n_in, r)), ("b", p.b, (r, n_out)),
                             ("sigma", p.sigma, (n_out,))):  # fmt: skip
        if not (isinstance(arr, np.ndarray) and arr.dtype == np.float32 and arr.shape == shape):
            got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
            want = "(" + ", ".join("r" if s == -1 else str(s) for s in shape) + (",)" if len(shape) == 1 else ")")  # fmt: skip
            raise TauGateError(f"{where}: predictor {name} must be float32 {want}, got {got}")
        if not np.isfinite(arr).all():
            raise TauGateError(f"{where}: predictor {name} contains NaN or inf")
    check_rank(r, n_in, n_out, where)
    if (p.sigma < 0).any():
        raise TauGateError(f"{where}: predictor sigma must be >= 0")
    return p


def _fit_inputs(x, w, bias, where: str):
    x = np.asarray(x, np.float32)
    w = np.asarray(w, np.float32)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1] or len(x) == 0:
        raise TauGateError(
            f"{where}: calibration inputs must be (N >= 1, {w.shape[1]}), got {tuple(x.shape)}"
        )
    if np.shape(bias) != (w.shape[0],):
        raise TauGateError(f"{where}: bias must be ({w.shape[0]},), got {np.shape(bias)}")
    return x, w, np.asarray(bias, np.float32)


def fit_lowrank(x, w, bias, rank: int, *, where: str = "layer") -> LowRank:
    """Reduced-rank regression of ``z = x W^T + bias`` on calibration inputs x (N, in): the rank-r
    map with the least squared error on them (``V`` from the SVD of ``x W^T``), plus each unit's
    error std."""
    x, w, bias = _fit_inputs(x, w, bias, where)
    check_rank(rank, w.shape[1], w.shape[0], where)
    zc = (x @ w.T).astype(np.float64)  # (N, out)
    _, _, vt = np.linalg.svd(zc, full_matrices=False)  # vt (min(N, out), out)
    v = vt[:rank].T  # (out, r'); r' < rank only if N < rank
    if v.shape[1] < rank:
        v = np.pad(v, ((0, 0), (0, rank - v.shape[1])))  # (out, rank): zero columns predict 0
    a = (w.T.astype(np.float64) @ v).astype(np.float32)  # (in, r)
    b = np.ascontiguousarray(v.T, np.float32)  # (r, out)
    err = (zc + bias) - ((x @ a) @ b + bias)  # (N, out)
    return LowRank(np.ascontiguousarray(a), b, err.std(axis=0).astype(np.float32))


@dataclass(frozen=True, eq=False)
class SignBit:
    """One layer's sign-bit predictor (measured only): ``z_hat_j = scale_j s_j + offset_j``."""

    signs: np.ndarray  # (out, in) float32 in {-1, +1}: sign(W) (a bitmask in a kernel)
    scale: np.ndarray  # (out,) float32
    offset: np.ndarray  # (out,) float32
    sigma: np.ndarray  # (out,) float32

    def z_hat(self, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        s = np.sign(x) @ self.signs.T  # (N, out) sign agreements minus disagreements
        return self.scale * s + self.offset

    def computed(self, x, bias, thr, margin: float) -> np.ndarray:
        if margin == np.inf:
            return np.ones((len(x), self.signs.shape[0]), bool)
        return self.z_hat(x) > thr - np.float32(margin) * self.sigma  # (N, out)


def fit_signbit(x, w, bias, *, where: str = "layer") -> SignBit:
    """The sign-bit predictor fitted to calibration inputs x (N, in)."""
    x, w, bias = _fit_inputs(x, w, bias, where)
    signs = np.where(w >= 0, 1.0, -1.0).astype(np.float32)  # (out, in)
    s = (np.sign(x) @ signs.T).astype(np.float64)  # (N, out)
    z = (x @ w.T + bias).astype(np.float64)  # (N, out)
    sc, zc = s - s.mean(0), z - z.mean(0)
    scale = (sc * zc).mean(0) / np.maximum(sc.var(0), 1e-12)  # (out,)
    offset = z.mean(0) - scale * s.mean(0)
    sigma = (z - (scale * s + offset)).std(0)
    return SignBit(signs, scale.astype(np.float32), offset.astype(np.float32),
                   sigma.astype(np.float32))  # fmt: skip


def recall(computed: np.ndarray, active: np.ndarray) -> float:
    """Share of the truly active (sample, unit) pairs that were computed (1.0 if none is active)."""
    n = int(active.sum())
    return 1.0 if n == 0 else float((computed & active).sum() / n)


def compare_kinds(x_fit, x_test, w, bias, thr, *, rank: int, margins=(1.0, 2.0, 3.0),
                  where: str = "layer") -> list[dict]:  # fmt: skip
    """Both kinds fitted on ``x_fit`` and scored on ``x_test`` (N, in) at each margin: rows of
    kind, rank, margin, computed share (of the layer's units) and recall."""
    z = np.asarray(x_test, np.float32) @ np.asarray(w, np.float32).T + bias  # (N, out)
    active = z > thr
    rows = []
    for kind, p in (("lowrank", fit_lowrank(x_fit, w, bias, rank, where=where)),
                    ("signbit", fit_signbit(x_fit, w, bias, where=where))):  # fmt: skip
        for m in margins:
            c = p.computed(np.asarray(x_test, np.float32), bias, thr, m)
            rows.append({"kind": kind, "rank": rank if kind == "lowrank" else None,
                         "margin": float(m), "computed": float(c.mean()),
                         "active": float(active.mean()), "recall": recall(c, active)})  # fmt: skip
    return rows
