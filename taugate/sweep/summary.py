"""The sweep's ``summary.md``: header and machine, accuracy vs sparsity per width, speed per width
and batch, and the cells where row skipping does not beat the compact backend (statistics over
seeds from :mod:`taugate.sweep.stats`)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from taugate import backends as registry
from taugate.bench.predicted import is_variant
from taugate.io import atomic_write_text
from taugate.stats import finite, num, pm
from taugate.sweep.stats import (
    CELL_FIELDS,
    GROUP_KEYS,
    TIMING_FIELDS,
    aggregate,
    cell_rows,
    normalise,
)
from taugate.tables import Table


def _pm_of(s: dict, field: str, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """``pm`` of ``s["<field>_mean"]`` / ``s["<field>_std"]`` (missing counts as NaN)."""
    return pm(
        s.get(f"{field}_mean", math.nan), s.get(f"{field}_std", math.nan), scale, digits, unit
    )


def _distinct(values: Iterable) -> list:
    seen: list = []
    for v in values:
        if v is not None and v != "" and not (isinstance(v, float) and math.isnan(v)):
            if v not in seen:
                seen.append(v)
    return seen


def _angle(items: Sequence[dict], meta: dict) -> str:
    angles = [a for a in _distinct(num(r.get("angle")) for r in items) if math.isfinite(a)]
    if not angles and finite(meta.get("angle")):
        angles = [num(meta["angle"])]
    return "/".join(f"{a:g}°" for a in angles) or "rotated"


_MACHINE_KEYS = (("cpu", "CPU"), ("cores", "cores"), ("threads", "threads"),
                 ("numba_threading_layer", "Numba threading layer"), ("blas", "BLAS"))  # fmt: skip
_HEADER_KEYS = {"dataset", "angle", "seeds"}


def _fmt_meta(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {x}" for k, x in v.items()) or "–"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v) or "–"
    return str(v)


def _header(items: Sequence[dict], meta: dict) -> list[str]:
    datasets = _distinct(r.get("dataset") for r in items) or _distinct([meta.get("dataset")])
    seeds = sorted({r["seed"] for r in items}) or list(meta.get("seeds") or [])
    backends = sorted({r["backend"] for r in items}, key=registry.rank)
    lines = ["# TauGate sweep summary", "",
             f"- dataset: {', '.join(map(str, datasets)) or 'unknown'}",
             f"- rotation angle: {_angle(items, meta)}",
             f"- seeds: {', '.join(map(str, seeds)) or '–'} ({len(seeds)})",
             f"- hidden widths: {', '.join(str(w) for w in sorted({r['width'] for r in items}))}",
             f"- λ: {', '.join(f'{x:g}' for x in sorted({r['lambda'] for r in items}))}",
             f"- backends: {', '.join(backends)}",
             f"- batch sizes: {', '.join(str(b) for b in sorted({r['batch'] for r in items}))}",
             "", "## Machine", ""]  # fmt: skip
    known = dict(_MACHINE_KEYS)
    machine = [f"- {known[k]}: {_fmt_meta(meta[k])}" for k, _ in _MACHINE_KEYS if k in meta]
    if "versions" in meta:
        machine.append(f"- versions: {_fmt_meta(meta['versions'])}")
    for k, v in meta.items():
        if k not in known and k != "versions" and k not in _HEADER_KEYS:
            machine.append(f"- {k}: {_fmt_meta(v)}")
    return lines + (machine or ["- (no machine information recorded)"]) + [""]


def _accuracy_tables(cells: list[dict], angle: str) -> list[str]:
    out = ["## Accuracy vs sparsity", ""]
    for w in sorted({c["width"] for c in cells}):
        accs = ("acc_angle_soft", "acc_angle_hard", "acc_angle_compiled", "acc_0_hard")
        body = [[f"{c['lambda']:g}", _pm_of(c, "active_mean", 100, 1), *(_pm_of(c, f, 100) for f in accs)]
                for c in cells if c["width"] == w]  # fmt: skip
        header = ["λ", "hard active %", f"acc {angle} soft", f"acc {angle} hard",
                  f"acc {angle} compiled", "acc 0° hard"]  # fmt: skip
        title = f"Width {w}: accuracy (%) vs hard active share (mean ± std over seeds)"
        out += [Table(title, header, body).markdown()]
    return out


def _speed_tables(summ: list[dict], cells: list[dict]) -> list[str]:
    out = ["## Speed", "",
           "Speedup = torch median latency / backend median latency on the same inputs; the torch "
           "column is its median latency per call. Work cap = dense MACs / row-skip MACs for these "
           "inputs; % of cap = rowskip speedup vs dense / work cap.", ""]  # fmt: skip
    active = {(c["width"], c["lambda"]): c for c in cells}
    for w in sorted({s["width"] for s in summ}):
        for b in sorted({s["batch"] for s in summ if s["width"] == w}):
            sub = {
                (s["lambda"], s["backend"]): s for s in summ if s["width"] == w and s["batch"] == b
            }
            backends = sorted({k[1] for k in sub}, key=registry.rank)
            has_rs = "rowskip" in backends
            header = ["λ", "active %"] + [
                "torch (ms)" if be == "torch" else f"{be} vs torch" for be in backends
            ]
            header += ["rowskip work cap", "% of cap"] if has_rs else []
            body = []
            for lam in sorted({k[0] for k in sub}):
                row = [f"{lam:g}", _pm_of(active.get((w, lam), {}), "active_mean", 100, 1)]
                for be in backends:
                    st = sub.get((lam, be), {})
                    if be == "torch":
                        row.append(_pm_of(st, "median_ms", digits=3))
                    else:
                        row.append(_pm_of(st, "speedup_vs_torch", unit="x"))
                if has_rs:
                    rs = sub.get((lam, "rowskip"), {})
                    row += [_pm_of(rs, "work_cap", unit="x"), _pm_of(rs, "cap_share", 100, 1)]
                body.append(row)
            out += [Table(f"Width {w}, batch {b}: speedup vs torch (mean ± std over seeds)",
                          header, body).markdown()]  # fmt: skip
    return out


def rowskip_not_paying(summ: list[dict]) -> list[tuple[int, float, int, float, float]]:
    """(width, lambda, batch, rowskip ms, compact ms) where rowskip's mean median latency is not
    below compact's; cells lacking either timing are left out."""
    ms = {(s["width"], s["lambda"], s["batch"], s["backend"]): s["median_ms_mean"] for s in summ}
    out = []
    for (w, lam, b, be), rs in ms.items():
        cp = ms.get((w, lam, b, "compact"), math.nan)
        if be == "rowskip" and math.isfinite(rs) and math.isfinite(cp) and rs >= cp:
            out.append((w, lam, b, rs, cp))
    return sorted(out)


def _not_paying(summ: list[dict]) -> list[str]:
    out = ["## Where row-skip does not pay", "",
           "Cells where rowskip's median latency (mean over seeds) is not below compact's:", ""]  # fmt: skip
    backends = {s["backend"] for s in summ}
    if not {"rowskip", "compact"} <= backends:
        return [*out, "- not measured: needs both rowskip and compact rows", ""]
    bad = rowskip_not_paying(summ)
    out += [f"- width {w}, λ={lam:g}, batch {b}: rowskip {rs:.4g} ms vs compact {cp:.4g} ms "
            f"({rs / cp:.2f}x compact's latency)" for w, lam, b, rs, cp in bad]  # fmt: skip
    return [*out, *([] if bad else ["- none: rowskip beat compact in every measured cell"]), ""]


def rowskip_beaten(summ: list[dict]) -> list[tuple[int, float, int, str, float, float]]:
    """(width, lambda, batch, fastest backend, its ms, rowskip ms) for every cell where some other
    backend's mean median latency is below rowskip's."""
    cells: dict[tuple, dict[str, float]] = {}
    for s in summ:
        if math.isfinite(s["median_ms_mean"]):
            cells.setdefault((s["width"], s["lambda"], s["batch"]), {})[s["backend"]] = s[
                "median_ms_mean"
            ]
    out = []
    for (w, lam, b), ms in sorted(cells.items()):
        rs = ms.pop("rowskip", math.nan)
        if ms and math.isfinite(rs):
            best = min(ms, key=ms.get)
            if ms[best] < rs:
                out.append((w, lam, b, best, ms[best], rs))
    return out


def _beaten(summ: list[dict]) -> list[str]:
    """One line per width, batch and winning backend: in how many λ cells it beat rowskip, and
    rowskip's speed relative to it."""
    out = ["## Where row-skip is not the fastest", "",
           "Cells where another backend's median latency (mean over seeds) is below rowskip's, "
           "grouped by width, batch and the fastest backend:", ""]  # fmt: skip
    n_lams = {(s["width"], s["batch"]): set() for s in summ}
    for s in summ:
        n_lams[(s["width"], s["batch"])].add(s["lambda"])
    groups: dict[tuple, list[float]] = {}
    for w, _lam, b, best, ms, rs in rowskip_beaten(summ):
        groups.setdefault((w, b, best), []).append(ms / rs)
    for (w, b, best), ratios in sorted(groups.items(), key=lambda kv: kv[0][:2]):
        lo, hi = min(ratios), max(ratios)
        span = f"{lo:.2f}x" if lo == hi else f"{lo:.2f}–{hi:.2f}x"
        out.append(f"- width {w}, batch {b}: {best} in {len(ratios)} of {len(n_lams[(w, b)])} "
                   f"λ (rowskip runs at {span} of its speed)")  # fmt: skip
    return [
        *out,
        *([] if groups else ["- none: rowskip was the fastest in every measured cell"]),
        "",
    ]


PRED_FIELDS = ("pred_recall", "pred_computed", "pred_acc_change", "speedup_vs_rowskip")


def _predicted_tables(pred: list[dict]) -> list[str]:
    """Per width: λ x margin, recall, units computed, accuracy change and speedup vs exact
    row-skip at each batch size (mean ± std over seeds)."""
    out = ["## Predicted gates (APPROXIMATE)", "",
           "rowskip-predicted computes z only for the units a low-rank predictor marks (guess > "
           "threshold - margin x its error std) and gates those exactly; recall = share of the "
           "truly open (input, unit) pairs that were computed, on the whole test set at the angle; "
           "accuracy change against the exact hard gates, in points; speedup against exact "
           "rowskip in the same timing run.", ""]  # fmt: skip
    summ = aggregate(pred, ("width", "lambda", "pred_margin", "batch"), PRED_FIELDS)
    for w in sorted({s["width"] for s in summ}):
        batches = sorted({s["batch"] for s in summ if s["width"] == w})
        keys = sorted({(s["lambda"], s["pred_margin"]) for s in summ if s["width"] == w})
        by = {(s["lambda"], s["pred_margin"], s["batch"]): s for s in summ if s["width"] == w}
        body = []
        for lam, m in keys:
            first = by[(lam, m, batches[0])]
            body.append([f"{lam:g}", f"{m:g}", _pm_of(first, "pred_recall", 100),
                         _pm_of(first, "pred_computed", 100, 1),
                         _pm_of(first, "pred_acc_change", unit=" pt"),
                         *(_pm_of(by.get((lam, m, b), {}), "speedup_vs_rowskip", unit="x")
                           for b in batches)])  # fmt: skip
        header = ["λ", "margin", "recall %", "computed %", "accuracy change",
                  *(f"vs rowskip, batch {b}" for b in batches)]  # fmt: skip
        out += [
            Table(f"Width {w}: predicted gates (mean ± std over seeds)", header, body).markdown()
        ]
    return out


def summary_markdown(rows: Iterable[dict], meta: dict | None = None) -> str:
    """The sweep's ``summary.md``: header and machine, accuracy tables per width, speed tables
    per width and batch, the cells where row skipping does not beat the compact backend, and
    those where any backend beats it."""
    meta = dict(meta or {})
    every = normalise(rows)
    pred = [r for r in every if is_variant(r["backend"])]
    items = [r for r in every if not is_variant(r["backend"])]  # the exact backends
    summ = aggregate(items, GROUP_KEYS, (*CELL_FIELDS, *TIMING_FIELDS))
    cells = aggregate(cell_rows(items), ("width", "lambda"), CELL_FIELDS)
    lines = _header(items, meta)
    if not items:
        return "\n".join([*lines, "No sweep rows recorded.", ""])
    lines += _accuracy_tables(cells, _angle(items, meta))
    lines += _speed_tables(summ, cells)
    lines += _not_paying(summ)
    lines += _beaten(summ)
    if pred:
        lines += _predicted_tables(pred)
    return "\n".join(lines)


def write_summary(
    out_dir: str | os.PathLike, rows: Iterable[dict], meta: dict | None = None
) -> Path:
    """Write ``out_dir/summary.md`` atomically; returns its path."""
    return atomic_write_text(Path(out_dir) / "summary.md", summary_markdown(rows, meta))
