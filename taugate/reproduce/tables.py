"""Tables 1-3 of the paper (mean ± std over seeds), as ``taugate.tables.Table`` objects."""

from __future__ import annotations

from collections import OrderedDict

from taugate.stats import pm_of
from taugate.tables import Table


def mean_std(values, scale: float = 1.0, digits: int = 2) -> str:
    """``"97.12 ± 0.10"`` of the values (sample std); one value alone; none as ``–``."""
    return pm_of(values, scale, digits)


def _by_method(rows: list[dict]) -> OrderedDict[str, list[dict]]:
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for r in rows:
        groups.setdefault(r["method"], []).append(r)
    return groups


def _col(rs: list[dict], key: str) -> list[float]:
    return [r.get(key) for r in rs]


def _params(rs: list[dict]) -> str:
    return f"{int(rs[0]['params']):,}"


def main_table(rows: list[dict], angle: float, note: str = "") -> Table:
    """Table 1: every method, trainable parameters and accuracy at 0° and at the angle."""
    a = f"{angle:g}°"
    body = [
        [
            rs[0]["label"],
            _params(rs),
            mean_std(_col(rs, "acc_0"), 100),
            mean_std(_col(rs, "acc_angle"), 100),
        ]
        for rs in _by_method(rows).values()
    ]
    n = len({r["seed"] for r in rows})
    return Table(
        f"Mode specialisation to {a} (accuracy %, mean ± std over {n} seed{'s' * (n != 1)})",
        ["Method", "Trainable params", "Acc 0°", f"Acc {a}"],
        body,
        note,
    )


ABLATION_METHODS = ("taugate", "gainonly", "tauonly")


def ablation_table(rows: list[dict], angle: float, note: str = "") -> Table:
    """Table 2: TauGate against its halves (gain only, threshold only), soft and hard gates."""
    a = f"{angle:g}°"
    groups = _by_method(rows)
    body = []
    for m in ABLATION_METHODS:
        if m not in groups:
            continue
        rs = groups[m]
        n_layers = len([k for k in rs[0] if k.startswith("hard_active_L")])
        active = "–"
        if n_layers:
            per_seed = [
                sum(r[f"hard_active_L{i}"] for i in range(1, n_layers + 1)) / n_layers for r in rs
            ]
            active = mean_std(per_seed, 100, 1)
        body.append(
            [
                rs[0]["label"],
                _params(rs),
                mean_std(_col(rs, "acc_0"), 100),
                mean_std(_col(rs, "acc_angle"), 100),
                mean_std(_col(rs, "hard_acc_angle"), 100),
                mean_std(_col(rs, "high_act_frac"), 100, 1),
                active,
            ]
        )
    return Table(
        f"Ablations at {a} (%, mean ± std; high-act frac = share of smooth gates > 0.9 on the {a} test set; "
        "hard active = share of units with z > max(tau, 0))",
        [
            "Method",
            "Params",
            "Acc 0°",
            f"Acc {a}",
            f"Hard-gate acc {a}",
            "High-act frac",
            "Hard active",
        ],
        body,
        note,
    )


def overlap_table(overlap: list[dict], angle: float, note: str = "") -> Table:
    """Table 3: Jaccard overlap of the g > 0.9 masks of 0°- and angle-specialised TauGate."""
    layers: OrderedDict[int, list[float]] = OrderedDict()
    for r in overlap:
        layers.setdefault(int(r["layer"]), []).append(float(r["jaccard"]))
    body = [[f"hidden {k}", mean_std(v, 1, 3), str(len(v))] for k, v in layers.items()]
    return Table(
        f"Gate-mask overlap, TauGate 0° vs {angle:g}° (Jaccard of g > 0.9 per (test image, unit); "
        "each model on the test images of its own mode)",
        ["Layer", "Jaccard", "Seeds"],
        body,
        note,
    )
