"""``taugate sweep``: TauGate trained at several lambdas (x seeds x widths), hardened, compiled, and
every inference backend timed at several batch sizes, with accuracy next to speed.

Layout of ``out``: ``sweep_config.json`` (the arguments; it marks the folder as a sweep's),
``foundations/`` (one per width x seed, reused across lambdas and reruns), ``cells/`` (one JSON per
width x seed x lambda, written atomically when the cell is finished: a rerun skips it),
``artifacts/`` (the compiled models), then ``sweep.csv``, ``sweep.json``, ``summary.md`` and
``figures/`` rebuilt from all finished cells.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from taugate.errors import TauGateError
from taugate.io import atomic_write_json, atomic_write_text, claim_output_dir, json_safe
from taugate.sweep.config import SweepConfig, differing_fields

MARKER = "sweep_config.json"
SUBDIRS = ("cells", "foundations", "artifacts", "figures")
FIRST_COLUMNS = ["width", "lambda", "seed", "backend", "batch", "acc_0_soft", "acc_angle_soft",
                 "acc_0_hard", "acc_angle_hard", "acc_0_compiled", "acc_angle_compiled",
                 "active_mean", "median_ms", "p25_ms", "p75_ms", "speedup_vs_torch",
                 "speedup_vs_dense", "work_cap", "cap_share"]  # fmt: skip


def _is_sweep_config(d) -> bool:
    return isinstance(d, dict) and isinstance(d.get("config"), dict)


def prepare_out(cfg: SweepConfig, out: Path, resume: bool, force: bool) -> None:
    """Check ``out``: new, empty, or a sweep's folder (else refused unless ``force``). A sweep with
    the same arguments resumes; different ones need ``resume`` (reuse cells whose key still
    matches). ``force`` always starts over: it deletes ``cells/``, ``foundations/``,
    ``artifacts/`` and ``figures/`` in ``out`` and replaces the sweep's files."""
    prev = claim_output_dir(out, MARKER, "taugate sweep", _is_sweep_config, force=force)
    if force:
        for sub in SUBDIRS:
            shutil.rmtree(out / sub, ignore_errors=True)
    elif prev is not None and not resume:
        diff = differing_fields(prev["config"], cfg.to_dict())
        if diff:
            raise TauGateError(
                f"{out} holds a sweep with different arguments ({', '.join(diff)}); pass --resume "
                "to reuse its finished cells that still match, or --force to start over"
            )
    atomic_write_json(out / MARKER, {"config": cfg.to_dict()})


def cell_path(out: Path, width: int, seed: int, lam: float) -> Path:
    return out / "cells" / f"w{width}-s{seed}-l{lam:g}.json"


def load_cell(path: Path, key: str) -> list[dict] | None:
    """A finished cell's rows, or None if missing, unreadable or computed with other arguments."""
    try:
        cell = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cell["rows"] if isinstance(cell, dict) and cell.get("key") == key else None


def run_sweep(cfg, out, data_dir=None, resume=False, force=False, quiet=False, *, executor=None,
              task_hook=None) -> list[dict]:  # fmt: skip
    """Run (or finish) the sweep of ``cfg`` (a :class:`SweepConfig`, or
    :class:`taugate.sweep.lm.LMSweepConfig` for language models); returns all rows and writes
    every output file. ``executor`` (:class:`taugate.executor.ExecutorConfig`): ``local``
    (default) runs each cell here, start to end; ``ray`` trains the cells as Ray tasks and times
    them here afterwards (:mod:`taugate.sweep.ray_run`; ``task_hook`` runs at the start of each
    task, for fault-injection tests)."""
    from tqdm.auto import tqdm

    from taugate.bench.machine import machine_info
    from taugate.executor import ExecutorConfig

    executor = executor or ExecutorConfig()
    out = Path(out)
    prepare_out(cfg, out, resume, force)
    runner = cfg.runner(out, data_dir, quiet)  # the seam: each kind of sweep brings its cells
    done: dict[tuple, list[dict]] = {}
    todo = []
    for width, seed, lam in cfg.cells():
        rows = load_cell(cell_path(out, width, seed, lam), cfg.cell_key(width, seed, lam))
        if rows is None:
            todo.append((width, seed, lam))
        else:
            done[(width, seed, lam)] = rows

    def write(width: int, seed: int, lam: float, rows: list[dict]) -> None:
        atomic_write_json(cell_path(out, width, seed, lam),
                          {"key": cfg.cell_key(width, seed, lam), "width": width, "seed": seed,
                           "lambda": lam, "rows": rows})  # fmt: skip
        done[(width, seed, lam)] = rows

    bar = tqdm(total=len(todo), desc="sweep", unit="cell", disable=quiet)
    phases = {}
    if executor.kind == "ray":
        from taugate.sweep.ray_run import run_cells

        phases = run_cells(runner, todo, executor, write, hook=task_hook, bar=bar)
    else:
        for width, seed, lam in todo:
            bar.set_postfix(width=width, seed=seed, lam=f"{lam:g}")
            write(width, seed, lam, runner.run(width, seed, lam))
            bar.update(1)
    bar.close()
    rows = [r for cell in cfg.cells() for r in done[cell]]
    meta = {**machine_info(cfg.threads), "dataset": runner.provenance(), "config": cfg.to_dict(),
            "executor": {**executor.describe(), **phases}}  # fmt: skip
    cfg.write_outputs(out, rows, meta)
    return rows


def write_outputs(out: Path, rows: list[dict], meta: dict) -> None:
    """sweep.csv, sweep.json, summary.md and figures, each replaced atomically."""
    from taugate.configs import ReproduceConfig
    from taugate.sweep.figures import write_figures
    from taugate.sweep.summary import write_summary
    from taugate.tables import to_csv

    atomic_write_text(out / "sweep.csv", to_csv(rows, FIRST_COLUMNS))
    atomic_write_json(out / "sweep.json", {"machine": meta, "rows": json_safe(rows)})
    write_summary(out, rows, meta)
    write_figures(out, rows, paper_lambda=ReproduceConfig().sparsity)
