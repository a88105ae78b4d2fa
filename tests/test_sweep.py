"""`taugate sweep`: outputs, resume after an interrupt, refusing a different sweep, bad input."""

import csv
import json

import pytest

from taugate.cli import main
from taugate.errors import TauGateError
from taugate.sweep import cells as cell_mod
from taugate.sweep.config import SweepConfig
from taugate.sweep.run import run_sweep

BACKENDS = ("torch", "torch-soft", "torch-hard", "onnxruntime", "dense", "compact", "rowskip",
            "scipy-sparse")  # fmt: skip
TINY = dict(dataset="digits", widths=(12,), lambdas=(0.0, 0.05), seeds=2, batch_sizes=(1, 3),
            rounds=3, foundation_epochs=6, limit_test=120, paper_steps=False,
            backends=BACKENDS)  # fmt: skip
DETERMINISTIC = ("width", "lambda", "seed", "backend", "batch", "acc_0_soft", "acc_angle_soft", "acc_0_hard",
                 "acc_angle_hard", "acc_0_compiled", "acc_angle_compiled", "active_L1", "active_L2",
                 "units_kept")  # fmt: skip


def _table(out):
    with open(out / "sweep.csv") as f:
        return sorted(tuple(r[k] for k in DETERMINISTIC) for r in csv.DictReader(f))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    rows = run_sweep(SweepConfig.from_flat(**TINY, sample_seconds=0.0005), out, quiet=True)
    return out, rows


def test_outputs(full_run):
    out, rows = full_run
    assert len(rows) == 2 * 2 * len(BACKENDS) * 2  # lambdas x seeds x backends x batch sizes
    for rel in ("sweep.csv", "sweep.json", "summary.md", "sweep_config.json", "figures/pareto.png",
                "figures/pareto.pdf", "figures/speedup_vs_active.png", "figures/latency_vs_batch.pdf"):  # fmt: skip
        assert (out / rel).stat().st_size > 0, rel
    data = json.loads((out / "sweep.json").read_text())
    assert {"cpu", "cores", "threads", "numba_threading_layer", "blas", "versions"} <= set(
        data["machine"]
    )
    assert len(list((out / "cells").glob("*.json"))) == 4
    assert len(list((out / "artifacts").glob("*.taugate"))) == 4
    assert len(list((out / "foundations").glob("*.safetensors"))) == 2  # one per seed, reused
    r = rows[0]
    assert 0 <= r["active_mean"] <= 1 and r["work_cap"] >= 1 and r["median_ms"] > 0
    assert {row["backend"] for row in rows} == set(BACKENDS)
    assert "±" in (out / "summary.md").read_text()


def test_hard_and_compiled_accuracy_agree(full_run):
    _, rows = full_run
    for r in rows:  # compaction removes only units that never fired on the calibration data
        assert abs(r["acc_angle_hard"] - r["acc_angle_compiled"]) <= 0.02


def test_interrupted_sweep_resumes_to_the_same_table(full_run, tmp_path, monkeypatch):
    out = tmp_path / "interrupted"
    cfg = SweepConfig.from_flat(**TINY, sample_seconds=0.0005)
    real_run = cell_mod.CellRunner.run
    calls = []

    def flaky(self, *a):
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the third cell
        calls.append(a)
        return real_run(self, *a)

    monkeypatch.setattr(cell_mod.CellRunner, "run", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, out, quiet=True)
    assert len(list((out / "cells").glob("*.json"))) == 2  # only finished cells, each complete
    assert not list(out.rglob("*.tmp")) and not (out / "sweep.csv").exists()
    calls.clear()
    monkeypatch.setattr(
        cell_mod.CellRunner, "run", lambda self, *a: calls.append(a) or real_run(self, *a)
    )
    run_sweep(cfg, out, quiet=True)
    assert len(calls) == 2  # only the two unfinished cells ran again
    assert _table(out) == _table(full_run[0])


def test_rerun_with_same_arguments_skips_everything(full_run, monkeypatch):
    out, _ = full_run
    monkeypatch.setattr(cell_mod.CellRunner, "run", lambda *a: pytest.fail("cell recomputed"))
    run_sweep(SweepConfig.from_flat(**TINY, sample_seconds=0.0005), out, quiet=True)


def test_different_arguments_are_refused_unless_resume_or_force(full_run, tmp_path, monkeypatch):
    out, _ = full_run
    changed = SweepConfig.from_flat(**{**TINY, "lambdas": (0.0, 0.05, 0.1)}, sample_seconds=0.0005)
    with pytest.raises(TauGateError, match=r"different arguments \(lambdas\).*--resume.*--force"):
        run_sweep(changed, out, quiet=True)
    calls = []
    real_run = cell_mod.CellRunner.run
    monkeypatch.setattr(
        cell_mod.CellRunner, "run", lambda self, *a: calls.append(a) or real_run(self, *a)
    )
    rows = run_sweep(changed, out, resume=True, quiet=True)
    assert sorted(c[2] for c in calls) == [0.1, 0.1]  # only the new lambda, for both seeds
    assert {r["lambda"] for r in rows} == {0.0, 0.05, 0.1}


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"lambdas": ()}, "lambda list is empty"),
        ({"lambdas": (0.1, -1e-3)}, "lambda must be a finite number >= 0"),
        ({"widths": (0,)}, "every width must be >= 1"),
        ({"batch_sizes": (1, 0)}, "every batch size must be >= 1"),
        ({"backends": ("torch", "tpu")}, "unknown backend 'tpu'"),
    ],
)
def test_config_errors(kw, message):
    with pytest.raises(TauGateError, match=message):
        SweepConfig.from_flat(**kw)


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--lambdas", "", "comma-separated list"),
        ("--lambdas", "0,,1e-3", "comma-separated list"),
        ("--lambdas", "0,abc", "'abc' is not a number"),
        ("--lambdas", "0,-1e-3", "lambda must be a finite number >= 0"),
        ("--widths", "128,0", "--widths must be >= 1"),
        ("--batch-sizes", "0", "--batch-sizes must be >= 1"),
    ],
)
def test_cli_errors(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--out", str(tmp_path), flag, value])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_timing_tolerates_a_module_that_compaction_changed():
    """torch-hard is the trained module; after compaction the artifact may differ from it on inputs
    where a calibration-dead unit fires. That is reported as accuracy, not refused as a mismatch."""
    import numpy as np
    import torch

    from taugate.bench.run import bench_model
    from taugate.bench.timing import TimingConfig
    from taugate.compile import compile_model
    from taugate.nn import MLP, build_method, gates
    from taugate.runtime import CompiledModel

    torch.manual_seed(0)
    module = build_method(MLP([6, 8, 3]), "taugate").eval()
    with torch.no_grad():  # unit 0: z = sum(x) > 2 never holds on the negative calibration inputs
        module[0].weight[0].fill_(1.0)
        module[0].bias[0] = 0.0
        gates(module)[0][1].tau[0] = 2.0
        module[2].weight[:, 0] = 5.0
    calib = -np.abs(np.random.default_rng(0).normal(size=(50, 6))).astype(np.float32)
    spec, _ = compile_model(module, calib)
    compiled = CompiledModel(spec)
    assert 0 not in spec.kept_units[0]
    x = np.abs(np.random.default_rng(1).normal(size=(20, 6))).astype(np.float32) * 3  # unit 0 fires
    rows, _ = bench_model(compiled, x, (1, 4), ("torch", "torch-hard", "dense", "rowskip"),
                          timing=TimingConfig(rounds=3, sample_seconds=0.0005), module=module)  # fmt: skip
    assert {r["backend"] for r in rows} == {"torch", "torch-hard", "dense", "rowskip"}


def test_force_recomputes_every_cell(tmp_path, monkeypatch):
    cfg = SweepConfig.from_flat(
        **{**TINY, "seeds": 1, "lambdas": (0.0,), "batch_sizes": (1,)}, sample_seconds=0.0005
    )
    run_sweep(cfg, tmp_path, quiet=True)
    calls = []
    real_run = cell_mod.CellRunner.run
    monkeypatch.setattr(
        cell_mod.CellRunner, "run", lambda self, *a: calls.append(a) or real_run(self, *a)
    )
    run_sweep(cfg, tmp_path, quiet=True)
    assert calls == []  # same arguments: resumed, nothing recomputed
    run_sweep(cfg, tmp_path, force=True, quiet=True)
    assert len(calls) == 1  # --force: started over even with the same arguments
