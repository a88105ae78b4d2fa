"""Write a reproduction's result files: results.csv, overlap.csv, tables/*.{md,tex}, figures/*."""

from __future__ import annotations

from pathlib import Path

from taugate.io import atomic_write_text
from taugate.reproduce.figures import accuracy_figure
from taugate.reproduce.tables import ablation_table, main_table, overlap_table
from taugate.tables import to_csv

FIRST_COLUMNS = ["seed", "method", "label", "params", "acc_0", "acc_angle", "hard_acc_0", "hard_acc_angle",
                 "high_act_frac", "mean_gate"]  # fmt: skip


def provenance_note(prov: dict) -> str:
    return (
        f"Data: {prov.get('dataset')} from {prov.get('source')}, split {prov.get('split')}, "
        f"{prov.get('n_train_used')} train / {prov.get('n_test_used')} test images used."
    )


def write_results(
    out: Path, rows: list[dict], overlap: list[dict], angle: float, prov: dict, lora_rank: int = 8
) -> None:
    """(Re)write every result file from the rows so far; each file is replaced atomically."""
    note = provenance_note(prov)
    atomic_write_text(out / "results.csv", to_csv(rows, FIRST_COLUMNS))
    if overlap:
        atomic_write_text(out / "overlap.csv", to_csv(overlap, ["seed", "layer", "jaccard"]))
    tables = {"main": main_table(rows, angle, note), "ablations": ablation_table(rows, angle, note)}
    if overlap:
        tables["overlap"] = overlap_table(overlap, angle, note)
    for name, t in tables.items():
        atomic_write_text(out / "tables" / f"{name}.md", t.markdown())
        atomic_write_text(out / "tables" / f"{name}.tex", t.latex())
    if rows:
        accuracy_figure(rows, angle, out / "figures" / "accuracy")
