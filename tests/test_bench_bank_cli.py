"""``taugate bench-bank``: the switch-cost and mixed-batch measurement of a mode bank, printed and
written as JSON (figures are checked for sense, never for speed)."""

from __future__ import annotations

import json
import math

import pytest

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
    assert r["prompts"] == "text" and r["texts"]["code"]["mode"] == "code"
    assert "compiled" not in r
    bare = ["bench-bank", str(tmp_path / "base"), "--adapter", str(tmp_path / "code")]
    assert main(bare) != 0
    assert "--adapter must be NAME=DIR" in capsys.readouterr().err
    # --compiled: the same two decode steps on a compiled copy, beside the torch bank's
    comp = tmp_path / "lm-compiled.json"
    argv = [*argv[:-2], "--compiled", "--corpus", "code=prose", "--json", str(comp)]
    assert main(argv) == 0
    assert "| compiled bank |" in capsys.readouterr().out
    c = json.loads(comp.read_text())
    assert c["texts"]["code"]["mode"] == "prose" == c["texts"]["prose"]["mode"]
    cc = c["compiled"]
    for k in ("mixed_step_us", "single_steps_us", "torch_vs_compiled_mixed", "single_vs_mixed"):
        assert math.isfinite(cc[k]) and cc[k] > 0, k
    assert 0 < cc["active_share"] <= 1 and cc["max_abs_diff_kernel_vs_torch_math"] < 1e-4
    assert 0 < cc["units_kept"] <= cc["units_original"] == 2 * 64
    assert main([*argv[:-2], "--corpus", "zz=code"]) != 0
    assert "--corpus names mode 'zz', not one of the bank's: code, prose" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's own usage error
        main([*argv[:-2], "--corpus", "code=poems"])
    assert "expected NAME=TEXT with TEXT one of prose, code, quotes" in capsys.readouterr().err
    mlp = ["bench-bank", str(tmp_path / "nothing.taugate-bank"), "--compiled"]
    assert main(mlp) != 0
    assert "--compiled is for a language-model bank" in capsys.readouterr().err


def test_bench_bank_on_a_random_language_model_bank(tmp_path, capsys):
    out = tmp_path / "random.json"
    argv = ["bench-bank", "--random", "--d-model", "32", "--ffn", "64", "--layers", "2", "--modes",
            "3", "--batch", "5", "--repeats", "2", "--compiled", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "3 decode steps, one per mode on its rows" in text and "random prompts" in text
    r = json.loads(out.read_text())
    assert r["modes"] == ["m0", "m1", "m2"] and r["batch"] == 5 and r["prompts"] == "random ids"
    for res in (r, r["compiled"]):
        for k in ("mixed_step_us", "mode_groups_us", "single_steps_us", "groups_vs_mixed"):
            assert math.isfinite(res[k]) and res[k] > 0, k
    assert r["max_abs_diff_mixed_vs_groups"] < 1e-4
    for k in ("one_mode_step_us", "single_mode_model_step_us", "bank_vs_single_mode_model"):
        assert math.isfinite(r["compiled"][k]) and r["compiled"][k] > 0, k
    assert "the compiled bank / that mode compiled alone" in text
    assert 0.05 < r["compiled"]["active_share"] < 0.4  # about --active 0.2 on average
    for bad, msg in (
        (["bench-bank"], "give BANK, or --random"),
        (["bench-bank", "x.taugate-bank", "--random"], "give BANK, or --random"),
        ([*argv[:-2], "--active", "1.5"], "active must be a share in (0, 1]"),
    ):
        assert main(bad) != 0
        assert msg in capsys.readouterr().err
