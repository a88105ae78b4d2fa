"""Figure 1: accuracy of every method at 0° and at the rotated mode (mean ± std bars)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from taugate.plotting import plt as _plt
from taugate.plotting import save_figure


def accuracy_figure(rows: list[dict], angle: float, out_stem: Path) -> list[Path]:
    """Write ``out_stem.png`` and ``out_stem.pdf``; returns the paths."""
    plt = _plt()
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for r in rows:
        groups.setdefault(r["label"], []).append(r)
    labels = list(groups)
    x = np.arange(len(labels))  # (M,)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 * len(labels) + 2), 3.4))
    for k, (key, name) in enumerate((("acc_0", "0°"), ("acc_angle", f"{angle:g}°"))):
        vals = [[100 * r[key] for r in groups[lab]] for lab in labels]
        means = [np.mean(v) for v in vals]
        stds = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in vals]
        ax.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=stds, capsize=3, label=f"test at {name}")
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    lo = min(100 * min(r["acc_0"], r["acc_angle"]) for r in rows)
    ax.set_ylim(max(0.0, lo - 10), 100)
    ax.set_title(f"Specialising a frozen 0°/{angle:g}° foundation to {angle:g}°")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out_stem)
