"""``taugate reproduce-lm``: every method x seed of the language study, with results.csv,
overlap.csv, tables, a figure, the foundation and adapters and ``config.json`` under ``out``
(see :mod:`taugate.reproduce_lm.study` for one seed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from taugate.errors import TauGateError
from taugate.io import atomic_write_json, atomic_write_text, claim_output_dir
from taugate.reproduce_lm.config import LMStudyConfig
from taugate.reproduce_lm.study import load_lm_study_data, run_lm_seed
from taugate.reproduce_lm.tables import ablation_table, bpb_figure, main_table, overlap_table
from taugate.tables import to_csv

MARKER = "config.json"  # what makes a folder one that `taugate reproduce-lm` wrote
FIRST = ["seed", "method", "label", "params", "target", "other", "bpb_target", "bpb_other",
         "hard_bpb_target", "hard_bpb_other", "compiled_bpb_target", "compiled_bpb_other",
         "high_act_frac", "mean_gate", "compiled_units_kept"]  # fmt: skip


def data_note(record: dict) -> str:
    parts = []
    for mode, r in record["modes"].items():
        b = r["bytes"]
        parts.append(f"{mode} from {r['source']} ({b['train']:,} / {b['valid']:,} / {b['test']:,} "
                     "train / valid / test bytes, split by document)")  # fmt: skip
    return "Text: " + "; ".join(parts) + "."


def write_lm_results(out: Path, rows: list[dict], overlap: list[dict], record: dict,
                     share: float) -> None:  # fmt: skip
    """(Re)write every result file from the rows so far; each file is replaced atomically."""
    note = data_note(record)
    atomic_write_text(out / "results.csv", to_csv(rows, FIRST))
    tables = {"main": main_table(rows, note), "ablations": ablation_table(rows, note)}
    if overlap:
        atomic_write_text(out / "overlap.csv", to_csv(overlap, ["seed", "layer", "jaccard"]))
        tables["overlap"] = overlap_table(overlap, rows[0]["target"], rows[0]["other"], share, note)
    for name, t in tables.items():
        atomic_write_text(out / "tables" / f"{name}.md", t.markdown())
        atomic_write_text(out / "tables" / f"{name}.tex", t.latex())
    bpb_figure(rows, out / "figures" / "bits_per_byte")


def _is_ours(meta) -> bool:
    return isinstance(meta, dict) and meta.get("written_by") == "taugate reproduce-lm"


def reproduce_lm(cfg: LMStudyConfig, out: str | Path, data_dir=None, *, quiet: bool = False,
                 force: bool = False, executor=None, task_hook=None) -> dict:  # fmt: skip
    """Run the whole study and write everything under ``out``; returns a summary dict.

    ``out`` must be new, empty, or a folder this command wrote with no results.csv yet;
    ``force`` writes into any folder, replacing only the files the study writes. ``executor``
    (:class:`taugate.executor.ExecutorConfig`): ``local`` (default) trains here; ``ray`` runs a
    task per foundation and per (method, seed) (:mod:`taugate.reproduce.ray_run`)."""
    from taugate.executor import ExecutorConfig

    executor = executor or ExecutorConfig()
    out = Path(out)
    claim_output_dir(out, MARKER, "taugate reproduce-lm", _is_ours, force=force)
    if (out / "results.csv").exists() and not force:
        raise TauGateError(f"{out} already holds results.csv; choose another --out or pass --force")
    t0 = time.perf_counter()
    data = load_lm_study_data(cfg, data_dir)
    record = data.record()
    meta = {"written_by": "taugate reproduce-lm", "config": cfg.to_dict(), "data": record,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "command": "taugate reproduce-lm --config config.json",
            "executor": executor.describe()}  # fmt: skip
    atomic_write_json(out / MARKER, meta)
    rows: list[dict] = []
    overlap: list[dict] = []

    def finished(res) -> None:  # results rewritten after every seed, as they come
        rows.extend(res.rows)
        overlap.extend(res.overlap)
        write_lm_results(out, rows, overlap, record, cfg.unit_share)

    if executor.kind == "ray":
        _on_ray(cfg, data, out, executor, finished, task_hook)
    else:
        for seed in range(cfg.seed0, cfg.seed0 + cfg.seeds):
            finished(run_lm_seed(cfg, seed, data, out, quiet))
    elapsed = time.perf_counter() - t0
    meta["timing"] = {"total_seconds": round(elapsed, 3)}
    atomic_write_json(out / MARKER, meta)
    return {"out": str(out), "rows": rows, "overlap": overlap, "seconds": elapsed, "data": record}


def config_from_file(path: str | Path) -> LMStudyConfig:
    """The LMStudyConfig saved in a run's ``config.json`` (or a bare config dict)."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
        return LMStudyConfig.from_dict(dict(raw.get("config", raw)))
    except FileNotFoundError:
        raise TauGateError(f"config file {p} does not exist") from None
    except IsADirectoryError:
        raise TauGateError(f"config file {p} is a directory") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise TauGateError(f"{p}: not a reproduce-lm config.json ({e})") from None


def _on_ray(cfg: LMStudyConfig, data, out: Path, executor, finished, hook) -> None:
    from taugate.lm.checkpoint import save_gpt
    from taugate.reproduce import ray_run
    from taugate.reproduce_lm.study import lm_seed_result, lm_specs, save_lm_adapted

    def arrived(seed: int, base, f_seconds: float, adapted: list) -> None:
        if cfg.save_models:
            save_gpt(base, out / "models" / f"seed{seed}" / "foundation")
            for a in adapted:
                save_lm_adapted(a, cfg, seed, out)
        finished(lm_seed_result(cfg, seed, data, adapted, f_seconds))

    ray_run.run_seeds(cfg, data, lm_specs(cfg), executor, arrived, hook=hook,
                      foundation_fn=lm_foundation, adapt_fn=lm_adapt)  # fmt: skip


def lm_foundation(cfg: LMStudyConfig, seed: int, data):
    """The language study's foundation of one seed and its training seconds (a Ray task)."""
    from taugate.reproduce_lm.study import train_foundation

    model, hist = train_foundation(cfg, seed, data, True)
    return model, hist["seconds"]


def lm_adapt(cfg: LMStudyConfig, seed: int, data, model, name: str, mode: str, f_seconds: float):
    from taugate.reproduce_lm.study import adapt_lm

    return adapt_lm(cfg, seed, data, model, name, mode, True, f_seconds)
