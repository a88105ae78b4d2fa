"""The language study's tables (mean ± std over seeds) and its figure; bits per byte, lower is
better."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from taugate.plotting import plt as _plt
from taugate.plotting import save_figure
from taugate.reproduce_lm.config import GATED
from taugate.stats import num, pm_of
from taugate.tables import Table


def _by_method(rows: list[dict]) -> OrderedDict[str, list[dict]]:
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for r in rows:
        groups.setdefault(r["method"], []).append(r)
    return groups


def _layers(rs: list[dict]) -> int:
    return len([k for k in rs[0] if k.startswith("hard_active_L")])


def _active(rs: list[dict], digits: int = 1) -> str:
    """The hard FFN active share per layer, ``L1 / L2 / ...`` (%), mean over seeds."""
    n = _layers(rs)
    if not n:
        return "–"
    return " / ".join(f"{100 * np.mean([num(r[f'hard_active_L{i}']) for r in rs]):.{digits}f}"
                      for i in range(1, n + 1))  # fmt: skip


def _col(rs: list[dict], key: str, scale: float = 1.0, digits: int = 3) -> str:
    return pm_of([r.get(key) for r in rs], scale, digits)


def _seeds(rows: list[dict]) -> str:
    n = len({r["seed"] for r in rows})
    return f"{n} seed{'s' * (n != 1)}"


def main_table(rows: list[dict], note: str = "") -> Table:
    """Table 1: every method, trainable parameters, bits per byte on both modes, FFN high-act
    frac and the hard FFN active share per layer (target mode's test text)."""
    t, o = rows[0]["target"], rows[0]["other"]
    body = [[rs[0]["label"], f"{int(rs[0]['params']):,}", _col(rs, "bpb_target"),
             _col(rs, "bpb_other"), _col(rs, "high_act_frac", 100, 1), _active(rs)]
            for rs in _by_method(rows).values()]  # fmt: skip
    return Table(
        f"Specialising a frozen {o}/{t} GPT to {t} (bits per byte on test text, lower is better; "
        f"mean ± std over {_seeds(rows)})",
        [
            "Method",
            "Trainable params",
            f"bpb {t}",
            f"bpb {o}",
            "FFN high-act frac %",
            "Hard FFN active % (per layer)",
        ],  # fmt: skip
        body,
        note,
    )


def ablation_table(rows: list[dict], note: str = "") -> Table:
    """Table 2: TauGate against its halves, soft / hard / compiled bits per byte on the target,
    the other mode with hard gates, the active share and the units compile keeps."""
    t, o = rows[0]["target"], rows[0]["other"]
    groups = _by_method(rows)
    body = [[groups[m][0]["label"], f"{int(groups[m][0]['params']):,}",
             _col(groups[m], "bpb_target"), _col(groups[m], "hard_bpb_target"),
             _col(groups[m], "compiled_bpb_target"), _col(groups[m], "hard_bpb_other"),
             _col(groups[m], "high_act_frac", 100, 1), _active(groups[m]),
             _col(groups[m], "compiled_units_kept", 100, 1)]
            for m in GATED if m in groups]  # fmt: skip
    return Table(
        f"Ablations on {t} (bits per byte; high-act frac = share of smooth gates > 0.9; hard active "
        f"= share of FFN units with an open hard gate and phi(z) != 0, on the {t} test text; "
        "kept = units compile keeps)",
        [
            "Method",
            "Params",
            f"bpb {t}",
            f"hard bpb {t}",
            f"compiled bpb {t}",
            f"hard bpb {o}",
            "High-act %",
            "Hard active % (per layer)",
            "Kept %",
        ],  # fmt: skip
        body,
        note,
    )


def overlap_table(overlap: list[dict], target: str, other: str, share: float,
                  note: str = "") -> Table:  # fmt: skip
    """Table 3: per FFN layer, how alike the high gates (g > 0.9) of the target- and the
    other-specialised TauGate models are, each on its own mode's test text: the Jaccard of the
    units high on at least ``share`` of the tokens, and the Jaccard weighted by each unit's share
    of high tokens; for reference the weighted Jaccard with both models on the target's text."""
    layers: OrderedDict[int, list[dict]] = OrderedDict()
    for r in overlap:
        layers.setdefault(int(r["layer"]), []).append(r)
    body = [[f"FFN {k}", pm_of([r["jaccard"] for r in rs], 1, 3),
             pm_of([r["weighted_jaccard"] for r in rs], 1, 3),
             pm_of([r["weighted_jaccard_same_text"] for r in rs], 1, 3),
             pm_of([r[f"units_{target}"] for r in rs], 1, 1),
             pm_of([r[f"units_{other}"] for r in rs], 1, 1), str(rs[0]["units"])]
            for k, rs in layers.items()]  # fmt: skip
    p = f"{100 * share:g} %"
    return Table(
        f"FFN gate overlap, TauGate on {other} vs on {target} (g > 0.9; each model on its own "
        f"mode's test text; a unit is on if high on >= {p} of the tokens; weighted: "
        "sum min / sum max of the units' shares of high tokens)",
        [
            "Layer",
            "Jaccard (units on)",
            "weighted Jaccard",
            f"weighted, both on {target}",
            f"units on ({target})",
            f"units on ({other})",
            "units",
        ],  # fmt: skip
        body,
        note,
    )


def bpb_figure(rows: list[dict], out_stem: Path) -> list[Path]:
    """Bits per byte of every method on both modes (mean ± std bars); png + pdf."""
    plt = _plt()
    groups = _by_method(rows)
    labels = [rs[0]["label"] for rs in groups.values()]
    x = np.arange(len(labels))  # (M,)
    t, o = rows[0]["target"], rows[0]["other"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 * len(labels) + 2), 3.4))
    for k, (key, mode) in enumerate((("bpb_other", o), ("bpb_target", t))):
        vals = [[num(r[key]) for r in rs] for rs in groups.values()]
        means = [np.mean(v) for v in vals]
        stds = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in vals]
        ax.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=stds, capsize=3, label=f"test: {mode}")
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel("bits per byte (lower is better)")
    vals = [num(r[k]) for r in rows for k in ("bpb_target", "bpb_other")]
    lo, hi = min(vals), max(vals)
    ax.set_ylim(lo - 0.5 * (hi - lo) - 0.02, hi + 0.35 * (hi - lo) + 0.02)  # the differences show
    ax.set_title(f"Specialising a frozen {o}/{t} GPT to {t}")
    ax.legend(loc="upper center", ncols=2, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out_stem)
