"""Sweep rows grouped over seeds, and the row-skip work cap.

A sweep row is one lambda x seed x width x backend x batch measurement (see ``taugate sweep``).
Statistics are over seeds: mean and sample std (ddof=1) of the finite values; with fewer than two
finite values the std is NaN (undefined, and distinguishable from a true zero spread), and the
tables then print the mean alone. Missing, empty or non-numeric metric fields count as NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from taugate import backends as registry
from taugate.errors import TauGateError
from taugate.stats import finite, mean_std, num

ACC_FIELDS = ("acc_0_soft", "acc_angle_soft", "acc_0_hard", "acc_angle_hard", "acc_0_compiled",
              "acc_angle_compiled")  # fmt: skip
CELL_FIELDS = (*ACC_FIELDS, "active_mean")  # same for every backend / batch row of a cell
TIMING_FIELDS = ("median_ms", "speedup_vs_torch", "speedup_vs_dense", "work_cap", "cap_share")
GROUP_KEYS = ("width", "lambda", "backend", "batch")
_LAYER = re.compile(r"^active_L(\d+)$")


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
    return tuple(registry.rank(v) if n == "backend" else v for n, v in zip(names, key))


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
