"""``taugate reproduce``: every method x seed of the study, with results, tables, figure, models and
``config.json`` written under ``out`` (see :mod:`taugate.reproduce.study` for one seed)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from taugate.configs import ReproduceConfig
from taugate.errors import TauGateError
from taugate.io import atomic_write_json, claim_output_dir
from taugate.reproduce.results import write_results
from taugate.reproduce.study import load_study_data, run_seed

MARKER = "config.json"  # what makes a folder one that `taugate reproduce` wrote


def schedule_note(cfg: ReproduceConfig, prov: dict, schedule: dict) -> str | None:
    """The loud note printed when the SGD-step floor raised the epochs (None when it did not)."""
    if not schedule["raised"]:
        return None
    f, a = schedule["foundation"], schedule["adapt"]
    bar = "=" * 78
    return "\n".join([
        bar,
        f"taugate: NOTE: {prov.get('dataset')} has {schedule['n_train']:,} training images, the "
        f"paper's protocol {schedule['paper_images']:,}.",
        "  To train as many SGD steps per phase as the paper does (batch "
        f"{cfg.batch_size}), the epochs are raised:",
        f"    foundation: {f['asked_epochs']} -> {f['epochs']} epochs ({f['steps']} steps; "
        f"the paper: {f['paper_steps']})",
        f"    adaptation: {a['asked_epochs']} -> {a['epochs']} epochs ({a['steps']} steps; "
        f"the paper: {a['paper_steps']})",
        "  Recorded in config.json (schedule). --no-paper-steps trains the epochs as given.",
        bar,
    ])  # fmt: skip


def reproduce(cfg: ReproduceConfig, out: str | Path, data_dir=None, quiet: bool = False,
              force: bool = False, *, executor=None, task_hook=None) -> dict:  # fmt: skip
    """Run the whole study and write everything under ``out``; returns a summary dict.

    ``out`` must be new, empty, or a folder this command wrote (it holds its ``config.json``) and
    that has no ``results.csv`` yet; ``force`` writes into any folder, replacing only the files
    the study writes. ``executor`` (:class:`taugate.executor.ExecutorConfig`): ``local`` (the
    default) trains here seed after seed; ``ray`` trains a task per foundation and per (method,
    seed) on Ray (:mod:`taugate.reproduce.ray_run`; ``task_hook`` runs at each task's start)."""
    from taugate.executor import ExecutorConfig

    executor = executor or ExecutorConfig()
    from taugate.device import device_name, select_device

    out = Path(out)
    claim_output_dir(out, MARKER, "taugate reproduce", _is_reproduce_config, force=force)
    if (out / "results.csv").exists() and not force:
        raise TauGateError(f"{out} already holds results.csv; choose another --out or pass --force")
    device = select_device(cfg.device)
    t0 = time.perf_counter()
    data = load_study_data(cfg, data_dir, quiet)
    t_data = time.perf_counter() - t0
    schedule = cfg.schedule(len(data.y_train))
    note = schedule_note(cfg, data.provenance, schedule)
    if note:
        print(note, file=sys.stderr, flush=True)
    meta = {
        "config": cfg.to_dict(),
        "schedule": schedule,
        "data": data.provenance,
        "device": device_name(device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "command": "taugate reproduce --config config.json",
        "executor": executor.describe(),
    }
    atomic_write_json(out / MARKER, meta)
    rows: list[dict] = []
    overlap: list[dict] = []

    def finished(seed: int, res) -> None:  # results rewritten after every seed, as they come
        for row in res.rows:
            row.update(
                dataset=data.provenance.get("dataset"), source=data.provenance.get("source"),
                split=data.provenance.get("split"), angle=cfg.angle, device=device_name(device),
            )  # fmt: skip
        rows.extend(res.rows)
        overlap.extend(res.overlap)
        write_results(out, rows, overlap, cfg.angle, data.provenance, cfg.lora_rank)

    if executor.kind == "ray":
        from taugate.reproduce import ray_run
        from taugate.reproduce.study import adapt_specs, save_adapted, save_foundation, seed_result

        def arrived(seed: int, foundation, f_seconds: float, adapted: list) -> None:
            if cfg.save_models:
                save_foundation(foundation, cfg, seed, data, out)
                for a in adapted:
                    save_adapted(a, cfg, seed, data, out)
            finished(seed, seed_result(cfg, seed, data, adapted, f_seconds))

        ray_run.run_seeds(cfg, data, adapt_specs(cfg), executor, arrived, hook=task_hook,
                          foundation_fn=ray_run.mlp_foundation, adapt_fn=ray_run.mlp_adapt)  # fmt: skip
    else:
        for seed in range(cfg.seed0, cfg.seed0 + cfg.seeds):
            finished(seed, run_seed(cfg, seed, data, device, out, quiet))
    elapsed = time.perf_counter() - t0
    meta["timing"] = {"data_seconds": round(t_data, 3), "total_seconds": round(elapsed, 3)}
    atomic_write_json(out / MARKER, meta)
    return {"out": str(out), "rows": rows, "overlap": overlap, "seconds": elapsed,
            "data": data.provenance, "schedule": schedule, "note": note}  # fmt: skip


def _is_reproduce_config(meta) -> bool:
    return isinstance(meta, dict) and isinstance(meta.get("config"), dict) and "data" in meta


def config_from_file(path: str | Path) -> ReproduceConfig:
    """Rebuild the ReproduceConfig saved in a run's ``config.json``."""
    import json

    p = Path(path)
    try:
        raw = json.loads(p.read_text())
        d = dict(raw.get("config", raw))
        d["methods"], d["hidden"] = tuple(d["methods"]), tuple(d["hidden"])
        return ReproduceConfig(**d)
    except FileNotFoundError:
        raise TauGateError(f"config file {p} does not exist") from None
    except IsADirectoryError:
        raise TauGateError(f"config file {p} is a directory") from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise TauGateError(f"{p}: not a reproduce config.json ({e})") from None
