"""The approximate ``rowskip-predicted`` backend in ``taugate bench`` and ``taugate sweep``: one
variant per margin, timed beside the exact backends, and what each costs in quality.

Quality is measured on the benchmark's inputs against the exact hard-gated function (numpy, the
same float32 arithmetic): **recall**, the share of the truly open (input, unit) pairs of the
predicted layers that were computed; the share of units computed; top-1 agreement of the logits;
and, with labels, the accuracy change in points.
"""

from __future__ import annotations

import numpy as np

from taugate.errors import TauGateError
from taugate.predictor import recall
from taugate.tables import Table

NAME = "rowskip-predicted"


def label(margin: float) -> str:
    """The backend label of one margin, as rows and tables show it."""
    return f"{NAME} (approximate, m={margin:g})"


def is_variant(backend: str) -> bool:
    """Is ``backend`` the label of a predicted variant (a row of the approximate backend)?"""
    return str(backend).startswith(NAME)


def variants(model, margins) -> dict:
    """``{label: CompiledModel}``: ``model`` with its predictor at each margin (the stored one
    when ``margins`` is None); a model without a predictor is a one-line error."""
    from taugate.runtime import CompiledModel

    if model.predictor is None:
        raise TauGateError(f"{NAME} needs a predictor: compile with --predictor RANK, or pass "
                           "--predictor RANK to fit one here")  # fmt: skip
    margins = (model.predictor.margin,) if margins is None else tuple(margins)
    out = {}
    for m in margins:
        out[label(m)] = CompiledModel(model.spec, model.extra,
                                      predictor=model.predictor.with_margin(m))  # fmt: skip
    return out


def quality(model, x: np.ndarray, labels=None) -> dict:
    """Recall, computed share, top-1 agreement and accuracy change of ``model``'s predictor at its
    margin on inputs x (N, n_in), against the exact hard gates; recall and computed share also
    per hidden layer (``recall_layers``, ``computed_layers``: None where a layer has none)."""
    spec, pred = model.spec, model.predictor
    x = np.ascontiguousarray(x, np.float32)
    truth = [h != 0 for h in spec.hidden_outputs(x)]  # (N, out_i) per hidden layer
    masks = pred.computed(spec, x)
    pairs = [(c, t) for c, t in zip(masks, truth, strict=True) if c is not None]
    computed = np.concatenate([c.reshape(-1) for c, _ in pairs])
    active = np.concatenate([t.reshape(-1) for _, t in pairs])
    exact = model.predict(x, backend="rowskip")
    approx = model.predict(x, backend=NAME)
    out = {"margin": pred.margin, "rank": pred.rank, "recall": recall(computed, active),
           "computed_share": float(computed.mean()), "active_share_exact": float(active.mean()),
           "recall_layers": [None if c is None else recall(c, t)
                             for c, t in zip(masks, truth, strict=True)],
           "computed_layers": [None if c is None else float(c.mean()) for c in masks],
           "agreement": float((exact.argmax(1) == approx.argmax(1)).mean())}  # fmt: skip
    if labels is not None:
        y = np.asarray(labels)[: len(x)]
        out["accuracy_exact"] = float((exact.argmax(1) == y).mean())
        out["accuracy_predicted"] = float((approx.argmax(1) == y).mean())
        out["accuracy_change_points"] = 100 * (out["accuracy_predicted"] - out["accuracy_exact"])
    return out


def predicted_table(rows: list[dict], title: str = "") -> Table:
    """One line per predicted row: margin, batch, latency, speedup over exact row-skip, recall,
    units computed, top-1 agreement and the accuracy change (where labels were given)."""
    by = {(r.get("width"), r.get("target_active"), r["batch"], r["backend"]): r for r in rows}
    header = ["backend (approximate)", "batch", "median µs", "vs rowskip", "recall", "computed",
              "top-1 agreement", "accuracy change"]  # fmt: skip
    body = []
    for r in rows:
        if not is_variant(r["backend"]):
            continue
        ex = by.get((r.get("width"), r.get("target_active"), r["batch"], "rowskip"))
        q = r["quality"]
        acc = q.get("accuracy_change_points")
        body.append([r["backend"], str(r["batch"]), f"{1e3 * r['median_ms']:.1f}",
                     f"{ex['median_ms'] / r['median_ms']:.2f}x" if ex else "-",
                     f"{100 * q['recall']:.2f} %", f"{100 * q['computed_share']:.1f} %",
                     f"{100 * q['agreement']:.2f} %",
                     "-" if acc is None else f"{acc:+.2f} points"])  # fmt: skip
    return Table(title, header, body)
