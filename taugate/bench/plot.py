"""The figure of a ``taugate bench --json`` file: time per input against batch size, one line per
backend, one panel per (width, active share), and the batch sizes at which a candidate backend
beats both compact and onnxruntime (so where it stops paying, across panels and batches)."""

from __future__ import annotations

import os
from collections import defaultdict

from taugate.errors import TauGateError

REFERENCES = ("compact", "onnxruntime")  # what a user would otherwise run on a batch


def _panels(rows: list[dict]) -> dict:
    """{(width, active) or (model,): {backend: [(batch, µs per input)]}}, sorted by batch."""
    panels: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        key = (r["width"], r["target_active"]) if "width" in r else (r.get("model", "model"),)
        panels[key][r["backend"]].append((int(r["batch"]), 1e3 * r["median_ms"] / r["batch"]))
    return {k: {b: sorted(v) for b, v in d.items()} for k, d in sorted(panels.items(), key=str)}


def wins(series: dict, candidate: str, references=REFERENCES) -> list[int]:
    """The batch sizes at which ``candidate`` is faster than every reference present (empty when
    it never is); ``series`` is one panel of :func:`_panels`."""
    if candidate not in series:
        return []
    refs = [dict(series[r]) for r in references if r in series]
    return [b for b, t in series[candidate]
            if refs and all(t < ref.get(b, float("inf")) for ref in refs)]  # fmt: skip


def said(w: list[int]) -> str:
    return f"faster at batch {', '.join(map(str, w))}" if w else "never faster"


def plot_bench(rows: list[dict], out_stem: str | os.PathLike, *,
               candidate: str = "rowskip-batched") -> dict:  # fmt: skip
    """Draw ``rows`` (a bench JSON's ``rows``) to ``out_stem``.png / .pdf; returns
    {panel title: the batch sizes at which ``candidate`` beats compact and onnxruntime}."""
    from taugate.plotting import plt, save_figure

    if not rows:
        raise TauGateError("the bench file has no rows to plot")
    panels = _panels(rows)
    n = len(panels)
    cols = min(3, n)
    fig, axes = plt().subplots(-(-n // cols), cols, figsize=(4.2 * cols, 3.4 * -(-n // cols)),
                               squeeze=False)  # fmt: skip
    found = {}
    for ax, (key, series) in zip(axes.flat, panels.items(), strict=False):
        title = f"width {key[0]}, {100 * key[1]:.0f} % active" if len(key) == 2 else str(key[0])
        for backend, pts in series.items():
            style = "-o" if backend == candidate else "--."
            ax.plot([b for b, _ in pts], [t for _, t in pts], style, label=backend)
        found[title] = w = wins(series, candidate)
        ax.set_title(f"{title}: {said(w)}", fontsize=9)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel("µs per input")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{candidate} against {' and '.join(REFERENCES)}: time per input (one call / batch)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    save_figure(fig, out_stem)
    return found
