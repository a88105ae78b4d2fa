"""Slow, obviously correct twins of the runtime: explicit loops over layers and units, float64.

``layers`` is the artifact layer list and ``tensors`` the artifact tensors (see taugate.artifact):
``z = W h + b``; gated -> ``relu(z) * 1[z > tau]``; ungated relu -> ``relu(z)``; last -> logits.
"""

from __future__ import annotations

import numpy as np


def _layer(entry: dict, i: int, tensors: dict, h: np.ndarray) -> np.ndarray:
    """One layer for a batch h (B, in): loop over the output units, float64 sums."""
    w = tensors[f"layers.{i}.weight"].astype(np.float64)
    b = tensors[f"layers.{i}.bias"].astype(np.float64)
    tau = tensors[f"layers.{i}.tau"].astype(np.float64) if entry["gated"] else None
    out = np.zeros((h.shape[0], entry["out"]))  # (B, out)
    for j in range(entry["out"]):
        z = h @ w[j] + b[j]  # (B,) pre-activation of unit j
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
