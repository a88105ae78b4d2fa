"""Gate statistics of one ``predict`` call: active shares, multiply-adds, the work cap."""

from __future__ import annotations

import numpy as np

from taugate.spec import ModelSpec


def gate_stats(spec: ModelSpec, backend: str, counts: np.ndarray) -> dict:
    """Statistics of a call whose kernel counted ``counts`` (B, L): ``counts[:, 0]`` nonzero input
    features per row, ``counts[:, i]`` units of hidden layer ``i - 1`` with nonzero output.

    ``active_share``: per hidden layer, mean over the batch of the share of the layer's ORIGINAL
    units with nonzero output (the same for every backend); ``active_counts``: per hidden layer,
    the count for each sample; ``dense_macs``: multiply-adds of the uncompacted network per sample;
    ``rowskip_macs``: mean over the batch of ``nnz(x) * out_0 + sum_i n_active_{i-1} * out_i``
    (compacted sizes; row skipping reads no row for a zero input feature or a shut unit);
    ``work_cap = dense_macs / rowskip_macs``.
    """
    active = counts[:, 1:]  # (B, L-1) active units per hidden layer
    widths = spec.original_sizes[1:-1]
    per_sample = counts @ np.asarray(spec.sizes[1:], np.int64)  # (B,) rows read x row length
    rowskip_macs = float(per_sample.mean())
    dense = spec.dense_macs
    return {
        "backend": backend,
        "batch": int(active.shape[0]),
        "active_share": [float(active[:, i].mean() / w) for i, w in enumerate(widths)],
        "active_counts": active.T.tolist(),
        "dense_macs": int(dense),
        "rowskip_macs": rowskip_macs,
        # an all-zero input to a one-layer model reads no row at all
        "work_cap": dense / rowskip_macs if rowskip_macs else float("inf"),
    }
