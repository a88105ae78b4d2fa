"""Slow, obviously correct twins of the runtime: explicit loops over layers and units, float64.

``layers`` is the artifact layer list and ``tensors`` the artifact tensors (see taugate.artifact):
``z = W h + b``; gated -> ``relu(z) * 1[z > tau]``; ungated relu -> ``relu(z)``; last -> logits.
"""

from __future__ import annotations

import numpy as np


def _pre_activation(i: int, tensors: dict, h: np.ndarray, j: int) -> np.ndarray:
    """z of unit j of layer i for a batch h (B, in), float64."""
    w = tensors[f"layers.{i}.weight"][j].astype(np.float64)  # (in,)
    return h @ w + float(tensors[f"layers.{i}.bias"][j])  # (B,)


def _layer(entry: dict, i: int, tensors: dict, h: np.ndarray) -> np.ndarray:
    """One layer for a batch h (B, in): loop over the output units, float64 sums."""
    tau = tensors[f"layers.{i}.tau"].astype(np.float64) if entry["gated"] else None
    out = np.zeros((h.shape[0], entry["out"]))  # (B, out)
    for j in range(entry["out"]):
        z = _pre_activation(i, tensors, h, j)  # (B,)
        if entry["activation"] == "none":
            out[:, j] = z
            continue
        relu = np.maximum(z, 0.0)
        if tau is not None:
            relu = relu * (z > tau[j])
        out[:, j] = relu
    return out


def reference_hidden(layers: list[dict], tensors: dict, x) -> list[np.ndarray]:
    """Outputs of every layer, hidden ones first and the logits last (float64)."""
    h = np.asarray(x, dtype=np.float64)
    if h.ndim == 1:
        h = h[None, :]  # (1, n_in)
    outs = []
    for i, entry in enumerate(layers):
        h = _layer(entry, i, tensors, h)
        outs.append(h)
    return outs


def reference_forward(layers: list[dict], tensors: dict, x) -> np.ndarray:
    """Logits (B, n_out), float64."""
    return reference_hidden(layers, tensors, x)[-1]


def reference_active(layers: list[dict], tensors: dict, x) -> list[np.ndarray]:
    """Per hidden layer, the (B, out) bool mask of units with nonzero output."""
    return [h != 0 for h in reference_hidden(layers, tensors, x)[:-1]]


def reference_work_cap(layers: list[dict], tensors: dict, x, original_layers=None) -> float:
    """Dense MACs (original sizes) / mean over the batch of the MACs row skipping needs: a row of
    layer 0 per nonzero input feature, a row of layer i per active unit of layer i - 1."""
    orig = original_layers or layers
    dense = sum(e["in"] * e["out"] for e in orig)
    outs = reference_hidden(layers, tensors, x)
    masks = [h != 0 for h in outs[:-1]]
    nonzero = np.asarray([sum(1 for v in row if v != 0) for row in np.asarray(x)])  # (B,)
    per_sample = nonzero * layers[0]["out"]  # (B,)
    for i in range(1, len(layers)):
        per_sample = per_sample + masks[i - 1].sum(axis=1) * layers[i]["out"]
    return dense / float(np.mean(per_sample))


def separate_ties(layers: list[dict], tensors: dict, x, margin: float = 1e-3) -> dict:
    """Move each positive threshold away from its unit's pre-activations on ``x`` (in place, and
    returned), layer by layer, since later pre-activations depend on earlier gates.

    float32 sums differ from the float64 reference by ~1e-6, so a unit with z within that of a
    positive threshold could fire in one and not the other (a jump of size tau). Ties at 0 are
    harmless: relu is continuous there.
    """
    x = np.asarray(x, np.float64)
    for i, e in enumerate(layers[:-1]):
        if not e["gated"]:
            continue
        h = reference_hidden(layers[:i], tensors, x)[-1] if i else x  # (B, in_i)
        tau = tensors[f"layers.{i}.tau"].astype(np.float64)
        for j in range(e["out"]):
            z = _pre_activation(i, tensors, h, j)  # (B,)
            for _ in range(100):
                t = max(tau[j], 0.0)
                near = np.abs(z - t) < margin * (1.0 + t)
                if t == 0.0 or not near.any():
                    break
                tau[j] = z[near].max() + 2 * margin * (1.0 + t)
        tensors[f"layers.{i}.tau"] = tau.astype(np.float32)
    return tensors


def reference_compact(layers: list[dict], tensors: dict, kept: list[list[int]]):
    """The compacted layer list and tensors that keep hidden units ``kept[i]`` of layer ``i`` (and
    the matching input columns of layer ``i + 1``), by plain indexing."""
    small, out = {}, [dict(e) for e in layers]
    for i, e in enumerate(layers):
        rows = kept[i] if i < len(layers) - 1 else list(range(e["out"]))
        cols = kept[i - 1] if i > 0 else list(range(e["in"]))
        small[f"layers.{i}.weight"] = tensors[f"layers.{i}.weight"][np.ix_(rows, cols)]
        small[f"layers.{i}.bias"] = tensors[f"layers.{i}.bias"][rows]
        if e["gated"]:
            small[f"layers.{i}.tau"] = tensors[f"layers.{i}.tau"][rows]
        out[i]["in"], out[i]["out"] = len(cols), len(rows)
    return out, small


def reference_phi(name: str, z) -> np.ndarray:
    """The activation ``name`` (relu, gelu (exact, erf), gelu-tanh, silu) at z, float64."""
    import math

    z = np.asarray(z, np.float64)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "gelu":
        erf = np.vectorize(math.erf, otypes=[np.float64])
        return 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))
    if name == "gelu-tanh":
        return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))
    if name == "silu":
        return z * 0.5 * (1.0 + np.tanh(0.5 * z))  # = z * sigmoid(z), no overflow
    raise ValueError(f"unknown activation {name!r}")


def reference_ffn(x, wz, bz, wdt, bd, thr, act_name, wu=None, bu=None, gain=None, modes=None):
    """One FFN block per token, by explicit loops over tokens and units, float64: token n runs in
    mode m = modes[n] (default 0); unit j is open iff z_j = wz[j] . x + bz[j] > thr[m, j] (thr
    (F,) is one mode); then h_j = phi(z_j) (times wu[j] . x + bu[j] if wu is given, times
    gain[m, j] if gain is given) and y += h_j * wdt[j]. Returns (y (N, d_out), counts (N,) of
    open units)."""
    x = np.asarray(x, np.float64)
    x = x[None, :] if x.ndim == 1 else x  # (N, d_in)
    f64 = [None if a is None else np.asarray(a, np.float64) for a in (wz, bz, wdt, bd, wu, bu)]
    wz, bz, wdt, bd, wu, bu = f64
    thr = np.atleast_2d(np.asarray(thr, np.float64))  # (M, F)
    y = np.zeros((x.shape[0], wdt.shape[1]))  # (N, d_out)
    counts = np.zeros(x.shape[0], np.int64)
    for n in range(x.shape[0]):
        m = 0 if modes is None else int(modes[n])
        y[n] = bd
        for j in range(wz.shape[0]):
            z = float(wz[j] @ x[n]) + bz[j]
            if not z > float(thr[m, j]):
                continue
            counts[n] += 1
            h = float(reference_phi(act_name, z))
            if wu is not None:
                h *= float(wu[j] @ x[n]) + bu[j]
            if gain is not None:
                h *= float(np.atleast_2d(gain)[m, j])
            y[n] += h * wdt[j]
    return y, counts


def separate_ffn_ties(x, wz, bz, thr, margin: float = 1e-3) -> np.ndarray:
    """thr (float32) with each finite threshold moved above every z_j on x within ``margin``
    (relative) of it, so that float32 sums, ~1e-6 off the float64 ones, gate like the reference.
    thr (M, F), one row per mode: each row separately."""
    if np.ndim(thr) == 2:
        return np.stack([separate_ffn_ties(x, wz, bz, t, margin) for t in thr])  # (M, F)
    x = np.asarray(x, np.float64)
    z = np.atleast_2d(x) @ np.asarray(wz, np.float64).T + np.asarray(bz, np.float64)  # (N, F)
    out = np.asarray(thr, np.float64).copy()
    for j in range(out.shape[0]):
        for _ in range(100):
            t = out[j]
            near = np.abs(z[:, j] - t) < margin * (1.0 + abs(t)) if np.isfinite(t) else []
            if not np.any(near):
                break
            out[j] = z[near, j].max() + 2 * margin * (1.0 + abs(t))
    return out.astype(np.float32)


def reference_bank_hidden(layers: list[dict], tensors: dict, mode: str, x) -> list[np.ndarray]:
    """Outputs of every layer of a mode bank with every row in ``mode``, by loops over layers and
    units, float64: a gated layer ``i`` gives ``gamma_j * relu(z_j) * 1[z_j > tau_j]`` with the
    mode's ``modes.{mode}.{i}.tau`` / ``.gamma``; an ungated one ``relu(z)``; the last gives the
    logits."""
    h = np.asarray(x, dtype=np.float64)
    h = h[None, :] if h.ndim == 1 else h  # (B, n_in)
    outs = []
    for i, e in enumerate(layers):
        if e["gated"]:
            tau = tensors[f"modes.{mode}.{i}.tau"].astype(np.float64)
            gamma = tensors[f"modes.{mode}.{i}.gamma"].astype(np.float64)
        out = np.zeros((h.shape[0], e["out"]))  # (B, out)
        for j in range(e["out"]):
            z = _pre_activation(i, tensors, h, j)  # (B,)
            if e["activation"] == "none":
                out[:, j] = z
                continue
            v = np.maximum(z, 0.0)
            if e["gated"]:
                v = gamma[j] * v * (z > tau[j])
            out[:, j] = v
        h = out
        outs.append(h)
    return outs


def reference_bank_forward(layers: list[dict], tensors: dict, modes: list[str], x) -> np.ndarray:
    """Logits (B, n_out) float64 of a mode bank, row ``b`` in mode ``modes[b]``."""
    x = np.asarray(x, dtype=np.float64)
    x = x[None, :] if x.ndim == 1 else x  # (B, n_in)
    per_mode = {m: reference_bank_hidden(layers, tensors, m, x)[-1] for m in set(modes)}
    return np.stack([per_mode[m][b] for b, m in enumerate(modes)])  # (B, n_out)


def separate_bank_ties(layers: list[dict], tensors: dict, modes: list[str], x, margin=1e-3):
    """:func:`separate_ties` for every mode of a bank: each mode's positive thresholds moved away
    from its units' pre-activations on all of ``x`` in that mode (in place, and returned)."""
    x = np.asarray(x, np.float64)
    for m in modes:
        for i, e in enumerate(layers[:-1]):
            if not e["gated"]:
                continue
            h = reference_bank_hidden(layers[:i], tensors, m, x)[-1] if i else x  # (B, in_i)
            tau = tensors[f"modes.{m}.{i}.tau"].astype(np.float64)
            for j in range(e["out"]):
                z = _pre_activation(i, tensors, h, j)  # (B,)
                for _ in range(100):
                    t = max(tau[j], 0.0)
                    near = np.abs(z - t) < margin * (1.0 + t)
                    if t == 0.0 or not np.isfinite(t) or not near.any():
                        break
                    tau[j] = z[near].max() + 2 * margin * (1.0 + t)
            tensors[f"modes.{m}.{i}.tau"] = tau.astype(np.float32)
    return tensors


# -- predicted gates ----------------------------------------------------------------------------


def reference_computed(x, a, b, bias, thr, sigma, margin: float) -> np.ndarray:
    """(N, out) bool: the units a low-rank predictor marks for exact computation, by explicit
    loops, float64: unit j of input row n iff ``sum_k (sum_i x[n,i] a[i,k]) b[k,j] + bias[j] >
    thr[j] - margin * sigma[j]`` (margin +inf: every unit)."""
    x = np.atleast_2d(np.asarray(x, np.float64))
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    out = np.zeros((x.shape[0], b.shape[1]), bool)  # (N, out)
    for n in range(x.shape[0]):
        t = [sum(x[n, i] * a[i, k] for i in range(a.shape[0]) if x[n, i] != 0)
             for k in range(a.shape[1])]  # fmt: skip
        for j in range(b.shape[1]):
            if margin == np.inf:
                out[n, j] = True
                continue
            zh = sum(t[k] * b[k, j] for k in range(b.shape[0])) + float(bias[j])
            out[n, j] = zh > float(thr[j]) - margin * float(sigma[j])
    return out


def reference_predicted_hidden(layers: list[dict], tensors: dict, predictors: dict, margin: float,
                               x) -> tuple[list[np.ndarray], list[np.ndarray]]:  # fmt: skip
    """The MLP with predicted gates: for each hidden layer i in ``predictors`` ({i: (a, b,
    sigma)}), a unit outside :func:`reference_computed` of the layer's input is shut; the others
    gate exactly as in :func:`reference_hidden`. Returns (outputs of every layer as there, the
    (N, out_i) computed masks of the predicted layers, in layer order)."""
    h = np.atleast_2d(np.asarray(x, np.float64))
    outs, masks = [], []
    for i, entry in enumerate(layers):
        nxt = _layer(entry, i, tensors, h)
        if i in predictors:
            a, b, sigma = predictors[i]
            thr = np.maximum(tensors[f"layers.{i}.tau"].astype(np.float64), 0.0) if entry["gated"] \
                else np.zeros(entry["out"])  # fmt: skip
            c = reference_computed(h, a, b, tensors[f"layers.{i}.bias"], thr, sigma, margin)
            nxt = nxt * c
            masks.append(c)
        outs.append(nxt)
        h = nxt
    return outs, masks


def reference_predicted_ffn(x, wz, bz, wdt, bd, thr, act_name, a, b, sigma, margin: float,
                            wu=None, bu=None):  # fmt: skip
    """:func:`reference_ffn` (one mode, thr (F,)) with predicted gates: per token, a unit outside
    :func:`reference_computed` is shut. Returns (y (N, d_out), open counts (N,), computed (N, F))."""
    x = np.atleast_2d(np.asarray(x, np.float64))  # (N, d_in)
    c = reference_computed(x, a, b, bz, thr, sigma, margin)  # (N, F)
    ys, counts = [], []
    for n in range(x.shape[0]):
        t = np.where(c[n], np.asarray(thr, np.float64), np.inf)  # (F,) shut if not computed
        y, k = reference_ffn(x[n : n + 1], wz, bz, wdt, bd, t, act_name, wu=wu, bu=bu)
        ys.append(y[0])
        counts.append(k[0])
    return np.stack(ys), np.asarray(counts, np.int64), c
