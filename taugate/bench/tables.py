"""The tables ``taugate bench`` prints: every row, and a pivot per batch size with row-skip's ratio
to each other backend (what the README's speed tables are)."""

from __future__ import annotations

import math

from taugate import backends as registry
from taugate.tables import Table

BASELINES = ("torch", "torch-compile", "onnxruntime", "dense")  # rowskip vs these


def _fmt(v, spec: str, unit: str = "", scale: float = 1.0) -> str:
    """``v`` formatted, ``-`` when missing (NaN: a ratio without its reference backend)."""
    return "-" if v is None or not math.isfinite(v) else f"{scale * v:{spec}}{unit}"


def _us(ms: float) -> str:
    us = 1e3 * ms
    return f"{us:.1f} µs" if us < 1000 else f"{us:.0f} µs"


def rows_table(rows: list[dict], title: str = "") -> Table:
    """One line per (backend, batch): median, IQR, speedups, work cap, active share."""
    header = [
        "backend",
        "batch",
        "median µs",
        "IQR µs",
        "x torch",
        "x dense",
        "cap",
        "of cap",
        "active",
    ]
    body = []
    for r in rows:
        rs = r["backend"] == "rowskip"
        body.append([r["backend"], str(r["batch"]), f"{1e3 * r['median_ms']:.1f}",
                     f"{1e3 * (r['p75_ms'] - r['p25_ms']):.1f}", _fmt(r["speedup_vs_torch"], ".2f", "x"),
                     _fmt(r["speedup_vs_dense"], ".2f", "x"), _fmt(r["work_cap"], ".2f") if rs else "",
                     _fmt(r["cap_share"], ".0f", "%", 100) if rs else "",
                     f"{100 * r['active_mean']:.1f}%"])  # fmt: skip
    return Table(title, header, body)


def pivot_table(rows: list[dict], title: str = "") -> Table:
    """One line per model and batch: each backend's median latency, row-skip's speedup over each
    baseline that was timed, and the work cap with the share of it reached."""
    keys = [k for k in ("width", "target_active") if any(k in r for r in rows)]
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        groups.setdefault((*(r.get(k) for k in keys), r["batch"]), {})[r["backend"]] = r
    backends = sorted({r["backend"] for r in rows}, key=registry.rank)
    bases = (
        [b for b in BASELINES if b in backends and b != "rowskip"] if "rowskip" in backends else []
    )
    header = [*(["width", "active"] if "width" in keys else []), "batch", *backends,
              *(f"rowskip vs {b}" for b in bases), *(["work cap", "% of cap"] if bases else [])]  # fmt: skip
    body = []
    for key, by in groups.items():
        any_row = next(iter(by.values()))
        line = [str(key[0]), f"{100 * any_row['active_mean']:.1f} %"] if "width" in keys else []
        line.append(str(key[-1]))
        line += [_us(by[b]["median_ms"]) if b in by else "-" for b in backends]
        rs = by.get("rowskip")
        for b in bases:
            ok = rs is not None and b in by
            line.append(f"{by[b]['median_ms'] / rs['median_ms']:.2f}x" if ok else "-")
        if bases:
            line += [_fmt(rs["work_cap"], ".2f") if rs else "-",
                     _fmt(rs["cap_share"], ".0f", " %", 100) if rs else "-"]  # fmt: skip
        body.append(line)
    return Table(title, header, body)
