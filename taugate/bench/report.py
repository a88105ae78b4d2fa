"""Sweep reports: per-cell statistics over seeds, ``summary.md``, and the row-skip work cap.

A sweep row is one lambda x seed x width x backend x batch measurement (see ``taugate sweep``).
Statistics are over seeds: mean and sample std (ddof=1) of the finite values; with fewer than two
finite values the std is NaN (undefined, and distinguishable from a true zero spread), and the
tables then print the mean alone. Missing, empty or non-numeric metric fields count as NaN.
The figures live in ``taugate.bench.figures`` and are re-exported here.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from taugate.errors import TauGateError
from taugate.io import atomic_write_text
from taugate.report.tables import Table

BACKENDS = ("torch", "torch-soft", "torch-hard", "dense", "compact", "rowskip", "scipy-sparse")
ACC_FIELDS = ("acc_0_soft", "acc_angle_soft", "acc_0_hard", "acc_angle_hard", "acc_0_compiled",
              "acc_angle_compiled")  # fmt: skip
CELL_FIELDS = (*ACC_FIELDS, "active_mean")  # same for every backend / batch row of a cell
TIMING_FIELDS = ("median_ms", "speedup_vs_torch", "speedup_vs_dense", "work_cap", "cap_share")
GROUP_KEYS = ("width", "lambda", "backend", "batch")
_LAYER = re.compile(r"^active_L(\d+)$")
_FIGURES = ("plot_pareto", "plot_speedup_vs_active", "plot_latency_vs_batch", "write_figures")


def __getattr__(name: str):  # lazy re-export: figures.py imports this module
    if name in _FIGURES:
        from taugate.bench import figures

        return getattr(figures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------- numbers and grouping


def num(v) -> float:
    """``v`` as a float; None, '', bools and non-numbers give NaN (CSV rows hold strings)."""
    if v is None or isinstance(v, bool):
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def finite(v) -> bool:
    return math.isfinite(num(v))


def mean_std(values: Iterable) -> tuple[float, float]:
    """Mean and sample std (ddof=1) of the finite values; NaN mean if none, NaN std if < 2."""
    vals = [x for x in (num(v) for v in values) if math.isfinite(x)]
    if not vals:
        return math.nan, math.nan
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, math.nan
    return m, math.sqrt(sum((x - m) ** 2 for x in vals) / (len(vals) - 1))


def backend_rank(name: str) -> tuple[int, str]:
    """Sort key: the fixed backend order, unknown backends after it alphabetically."""
    return (BACKENDS.index(name), "") if name in BACKENDS else (len(BACKENDS), name)


def layer_fields(rows: Sequence[dict]) -> list[str]:
    """The ``active_L<i>`` keys present in any row, by layer number."""
    keys = {k for r in rows for k in r if _LAYER.match(k)}
    return sorted(keys, key=lambda k: int(_LAYER.match(k).group(1)))


def normalise(rows: Iterable[dict]) -> list[dict]:
    """Copies of the rows with the key fields cast (width/seed/batch int, lambda float, backend str)."""
    out = []
    for i, r in enumerate(rows):
        d = dict(r)
        for key, cast in (("width", int), ("seed", int), ("batch", int), ("lambda", float)):
            x = num(r.get(key))
            if not math.isfinite(x):
                raise TauGateError(f"sweep row {i}: field '{key}' is missing or not a number "
                                   f"(got {r.get(key)!r})")  # fmt: skip
            d[key] = cast(x)
        if not r.get("backend"):
            raise TauGateError(f"sweep row {i}: field 'backend' is missing")
        d["backend"] = str(r["backend"])
        out.append(d)
    return out


def _sort_key(key: tuple, names: Sequence[str]) -> tuple:
    return tuple(backend_rank(v) if n == "backend" else v for n, v in zip(names, key))


def aggregate(items: Sequence[dict], keys: Sequence[str], fields: Sequence[str]) -> list[dict]:
    """Group normalised rows by ``keys``; ``<field>_mean`` / ``<field>_std`` over each group, n_seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in items:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key in sorted(groups, key=lambda k: _sort_key(k, keys)):
        members = groups[key]
        d: dict = dict(zip(keys, key))
        d["n_seeds"] = len({r["seed"] for r in members})
        for f in fields:
            d[f"{f}_mean"], d[f"{f}_std"] = mean_std(r.get(f) for r in members)
        out.append(d)
    return out


def cell_rows(items: Sequence[dict]) -> list[dict]:
    """One row per (width, lambda, seed) model: per cell-level field the first finite value over its
    backend / batch rows (they are equal; a failed backend's row may lack them)."""
    fields = (*CELL_FIELDS, *layer_fields(items), "angle", "dataset")
    cells: dict[tuple, dict] = {}
    for r in items:
        c = cells.setdefault((r["width"], r["lambda"], r["seed"]),
                             {"width": r["width"], "lambda": r["lambda"], "seed": r["seed"]})  # fmt: skip
        for f in fields:
            if f not in c or (not finite(c[f]) and finite(r.get(f))):
                c[f] = r.get(f)
    return list(cells.values())


def summarise(rows: Iterable[dict]) -> list[dict]:
    """Mean / std over seeds per (width, lambda, backend, batch), sorted by width, lambda, backend
    order, batch. Keys: the group keys, ``n_seeds`` (distinct seeds in the group), and
    ``<f>_mean`` / ``<f>_std`` for the accuracies, active_mean, the active_L* shares, median_ms,
    speedup_vs_torch, speedup_vs_dense, work_cap and cap_share. With one seed the std is NaN."""
    items = normalise(rows)
    return aggregate(items, GROUP_KEYS, (*CELL_FIELDS, *layer_fields(items), *TIMING_FIELDS))


# ---------------------------------------------------------------- the work cap


def work_cap(layer_sizes: Sequence[int], active_counts: Sequence[float]) -> float:
    """Upper bound on the row-skip speedup over dense from multiply-adds alone.

    ``layer_sizes`` = [d_in, h_1, ..., h_k, d_out] (all linear layers, original sizes) and
    ``active_counts`` = [a_1, ..., a_k], the mean number (per input) of hidden units with nonzero
    output in each hidden layer. Dense MACs = sum_i in_i * out_i over all layers. Row skipping saves
    nothing in the first layer (its input is dense) and in layer i >= 1 only multiplies the a_{i-1}
    active rows: row-skip MACs = in_0 * out_0 + sum_{i>=1} a_{i-1} * out_i. Returns dense / row-skip.
    """
    sizes = [num(s) for s in layer_sizes]
    counts = [num(a) for a in active_counts]
    if len(sizes) < 2:
        raise TauGateError(f"work_cap: layer_sizes needs at least 2 entries, got {len(sizes)}")
    if any(not math.isfinite(s) or s <= 0 or s != int(s) for s in sizes):
        raise TauGateError(
            f"work_cap: layer_sizes must be positive integers, got {list(layer_sizes)}"
        )
    if len(counts) != len(sizes) - 2:
        raise TauGateError(f"work_cap: {len(sizes) - 2} hidden layer(s) in layer_sizes but "
                           f"{len(counts)} active count(s)")  # fmt: skip
    for i, (a, h) in enumerate(zip(counts, sizes[1:-1])):
        if not math.isfinite(a) or a < 0 or a > h:
            raise TauGateError(f"work_cap: active count {active_counts[i]!r} of hidden layer "
                               f"{i + 1} is not in [0, {int(h)}]")  # fmt: skip
    dense = sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))
    rowskip = sizes[0] * sizes[1] + sum(a * o for a, o in zip(counts, sizes[2:]))
    return dense / rowskip


# ---------------------------------------------------------------- summary.md


def _pm(mean: float, std: float, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """``"97.12 ± 0.10"``; mean alone when the std is NaN (one seed); ``–`` when no value."""
    if not math.isfinite(mean):
        return "–"
    s = f"{mean * scale:.{digits}f}{unit}"
    return s if not math.isfinite(std) else f"{s} ± {std * scale:.{digits}f}"


def _pm_of(s: dict, field: str, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """``_pm`` of ``s["<field>_mean"]`` / ``s["<field>_std"]`` (missing counts as NaN)."""
    return _pm(
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
    backends = sorted({r["backend"] for r in items}, key=backend_rank)
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
            backends = sorted({k[1] for k in sub}, key=backend_rank)
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


def summary_markdown(rows: Iterable[dict], meta: dict | None = None) -> str:
    """The sweep's ``summary.md``: header and machine, accuracy tables per width, speed tables
    per width and batch, and the cells where row skipping does not beat the compact backend."""
    meta = dict(meta or {})
    items = normalise(rows)
    summ = aggregate(items, GROUP_KEYS, (*CELL_FIELDS, *TIMING_FIELDS))
    cells = aggregate(cell_rows(items), ("width", "lambda"), CELL_FIELDS)
    lines = _header(items, meta)
    if not items:
        return "\n".join([*lines, "No sweep rows recorded.", ""])
    lines += _accuracy_tables(cells, _angle(items, meta))
    lines += _speed_tables(summ, cells)
    lines += _not_paying(summ)
    return "\n".join(lines)


def write_summary(
    out_dir: str | os.PathLike, rows: Iterable[dict], meta: dict | None = None
) -> Path:
    """Write ``out_dir/summary.md`` atomically; returns its path."""
    return atomic_write_text(Path(out_dir) / "summary.md", summary_markdown(rows, meta))
