"""``taugate bank`` (checkpoints -> bank) and ``taugate predict BANK --mode NAME``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from taugate.cli import main
from taugate.nn import build_method, save_checkpoint
from taugate.runtime import random_model

try:
    from bank_helpers import foundation, mode_model, torch_hard
except ImportError:  # tests/ imported as a package
    from tests.bank_helpers import foundation, mode_model, torch_hard

SIZES = [10, 9, 7, 4]


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    base = foundation(SIZES, seed=3)
    models = {
        n: mode_model(base, [0, 1], ["neg", "pos"], ["signed", "near1"], rng)
        for n in ("deg0", "deg45")
    }
    ckpts = {}
    for (name, m), angle in zip(models.items(), (0.0, 45.0), strict=True):
        prov = {"dataset": "digits", "target_angle": angle, "seed": 0}
        ckpts[name] = save_checkpoint(
            m, tmp_path / f"{name}.safetensors", sizes=SIZES, method="taugate", provenance=prov
        )
    x = rng.standard_normal((30, SIZES[0])).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return models, ckpts, tmp_path / "x.npy", x


def _bank(tmp_path, ckpts, *extra):
    out = tmp_path / "m.taugate-bank"
    args = [f"{n}={p}" for n, p in ckpts.items()]
    return out, main(["bank", *args, "--out", str(out), "-q", *map(str, extra)])


def test_bank_then_predict_each_mode(files, tmp_path, capsys):
    models, ckpts, calib, x = files
    out, rc = _bank(tmp_path, ckpts, "--calib-data", calib)
    assert rc == 0
    text = capsys.readouterr().out
    assert f"wrote {out}: modes deg0, deg45; units kept per hidden layer" in text
    assert "mode deg45: max |logit diff| vs the hard-gated torch model" in text
    m = json.loads((out / "manifest.json").read_text())
    assert m["provenance"]["deg45"]["checkpoint"] == str(ckpts["deg45"])
    assert m["provenance"]["deg45"]["target_angle"] == 45.0
    assert m["build"]["calibration"] == {"file": str(calib), "size": 30}
    for name, model in models.items():
        y = tmp_path / f"{name}.npy"
        assert (
            main(
                [
                    "predict",
                    str(out),
                    "--mode",
                    name,
                    "--input",
                    str(calib),
                    "--output",
                    str(y),
                    "--backend",
                    "rowskip",
                ]
            )
            == 0
        )
        np.testing.assert_allclose(np.load(y), torch_hard(model, x), atol=1e-5)
    assert "active share per hidden layer" in capsys.readouterr().out
    out2, rc = _bank(tmp_path, ckpts, "--no-calib", "--force")
    assert rc == 0 and json.loads((out2 / "manifest.json").read_text())["build"]["calibration"]


def test_mode_flag_errors_are_one_line(files, tmp_path, capsys):
    _, ckpts, calib, _ = files
    out, rc = _bank(tmp_path, ckpts, "--no-calib")
    art = tmp_path / "plain.taugate"
    random_model([SIZES[0], 5, 3], 0.5).save(art)
    y = str(tmp_path / "y.npy")
    capsys.readouterr()
    cases = [
        ([str(out)], "is a mode bank; pass --mode NAME (one of: deg0, deg45)"),
        ([str(out), "--mode", "deg90"], "unknown mode 'deg90' (this bank has: deg0, deg45)"),
        ([str(art), "--mode", "deg0"], "--mode applies to a mode bank (NAME.taugate-bank)"),
        ([str(out), "--mode", "deg0", "--backend", "dense"], "not available for a mode bank"),
    ]
    for args, text in cases:
        assert main(["predict", *args, "--input", str(calib), "--output", y, "--force"]) == 2
        err = capsys.readouterr().err
        assert text in err and err.count("\n") == 1, err
    assert main(["predict", str(art), "--input", str(calib), "--output", y, "--force"]) == 0


def test_bank_command_refuses_bad_input(files, tmp_path, capsys):
    _, ckpts, _, _ = files
    lora = build_method(foundation(SIZES, seed=3), "lora")  # the fixture's foundation
    with torch.no_grad():
        lora[0].lora_B.normal_()
    save_checkpoint(lora, tmp_path / "lora.safetensors", sizes=SIZES, method="lora")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    cases = [
        ([f"a={ckpts['deg0']}", f"a={ckpts['deg45']}"], "mode 'a' is given more than once"),
        (
            [f"a={ckpts['deg0']}", f"l={tmp_path / 'lora.safetensors'}"],
            "mode 'l' layer 0: weight (max |diff|",
        ),
        (
            [f"a={ckpts['deg0']}", "--out", str(foreign)],
            "holding files that are not part of a mode bank",
        ),
        ([f"a.b={ckpts['deg0']}"], "mode name 'a.b' must be"),
    ]
    for args, text in cases:
        if "--out" not in args:
            args = [*args, "--out", str(tmp_path / "x.taugate-bank")]
        assert main(["bank", *args, "--no-calib"]) == 2
        err = capsys.readouterr().err
        assert text in err and err.count("\n") == 1, err
    with pytest.raises(SystemExit):
        main(["bank", "just-a-path", "--out", str(tmp_path / "y")])
    assert "expected NAME=CHECKPOINT" in capsys.readouterr().err
