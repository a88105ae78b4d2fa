"""``taugate reproduce-lm``: the language study end to end on the tiny configuration (embedded text
and a local data dir), its outputs and records, and one-line errors for bad configurations."""

from __future__ import annotations

import csv
import gzip
import json
import math

import pytest

from taugate.cli import main
from taugate.errors import TauGateError
from taugate.reproduce_lm import LMStudyConfig, config_from_file, reproduce_lm
from taugate.reproduce_lm.config import STUDY_METHODS


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny study through the CLI, on the embedded corpora (no data dir)."""
    out = tmp_path_factory.mktemp("lm") / "study"
    mp = pytest.MonkeyPatch()
    mp.delenv("TAUGATE_DATA_DIR", raising=False)
    try:
        assert main(["reproduce-lm", "--tiny", "--out", str(out), "-q"]) == 0
    finally:
        mp.undo()
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    return out, rows


def test_every_method_is_specialised_and_reported(tiny_run):
    out, rows = tiny_run
    cfg = LMStudyConfig.tiny()
    assert [r["method"] for r in rows] == list(STUDY_METHODS)
    by = {r["method"]: r for r in rows}
    units = cfg.n_layer * cfg.d_ffn
    assert int(by["frozen"]["params"]) == 0
    assert int(by["taugate"]["params"]) == 2 * units  # tau and gamma per gated unit
    assert int(by["gainonly"]["params"]) == int(by["tauonly"]["params"]) == units
    lora = cfg.n_layer * cfg.lora_rank * 2 * (cfg.d_model + cfg.d_ffn)  # up and down, A and B
    assert int(by["lora"]["params"]) == lora
    for r in rows:
        assert r["target"] == "code" and r["other"] == "prose"
        for k in ("bpb_target", "bpb_other"):
            assert 0.5 < float(r[k]) < 8.5, (r["method"], k, r[k])
    # training on code lowers bits per byte on code for the methods that train a lot of weights
    assert float(by["fullft"]["bpb_target"]) < float(by["frozen"]["bpb_target"])
    for m in ("taugate", "tauonly"):
        r = by[m]
        assert 0 < float(r["high_act_frac"]) < 1
        assert 0 < float(r["hard_active_L1"]) <= 1 and 0 < float(r["compiled_units_kept"]) <= 1
        # compiling drops only units that never fire on calibration text: the compiled model is
        # the hard-gated one up to such units
        assert abs(float(r["compiled_bpb_target"]) - float(r["hard_bpb_target"])) < 0.05


def test_outputs_tables_and_records(tiny_run):
    out, _ = tiny_run
    meta = json.loads((out / "config.json").read_text())
    assert meta["written_by"] == "taugate reproduce-lm"
    for mode in ("prose", "code"):
        rec = meta["data"]["modes"][mode]
        assert rec["source"].startswith("embedded:") and min(rec["bytes"].values()) > 0
    assert meta["timing"]["total_seconds"] > 0
    assert config_from_file(out / "config.json") == LMStudyConfig.tiny()
    for name in ("main", "ablations", "overlap"):
        assert (out / "tables" / f"{name}.md").read_text().count("|") > 10
        assert "\\begin{tabular}" in (out / "tables" / f"{name}.tex").read_text()
    assert "Full FT" in (out / "tables" / "main.md").read_text()
    with open(out / "overlap.csv") as f:
        overlap = list(csv.DictReader(f))
    assert [int(r["layer"]) for r in overlap] == [1, 2]
    assert all(0 <= float(r["jaccard"]) <= 1 for r in overlap)
    for f in ("figures/bits_per_byte.png", "figures/bits_per_byte.pdf",
              "models/seed0/foundation/model.safetensors",
              "models/seed0/taugate/adapter.safetensors",
              "models/seed0/on-prose/taugate/adapter.safetensors",
              "models/seed0/lora/adapter_model.safetensors"):  # fmt: skip
        assert (out / f).is_file(), f


def test_the_output_folder_is_claimed(tiny_run, tmp_path):
    out, _ = tiny_run
    with pytest.raises(TauGateError, match="already holds results.csv"):
        reproduce_lm(LMStudyConfig.tiny(), out, quiet=True)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(TauGateError, match="was not written by taugate reproduce-lm"):
        reproduce_lm(LMStudyConfig.tiny(), other, quiet=True)
    assert (other / "notes.txt").read_text() == "keep me"


def test_a_data_dir_is_used_and_recorded(tmp_path):
    text = tmp_path / "data" / "text"
    text.mkdir(parents=True)
    for name, word in (("python-docs.jsonl.gz", "the prose reads "),
                       ("python-stdlib.jsonl.gz", "def f(x): return x  # ")):  # fmt: skip
        with gzip.open(text / name, "wt", encoding="utf-8") as f:
            for i in range(12):
                f.write(json.dumps({"id": f"d{i}", "text": (word + str(i) + "\n") * 300}) + "\n")
    cfg = LMStudyConfig.tiny(methods=("frozen", "taugate"), overlap=False, compile=False,
                             save_models=False, foundation_steps=5, adapt_steps=2)  # fmt: skip
    res = reproduce_lm(cfg, tmp_path / "out", tmp_path / "data", quiet=True)
    rec = res["data"]["modes"]
    assert rec["code"]["source"] == f"data-dir:{text / 'python-stdlib.jsonl.gz'}"
    assert sum(rec["code"]["documents"].values()) == 12
    assert [r["method"] for r in res["rows"]] == ["frozen", "taugate"]
    assert all(math.isfinite(r["bpb_target"]) for r in res["rows"])
    assert not (tmp_path / "out" / "models").exists() and not res["overlap"]


@pytest.mark.parametrize("kw, match", [
    ({"modes": ("prose",)}, "modes must be two different text modes"),
    ({"modes": ("prose", "poems")}, "unknown text mode 'poems'"),
    ({"target": "quotes"}, "target must be one of modes"),
    ({"methods": ("taugate", "magic")}, "methods: each of"),
    ({"methods": ("lora", "lora")}, "methods: each of"),
    ({"d_model": 30, "n_head": 4}, "must be a multiple of n_head"),
    ({"adapt_steps": 0}, "adapt_steps must be a positive integer"),
    ({"sparsity": -1.0}, "sparsity must be a finite number >= 0"),
    ({"high_act": 1.5}, "high_act must be in \\(0, 1\\)"),
    ({"activation": "tanh"}, "activation"),
])  # fmt: skip
def test_bad_configurations_are_named(kw, match):
    with pytest.raises(TauGateError, match=match):
        LMStudyConfig(**kw)


def test_a_bad_config_file_is_named(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"config": {"modes": ["prose", "code"], "steps_typo": 3}}))
    with pytest.raises(TauGateError, match="unknown LMStudyConfig field\\(s\\): steps_typo"):
        config_from_file(p)
    with pytest.raises(TauGateError, match="does not exist"):
        config_from_file(tmp_path / "nope.json")
