"""``taugate sweep-lm``: the sweep machinery's language-model kind on the tiny GPT: every cell's
bits per byte, active share and side-by-side decode timings, the outputs, and resuming."""

from __future__ import annotations

import csv
import json

import pytest

from taugate.cli import main
from taugate.errors import TauGateError
from taugate.reproduce_lm.config import LMStudyConfig
from taugate.sweep.lm import LMSweepConfig


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm-sweep") / "s"
    mp = pytest.MonkeyPatch()
    mp.delenv("TAUGATE_DATA_DIR", raising=False)
    argv = ["sweep-lm", "--tiny", "--lambdas", "0,0.3", "--batch-sizes", "1,4", "--rounds", "3",
            "--out", str(out), "-q"]  # fmt: skip
    try:
        assert main(argv) == 0
    finally:
        mp.undo()
    with open(out / "sweep.csv") as f:
        return out, argv, list(csv.DictReader(f))


def test_every_cell_is_measured_and_timed_side_by_side(sweep):
    out, _, rows = sweep
    assert {(r["lambda"], r["batch"], r["path"]) for r in rows} == {
        (lam, b, p) for lam in ("0", "0.3") for b in ("1", "4")
        for p in ("torch", "torch-hard", "compiled", "torch-no-ffn", "ffn-kernel-dense",
                  "ffn-kernel-skip")}  # fmt: skip
    by = {r["lambda"]: r for r in rows if r["path"] == "compiled" and r["batch"] == "1"}
    for r in by.values():
        assert r["width"] == "64" and 0.5 < float(r["bpb_target"]) < 8.5
        assert abs(float(r["compiled_bpb_target"]) - float(r["hard_bpb_target"])) < 0.05
        assert float(r["tokens_per_s"]) > 0 and float(r["speedup_vs_torch"]) > 0
    # a stronger sparsity penalty shuts more units
    assert float(by["0.3"]["active_mean"]) < float(by["0"]["active_mean"])
    summary = (out / "summary.md").read_text()
    assert "compiled tok/s (batch 4)" in summary and "| 64 | 0.3 |" in summary
    for b in (1, 4):
        assert (out / "figures" / f"bpb_vs_active_and_speed_b{b}.png").is_file()
    meta = json.loads((out / "sweep.json").read_text())["machine"]
    assert meta["config"]["kind"] == "lm" and "prose" in meta["dataset"]["modes"]
    assert len(list((out / "cells").glob("*.json"))) == 2
    assert (out / "foundations" / "w64-s0" / "model.safetensors").is_file()


def test_a_rerun_reuses_finished_cells(sweep, monkeypatch):
    out, argv, rows = sweep
    monkeypatch.delenv("TAUGATE_DATA_DIR", raising=False)
    import taugate.sweep.lm as lm

    def boom(*a, **k):
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr(lm.LMCellRunner, "run", boom)
    assert main(argv) == 0
    with open(out / "sweep.csv") as f:
        again = list(csv.DictReader(f))
    assert [r["bpb_target"] for r in again] == [r["bpb_target"] for r in rows]
    other = [*argv[:-3], "--adapt-steps", "3", "--out", str(out), "-q"]
    assert main(other) != 0  # other arguments: refused without --resume or --force


@pytest.mark.parametrize("kw, match", [
    ({"lambdas": ()}, "every lambda"), ({"lambdas": (0.1, 0.1)}, "repeats a value"),
    ({"widths": (0,)}, "every width"), ({"prompt_len": 500}, "prompt_len must be in"),
])  # fmt: skip
def test_bad_sweep_settings_are_named(kw, match):
    with pytest.raises(TauGateError, match=match):
        LMSweepConfig(study=LMStudyConfig.tiny(), **kw)
