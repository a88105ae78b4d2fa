"""``taugate bench-bank``: the switch-cost and mixed-batch measurement of a mode bank, printed and
written as JSON (figures are checked for sense, never for speed)."""

from __future__ import annotations

import json
import math

from taugate.cli import main

try:
    from test_bank_cli import _bank, files  # noqa: F401  (the fixture)
except ImportError:  # tests/ imported as a package
    from tests.test_bank_cli import _bank, files  # noqa: F401


def test_bench_bank_prints_and_writes_the_figures(files, tmp_path, capsys):  # noqa: F811
    _, ckpts, calib, _ = files
    bank, rc = _bank(tmp_path, ckpts, "--calib-data", calib)
    assert rc == 0
    capsys.readouterr()
    out = tmp_path / "cost.json"
    assert (
        main(["bench-bank", str(bank), "--batch", "6", "--repeats", "3", "--json", str(out)]) == 0
    )
    text = capsys.readouterr().out
    assert "switch mode, batch 1" in text and "2 separate calls, one per mode" in text
    r = json.loads(out.read_text())
    assert r["written_by"] == "taugate bench-bank" and r["modes"] == ["deg0", "deg45"]
    for k in ("switch_us", "same_mode_us", "reload_us", "mixed_batch_us", "separate_calls_us"):
        assert math.isfinite(r[k]) and r[k] > 0, k
    assert r["max_abs_diff_mixed_vs_separate"] < 1e-4
    keep = tmp_path / "x.npy"  # someone else's file is kept unless --force
    before = keep.read_bytes()
    assert main(["bench-bank", str(bank), "--repeats", "1", "--json", str(keep)]) != 0
    err = capsys.readouterr().err
    assert "was not written by taugate bench-bank; refusing to overwrite" in err
    assert err.count("\n") == 1 and keep.read_bytes() == before


def test_bench_bank_on_a_language_model(tmp_path, capsys):
    import torch

    from taugate.lm.adapters import save_adapter
    from taugate.lm.checkpoint import save_gpt
    from taugate.lm.gpt import GPT, GPTConfig
    from taugate.lm.methods import build_lm_method

    torch.manual_seed(0)
    base = GPT(GPTConfig(n_layer=2, n_head=2, d_model=32, d_ffn=64, block_size=80))
    save_gpt(base, tmp_path / "base")
    for k, name in enumerate(("code", "prose")):
        gated = build_lm_method(base, "taugate")
        with torch.no_grad():
            for p in gated.parameters():
                if p.requires_grad:
                    p.add_(0.1 * (k + 1) * torch.randn_like(p))
        save_adapter(gated, tmp_path / name)
    out = tmp_path / "lm.json"
    argv = ["bench-bank", str(tmp_path / "base"), "--adapter", f"code={tmp_path / 'code'}",
            "--adapter", f"prose={tmp_path / 'prose'}", "--repeats", "2", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "mixed-mode decode step of 2 rows" in capsys.readouterr().out
    r = json.loads(out.read_text())
    for k in ("switch_us", "load_adapter_us", "mixed_step_us", "single_steps_us"):
        assert math.isfinite(r[k]) and r[k] > 0, k
    assert r["modes"] == ["code", "prose"] and r["max_abs_diff_mixed_vs_single"] < 1e-4
    bare = ["bench-bank", str(tmp_path / "base"), "--adapter", str(tmp_path / "code")]
    assert main(bare) != 0
    assert "--adapter must be NAME=DIR" in capsys.readouterr().err
