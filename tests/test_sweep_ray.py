"""`--executor ray` on a local Ray of 2 CPUs: `sweep`, `reproduce` and `reproduce-lm` give the
same deterministic tables as locally, a worker that dies is retried, an interrupted driver leaves
complete files and a rerun resumes, and a missing Ray or a failing task are one-line errors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from taugate.errors import TauGateError
from taugate.executor import ExecutorConfig, ray_session
from taugate.sweep import cells as cell_mod
from taugate.sweep.config import SweepConfig
from taugate.sweep.run import run_sweep

ray = pytest.importorskip("ray")  # make test installs the [ray] extra: never skipped in CI

TINY = dict(dataset="digits", widths=(12,), lambdas=(0.0, 0.05), seeds=2, batch_sizes=(1, 3),
            rounds=3, foundation_epochs=6, limit_test=120, paper_steps=False,
            backends=("compact", "rowskip", "torch-hard"), sample_seconds=0.0005)  # fmt: skip
DETERMINISTIC = ("width", "lambda", "seed", "backend", "batch", "acc_0_soft", "acc_angle_soft",
                 "acc_0_hard", "acc_angle_hard", "acc_0_compiled", "acc_angle_compiled",
                 "active_L1", "active_L2", "units_kept")  # fmt: skip
RAY = ExecutorConfig("ray", workers=2)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray of 2 CPUs for the module (each sweep joins it instead of starting one); the
    hooks below travel to the workers by value."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_table(tmp_path_factory):
    rows = run_sweep(SweepConfig.from_flat(**TINY), tmp_path_factory.mktemp("local"), quiet=True)
    return _table(rows)


def _table(rows):
    return [tuple(r[k] for k in DETERMINISTIC) for r in rows]


def _cells(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "cells").glob("*.json"))


class CrashOnce:
    """A task hook: the first cell task to start kills its worker process (as an OOM kill or a
    segfault would); every later one, and the retry, runs normally."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self, kind, *where) -> None:
        if kind in ("cell", "adapt") and not self.marker.exists():
            self.marker.write_text(" ".join(map(str, where)))
            os._exit(1)


class Count:
    """A task hook that leaves one file per task it sees (tasks run in other processes)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, kind, width, seed, lam) -> None:
        (self.folder / f"{kind}-{width}-{seed}-{lam}-{os.getpid()}").touch()


def test_a_ray_sweep_gives_the_local_table(local_ray, local_table, tmp_path):
    out = tmp_path / "ray"
    rows = run_sweep(SweepConfig.from_flat(**TINY), out, quiet=True, executor=RAY)
    assert _table(rows) == local_table
    assert {r["trained_on"] for r in rows} == {r["timed_on"] for r in rows} == {os.uname().nodename}
    assert len(_cells(out)) == 4 and len(list((out / "foundations").iterdir())) == 2
    assert len(list((out / "artifacts").glob("*.taugate"))) == 4
    assert not list(out.rglob("*.tmp"))
    summary = (out / "summary.md").read_text()
    assert "executor: kind ray" in summary and "train_seconds" in summary


def test_a_worker_that_dies_is_retried_and_the_table_is_the_same(local_ray, local_table, tmp_path):
    marker = tmp_path / "crashed"
    rows = run_sweep(SweepConfig.from_flat(**TINY), tmp_path / "out", quiet=True, executor=RAY,
                     task_hook=CrashOnce(marker))  # fmt: skip
    assert marker.exists()  # a worker did die
    assert _table(rows) == local_table


def test_an_interrupted_driver_leaves_complete_files_and_a_rerun_resumes(
    local_ray, local_table, tmp_path, monkeypatch
):
    out, seen = tmp_path / "out", tmp_path / "tasks"
    seen.mkdir()
    real_time = cell_mod.CellRunner.time
    timed = []

    def interrupted(self, trained):
        if len(timed) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the third cell is timed
        timed.append(trained.name)
        return real_time(self, trained)

    monkeypatch.setattr(cell_mod.CellRunner, "time", interrupted)
    cfg = SweepConfig.from_flat(**TINY)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, out, quiet=True, executor=RAY, task_hook=Count(seen))
    assert len(_cells(out)) == 2  # the finished cells, each complete
    assert not list(out.rglob("*.tmp")) and not (out / "sweep.csv").exists()
    monkeypatch.setattr(cell_mod.CellRunner, "time", real_time)
    for f in seen.iterdir():
        f.unlink()
    rows = run_sweep(cfg, out, quiet=True, executor=RAY, task_hook=Count(seen))
    assert _table(rows) == local_table
    tasks = sorted(f.name.split("-")[0] for f in seen.iterdir())
    assert tasks == ["cell", "cell"]  # only the two unfinished cells; the foundations were on disk


class Fail:
    def __call__(self, kind, width, seed, lam) -> None:
        if kind == "cell":
            raise ValueError("bad cell")


def test_a_task_that_raises_is_a_one_line_error(local_ray, tmp_path):
    with pytest.raises(TauGateError) as e:
        run_sweep(SweepConfig.from_flat(**TINY), tmp_path / "out", quiet=True, executor=RAY,
                  task_hook=Fail())  # fmt: skip
    assert str(e.value) == "a sweep task failed on Ray: ValueError: bad cell"
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_missing_ray_and_bad_executor_flags_are_one_line_errors(monkeypatch, capsys):
    from taugate.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    with pytest.raises(TauGateError, match=r"needs ray, which is not installed: pip install "
                                           r"'taugate\[ray\]'"):  # fmt: skip
        with ray_session(RAY):
            pass
    for argv, msg in ((["--workers", "2"], "--workers needs --executor ray"),
                      (["--task-threads", "1"], "--task-threads needs --executor ray"),
                      (["--ray-address", "auto"], "--ray-address needs --executor ray"),
                      (["--executor", "ray", "--ray-address", "auto", "--workers", "2"],
                       "--workers sizes a Ray started here")):  # fmt: skip
        assert main(["sweep", "--out", "unused", *argv]) == 2
        assert msg in capsys.readouterr().err
    with pytest.raises(TauGateError, match="executor must be one of local, ray"):
        ExecutorConfig("dask")


REPRO = dict(dataset="digits", seeds=2, foundation_epochs=6, adapt_epochs=1, limit_test=120,
             paper_steps=False, device="cpu")  # fmt: skip
STUDY = ("method", "seed", "acc_0", "acc_angle", "hard_acc_0", "hard_acc_angle", "high_act_frac",
         "trainable_params")  # fmt: skip


def test_reproduce_on_ray_gives_the_local_tables_even_when_a_worker_dies(local_ray, tmp_path):
    from taugate.configs import ReproduceConfig
    from taugate.reproduce import reproduce

    cfg = ReproduceConfig(**REPRO)
    here = reproduce(cfg, tmp_path / "local", quiet=True)
    marker = tmp_path / "crashed"
    there = reproduce(cfg, tmp_path / "ray", quiet=True, executor=RAY, task_hook=CrashOnce(marker))
    assert marker.exists()
    assert [tuple(r.get(k) for k in STUDY) for r in here["rows"]] == [
        tuple(r.get(k) for k in STUDY) for r in there["rows"]
    ]
    assert here["overlap"] == there["overlap"]
    for name in ("tables/main.md", "tables/overlap.md"):
        assert (tmp_path / "local" / name).read_text() == (tmp_path / "ray" / name).read_text()
    saved = sorted(p.name for p in (tmp_path / "ray" / "models" / "seed1").iterdir())
    assert saved == sorted(p.name for p in (tmp_path / "local" / "models" / "seed1").iterdir())
    assert "foundation.safetensors" in saved and "taugate-0deg.safetensors" in saved


def test_reproduce_lm_on_ray_gives_the_local_tables(local_ray, tmp_path):
    from taugate.reproduce_lm import reproduce_lm
    from taugate.reproduce_lm.config import LMStudyConfig

    cfg = LMStudyConfig.tiny(seeds=2)
    here = reproduce_lm(cfg, tmp_path / "local", quiet=True)
    there = reproduce_lm(cfg, tmp_path / "ray", quiet=True, executor=RAY)

    def same(rows):
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]

    assert same(here["rows"]) == same(there["rows"]) and here["overlap"] == there["overlap"]
    for name in ("main", "ablations", "overlap"):
        a, b = (p / "tables" / f"{name}.md" for p in (tmp_path / "local", tmp_path / "ray"))
        assert a.read_text() == b.read_text()
    saved = sorted(p.name for p in (tmp_path / "ray" / "models" / "seed1").iterdir())
    assert saved == sorted(p.name for p in (tmp_path / "local" / "models" / "seed1").iterdir())
