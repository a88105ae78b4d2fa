"""Sweep figures: accuracy/sparsity Pareto front, row-skip speedup vs active share with its work cap,
and latency per sample vs batch size. Each ``*_figure`` builds a matplotlib figure (tests inspect
it); each ``plot_*`` builds and writes ``<stem>.png`` + ``<stem>.pdf`` atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

from taugate import backends as registry
from taugate.bench.predicted import is_variant
from taugate.errors import TauGateError
from taugate.plotting import plt as _plt
from taugate.plotting import save_figure
from taugate.stats import mean_std, num
from taugate.sweep.stats import CELL_FIELDS, TIMING_FIELDS, aggregate, cell_rows, normalise

CAP_LABEL = "work cap (dense MACs / row-skip MACs)"


def _z(v: float) -> float:
    """Error-bar half width: NaN (one seed) draws no bar."""
    return v if math.isfinite(v) else 0.0


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no data: {what}", ha="center", va="center", transform=ax.transAxes)


def _angle_label(items: list[dict]) -> str:
    angles = sorted({a for a in (num(r.get("angle")) for r in items) if math.isfinite(a)})
    return "/".join(f"{a:g}°" for a in angles) or "the rotated angle"


def pareto_figure(rows: Iterable[dict], paper_lambda: float | None = None):
    """Hard-gated accuracy at the angle vs hard sparsity (1 - active share), one series per width,
    points labelled with lambda; the ``paper_lambda`` points get a star and their own legend entry."""
    plt = _plt()
    items = normalise(rows)
    stats = aggregate(cell_rows(items), ("width", "lambda"), CELL_FIELDS)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    paper: list[tuple[float, float]] = []
    for w in sorted({s["width"] for s in stats}):
        pts = [s for s in stats if s["width"] == w and math.isfinite(s["acc_angle_hard_mean"])
               and math.isfinite(s["active_mean_mean"])]  # fmt: skip
        pts.sort(key=lambda s: -s["active_mean_mean"])
        if not pts:
            continue
        x = [100 * (1 - s["active_mean_mean"]) for s in pts]  # sparsity %
        y = [100 * s["acc_angle_hard_mean"] for s in pts]
        ax.errorbar(x, y, xerr=[100 * _z(s["active_mean_std"]) for s in pts],
                    yerr=[100 * _z(s["acc_angle_hard_std"]) for s in pts],
                    marker="o", capsize=3, label=f"width {w}")  # fmt: skip
        for s, xi, yi in zip(pts, x, y):
            ax.annotate(f"λ={s['lambda']:g}", (xi, yi), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)  # fmt: skip
            if paper_lambda is not None and math.isclose(s["lambda"], paper_lambda, rel_tol=1e-9,
                                                         abs_tol=1e-15):  # fmt: skip
                paper.append((xi, yi))
    if paper:
        ax.plot([p[0] for p in paper], [p[1] for p in paper], linestyle="none", marker="*",
                markersize=18, color="gold", markeredgecolor="black", zorder=5,
                label=f"reproduce default λ={paper_lambda:g}")  # fmt: skip
    if not stats:
        _no_data(ax, "no sweep cells")
    ax.set_xlabel("hard sparsity: hidden units off (%)")
    ax.set_ylabel(f"accuracy at {_angle_label(items)}, hard gates (%)")
    ax.set_title("TauGate accuracy vs sparsity (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_pareto(
    rows: Iterable[dict], out_stem: Path, paper_lambda: float | None = None
) -> list[Path]:
    """Write the accuracy / sparsity figure to ``out_stem.{png,pdf}``."""
    return save_figure(pareto_figure(rows, paper_lambda), out_stem)


def speedup_figure(rows: Iterable[dict], batch: int = 1):
    """Rowskip speedup vs dense against active share at ``batch``, one series per width, with the
    measured work cap of each cell joined by a dashed line."""
    plt = _plt()
    from matplotlib.lines import Line2D

    items = [r for r in normalise(rows) if r["backend"] == "rowskip" and r["batch"] == batch]
    stats = aggregate(items, ("width", "lambda"), (*CELL_FIELDS, *TIMING_FIELDS))
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ys: list[float] = []
    for k, w in enumerate(sorted({s["width"] for s in stats})):
        color = f"C{k % 10}"
        pts = sorted((s for s in stats if s["width"] == w and math.isfinite(s["active_mean_mean"])),
                     key=lambda s: s["active_mean_mean"])  # fmt: skip
        sp = [s for s in pts if math.isfinite(s["speedup_vs_dense_mean"])]
        if sp:
            ax.errorbar([100 * s["active_mean_mean"] for s in sp],
                        [s["speedup_vs_dense_mean"] for s in sp],
                        yerr=[_z(s["speedup_vs_dense_std"]) for s in sp], marker="o", capsize=3,
                        color=color, label=f"rowskip, width {w}")  # fmt: skip
            ys += [s["speedup_vs_dense_mean"] for s in sp]
        cap = [s for s in pts if math.isfinite(s["work_cap_mean"])]
        if cap:
            ax.plot([100 * s["active_mean_mean"] for s in cap], [s["work_cap_mean"] for s in cap],
                    linestyle="--", marker="x", color=color, alpha=0.8)  # fmt: skip
            ys += [s["work_cap_mean"] for s in cap]
    ax.axhline(1.0, color="gray", linestyle=":", linewidth=1)
    handles, labels = ax.get_legend_handles_labels()
    if any(math.isfinite(s["work_cap_mean"]) for s in stats):
        handles.append(Line2D([], [], linestyle="--", marker="x", color="black"))
        labels.append(CAP_LABEL)
    pos = [y for y in ys if y > 0]
    if pos and max(pos) / min(pos) > 20:
        ax.set_yscale("log")
    if not ys:
        _no_data(ax, f"no rowskip timings at batch {batch}")
    ax.set_xlabel("hard active share of hidden units (%)")
    ax.set_ylabel("speedup vs dense (x)")
    ax.set_title(f"Row skipping vs dense at batch {batch} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_speedup_vs_active(rows: Iterable[dict], out_stem: Path, batch: int = 1) -> list[Path]:
    """Write the row-skip speedup / work cap figure to ``out_stem.{png,pdf}``."""
    return save_figure(speedup_figure(rows, batch), out_stem)


def latency_figure(rows: Iterable[dict], lam: float | None = None, width: int | None = None):
    """Median latency per sample (ms, log-log) vs batch, one line per backend, for one cell
    (default: the largest width, then the largest lambda at that width)."""
    plt = _plt()
    from matplotlib.ticker import NullLocator

    items = normalise(rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    widths = sorted({r["width"] for r in items})
    if width is None and widths:
        width = widths[-1]
    if items and width not in widths:
        plt.close(fig)
        raise TauGateError(f"no sweep rows for width {width} (have {', '.join(map(str, widths))})")
    lams = sorted({r["lambda"] for r in items if r["width"] == width})
    if lam is None and lams:
        lam = lams[-1]
    match = [x for x in lams if math.isclose(x, lam, rel_tol=1e-9, abs_tol=1e-15)] if lams else []
    if items and not match:
        plt.close(fig)
        raise TauGateError(f"no sweep rows for lambda {lam:g} at width {width} "
                           f"(have {', '.join(f'{x:g}' for x in lams)})")  # fmt: skip
    cell = [r for r in items if r["width"] == width and match and r["lambda"] == match[0]]
    per: dict[str, dict[int, float]] = {}
    for be in sorted({r["backend"] for r in cell}, key=registry.rank):
        pts = {}
        for b in sorted({r["batch"] for r in cell if r["backend"] == be}):
            vals = [
                num(r.get("median_ms")) / b for r in cell if r["backend"] == be and r["batch"] == b
            ]
            m, s = mean_std(v for v in vals if v > 0)
            if math.isfinite(m):
                pts[b] = (m, _z(s))
        if pts:
            bs = sorted(pts)
            ax.errorbar(bs, [pts[b][0] for b in bs], yerr=[pts[b][1] for b in bs], marker="o",
                        capsize=2, label=be, linestyle="--" if be == "rowskip" else "-")  # fmt: skip
            per[be] = {b: pts[b][0] for b in bs}
    rs, cp = per.get("rowskip", {}), per.get("compact", {})
    worse = [b for b in sorted(set(rs) & set(cp)) if rs[b] >= cp[b]]
    if worse:
        ax.axvline(worse[0], color="gray", linestyle=":",
                   label=f"rowskip first ≥ compact at batch {worse[0]}")  # fmt: skip
    if per:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted({b for pts in per.values() for b in pts})
        ax.set_xticks(ticks, [str(b) for b in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.legend(fontsize=8, loc="best")
    else:
        _no_data(ax, "no latency measurements")
    ax.set_xlabel("batch size")
    ax.set_ylabel("median latency per sample (ms)")
    where = f"width {width}, λ={lam:g}" if match else "no cell"
    ax.set_title(f"Latency per sample vs batch ({where})")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def plot_latency_vs_batch(rows: Iterable[dict], out_stem: Path, lam: float | None = None,
                          width: int | None = None) -> list[Path]:  # fmt: skip
    """Write the latency-per-sample figure to ``out_stem.{png,pdf}``."""
    return save_figure(latency_figure(rows, lam, width), out_stem)


def predicted_figure(rows: Iterable[dict], batch: int = 1):
    """The predicted gates' Pareto front: accuracy change (points, vs exact hard gates) against
    the speedup over exact row-skip at ``batch``, one series per (width, λ), points labelled with
    the margin (mean over seeds)."""
    plt = _plt()
    items = [r for r in normalise(rows)
             if is_variant(r["backend"]) and r["batch"] == batch]  # fmt: skip
    stats = aggregate(items, ("width", "lambda", "pred_margin"),
                      ("pred_acc_change", "speedup_vs_rowskip", "pred_recall"))  # fmt: skip
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for w, lam in sorted({(s["width"], s["lambda"]) for s in stats}):
        pts = sorted((s for s in stats if s["width"] == w and s["lambda"] == lam),
                     key=lambda s: s["pred_margin"])  # fmt: skip
        x = [s["speedup_vs_rowskip_mean"] for s in pts]
        y = [s["pred_acc_change_mean"] for s in pts]
        ax.plot(x, y, marker="o", label=f"width {w}, λ={lam:g}")
        for s, xi, yi in zip(pts, x, y):
            ax.annotate(f"m={s['pred_margin']:g}", (xi, yi), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)  # fmt: skip
    if not stats:
        _no_data(ax, f"no rowskip-predicted timings at batch {batch}")
    ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel(f"speedup over exact rowskip, batch {batch}")
    ax.set_ylabel("accuracy change vs exact hard gates (points)")
    ax.set_title("Predicted gates (approximate), over λ and margin")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def write_figures(out_dir: str | os.PathLike, rows: Iterable[dict],
                  paper_lambda: float | None = None) -> list[Path]:  # fmt: skip
    """Write pareto, speedup_vs_active (batch 1 if measured, else the smallest batch) and
    latency_vs_batch as PNG + PDF into ``out_dir/figures``; returns the paths."""
    rows = list(rows)
    fig_dir = Path(out_dir) / "figures"
    batches = sorted({r["batch"] for r in normalise(rows)})
    batch = 1 if 1 in batches or not batches else batches[0]
    paths = plot_pareto(rows, fig_dir / "pareto", paper_lambda)
    paths += plot_speedup_vs_active(rows, fig_dir / "speedup_vs_active", batch=batch)
    paths += plot_latency_vs_batch(rows, fig_dir / "latency_vs_batch")
    if any(is_variant(r.get("backend", "")) for r in rows):
        paths += save_figure(predicted_figure(rows, batch), fig_dir / "predicted_pareto")
    return paths
