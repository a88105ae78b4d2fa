"""Numbers over seeds, for every table: mean and sample std, and their ``"m ± s"`` text."""

from __future__ import annotations

import math
from collections.abc import Iterable


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
    """Mean and sample std (ddof=1) of the finite values; NaN mean if none, NaN std if < 2 (one
    seed has no spread, which a table should not print as a true zero)."""
    vals = [x for x in (num(v) for v in values) if math.isfinite(x)]
    if not vals:
        return math.nan, math.nan
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, math.nan
    return m, math.sqrt(sum((x - m) ** 2 for x in vals) / (len(vals) - 1))


def pm(mean: float, std: float, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """``"97.12 ± 0.10"``; the mean alone when the std is NaN (one seed); ``–`` when no value."""
    if not math.isfinite(mean):
        return "–"
    s = f"{mean * scale:.{digits}f}{unit}"
    return s if not math.isfinite(std) else f"{s} ± {std * scale:.{digits}f}"


def pm_of(values: Iterable, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """:func:`pm` of :func:`mean_std` of ``values``."""
    return pm(*mean_std(values), scale=scale, digits=digits, unit=unit)
