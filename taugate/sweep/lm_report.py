"""The language-model sweep's outputs: sweep.csv, sweep.json, summary.md (bits per byte against the
hard FFN active share and the compiled model's decode speed, per lambda, mean ± std over seeds)
and two figures."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from taugate.io import atomic_write_json, atomic_write_text, json_safe
from taugate.plotting import plt as _plt
from taugate.plotting import save_figure
from taugate.stats import mean_std, num, pm_of
from taugate.tables import Table, to_csv

FIRST = ["width", "lambda", "seed", "path", "batch", "bpb_target", "hard_bpb_target",
         "compiled_bpb_target", "hard_bpb_other", "active_mean", "median_ms", "tokens_per_s",
         "speedup_vs_torch", "e2e_cap"]  # fmt: skip


def _cells(rows: list[dict]) -> OrderedDict[tuple, list[dict]]:
    """(width, lambda) -> one row per seed (the batch-1 torch row carries the cell's figures)."""
    groups: OrderedDict[tuple, list[dict]] = OrderedDict()
    first = min(x["batch"] for x in rows)
    for r in sorted(rows, key=lambda r: (r["width"], r["lambda"], r["seed"])):
        if r["path"] == "torch" and r["batch"] == first:
            groups.setdefault((r["width"], r["lambda"]), []).append(r)
    return groups


def _speed(rows: list[dict], width, lam, batch: int, path: str) -> list[float]:
    return [num(r["tokens_per_s"]) for r in rows if r["width"] == width and r["lambda"] == lam
            and r["batch"] == batch and r["path"] == path]  # fmt: skip


def _ratio(rows: list[dict], width, lam, batch: int) -> list[float]:
    return [num(r["speedup_vs_torch"]) for r in rows if r["width"] == width and r["lambda"] == lam
            and r["batch"] == batch and r["path"] == "compiled"]  # fmt: skip


def summary_table(rows: list[dict]) -> Table:
    batches = sorted({r["batch"] for r in rows})
    t, o = rows[0]["target"], rows[0]["other"]
    body = []
    for (w, lam), rs in _cells(rows).items():
        cells = [str(w), f"{lam:g}", pm_of([r["bpb_target"] for r in rs], 1, 3),
                 pm_of([r["hard_bpb_target"] for r in rs], 1, 3),
                 pm_of([r["compiled_bpb_target"] for r in rs], 1, 3),
                 pm_of([r["hard_bpb_other"] for r in rs], 1, 3),
                 pm_of([r["active_mean"] for r in rs], 100, 1)]  # fmt: skip
        for b in batches:
            cells += [pm_of(_speed(rows, w, lam, b, "compiled"), 1, 0),
                      pm_of(_ratio(rows, w, lam, b), 1, 2, "x")]  # fmt: skip
        body.append(cells)
    head = ["FFN width", "lambda", f"bpb {t}", f"hard bpb {t}", f"compiled bpb {t}",
            f"hard bpb {o}", "hard FFN active %"]  # fmt: skip
    for b in batches:
        head += [f"compiled tok/s (batch {b})", f"vs torch (batch {b})"]
    n = len({r["seed"] for r in rows})
    return Table(f"TauGate on the own GPT across lambda (specialised to {t}; mean ± std over {n} "
                 "seed(s); decode: one step on the KV cache)", head, body)  # fmt: skip


def bpb_figure(rows: list[dict], out_stem: Path, batch: int) -> list[Path]:
    """Left: bits per byte (compiled) against the hard FFN active share; right: against the
    compiled model's decode tokens/s at ``batch`` (torch's as a reference line)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for w in sorted({r["width"] for r in rows}):
        cells = [(lam, rs) for (ww, lam), rs in _cells(rows).items() if ww == w]
        bpb = [mean_std([r["compiled_bpb_target"] for r in rs])[0] for _, rs in cells]
        act = [100 * mean_std([r["active_mean"] for r in rs])[0] for _, rs in cells]
        tps = [float(np.mean(_speed(rows, w, lam, batch, "compiled"))) for lam, _ in cells]
        for ax, x, style in zip(axes, (act, tps), ("o-", "o"), strict=True):
            ax.plot(x, bpb, style, label=f"FFN {w}")  # speed: points (noise would cross lines)
            for (lam, _), xi, yi in zip(cells, x, bpb, strict=True):
                ax.annotate(f"λ={lam:g}", (xi, yi), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")  # fmt: skip
        torch_tps = [float(np.mean(_speed(rows, w, lam, batch, "torch"))) for lam, _ in cells]
        axes[1].axvline(float(np.mean(torch_tps)), ls="--", lw=1, color="gray")
    t = rows[0]["target"]
    axes[0].set_xlabel("hard FFN active share (%)")
    axes[1].set_xlabel(f"compiled decode tokens/s, batch {batch} (dashed: eager torch)")
    for ax in axes:
        ax.set_ylabel(f"bits per byte on {t} (compiled)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_stem)


def write_lm_outputs(out: Path, rows: list[dict], meta: dict) -> None:
    """sweep.csv, sweep.json, summary.md and figures/, each replaced atomically."""
    atomic_write_text(out / "sweep.csv", to_csv(rows, FIRST))
    atomic_write_json(out / "sweep.json", {"machine": meta, "rows": json_safe(rows)})
    text = summary_table(rows).markdown()
    atomic_write_text(out / "summary.md", "# Language-model sweep\n\n" + text)
    for b in sorted({r["batch"] for r in rows}):
        bpb_figure(rows, out / "figures" / f"bpb_vs_active_and_speed_b{b}", b)
