"""``taugate bench-lm``: decode timing of dense / hard-gated / compiled models, the caps it reports,
random models at a chosen active share, trained models from disk (own GPT and Hugging Face)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from taugate.bench.timing import TimingConfig
from taugate.cli import main
from taugate.errors import TauGateError
from taugate.lm.adapters import save_adapter
from taugate.lm.bench import PATHS, bench_lm, decode_step
from taugate.lm.checkpoint import load_lm, save_gpt
from taugate.lm.synthetic import random_lm
from taugate.nn import TauGateConfig, apply_taugate_

try:
    from lm_helpers import tiny_llama
except ImportError:  # tests/ imported as a package
    from tests.lm_helpers import tiny_llama

FAST = TimingConfig(rounds=3, sample_seconds=0.0005, cooldown_seconds=0.0)
SMALL = dict(d_model=32, d_ffn=64, n_layer=2, block_size=64)


@pytest.mark.parametrize("activation", ["relu", "swiglu"])
def test_random_model_fires_at_the_target_share_and_bench_reports_every_path(activation):
    base, gated, calib = random_lm(activation=activation, active=0.3, **SMALL)
    rows, info = bench_lm(base, gated, calib, batch_sizes=(1, 2), prompt_len=8, timing=FAST)
    assert {(r["path"], r["batch"]) for r in rows} >= {(p, b) for p in PATHS for b in (1, 2)}
    assert all(r["median_ms"] > 0 for r in rows)
    for b in (1, 2):
        s = info["batches"][b]
        assert s["max_abs_diff"] < 1e-3  # compiled == hard-gated, checked before timing
        assert (
            0 < s["ffn_share"] < 1
            and s["ffn_work_cap"] > 1
            and 1 < s["e2e_cap"] < s["ffn_work_cap"]
        )
        assert s["active_share"] == pytest.approx([0.3, 0.3], abs=0.2)  # on the bench's own prompt
        for k in ("speedup", "ffn_speedup", "kernel_speedup", "kernel_cap_share", "e2e_cap_share"):
            assert math.isfinite(s[k]) and s[k] > 0
    glu = activation == "swiglu"
    want = (1 + 2 * 0.3) if glu else (1 + 0.3)  # needed MACs / (F d) at 30 % active: a rough cap
    assert info["batches"][1]["ffn_work_cap"] == pytest.approx((3 if glu else 2) / want, rel=0.35)


def test_decode_step_repeats_the_same_step_on_the_cache():
    base, _, _ = random_lm(activation="gelu", active=0.5, **SMALL)
    prompt = torch.randint(0, 256, (2, 6), generator=torch.Generator().manual_seed(0))
    step = decode_step(base, prompt)
    a, b = step(), step()
    torch.testing.assert_close(a, b)
    with torch.no_grad():
        logits, _ = base(prompt)
        full, _ = base(torch.cat([prompt, logits[:, -1].argmax(-1, keepdim=True)], 1))
    torch.testing.assert_close(
        a, full[:, -1], atol=1e-5, rtol=1e-5
    )  # the cached step = a full pass


def test_cli_on_random_models_writes_json(tmp_path, capsys):
    out = tmp_path / "lm.json"
    args = ["bench-lm", "--random", "--d-model", "32", "--ffn", "64", "--layers", "2", "--activation",
            "silu", "--active", "0.2,0.5", "--batch-sizes", "1", "--prompt-len", "8", "--rounds", "3",
            "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "FFN work cap" in text and "compiled" in text and "ffn-kernel-skip" in text
    data = json.loads(out.read_text())
    assert data["written_by"] == "taugate bench-lm" and len(data["runs"]) == 2
    assert main(args) == 0  # its own file: replaced
    (tmp_path / "mine.json").write_text("{}")
    assert main([*args[:-1], str(tmp_path / "mine.json")]) == 2
    assert "--force" in capsys.readouterr().err


def test_cli_errors(capsys):
    assert main(["bench-lm"]) == 2
    assert "either MODEL or --random" in capsys.readouterr().err
    assert (
        main(["bench-lm", "--random", "--activation", "tanh", "--d-model", "16", "--ffn", "8"]) == 2
    )
    assert "activation" in capsys.readouterr().err


def test_trained_own_gpt_and_adapter_from_disk(tmp_path, capsys):
    base, gated, _ = random_lm(activation="relu", active=0.3, **SMALL)
    save_gpt(base, tmp_path / "base")
    save_adapter(gated, tmp_path / "adapter")
    again = load_lm(tmp_path / "base")
    ids = torch.randint(0, 256, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(again(ids)[0], base(ids)[0])
    args = ["bench-lm", str(tmp_path / "base"), "--adapter", str(tmp_path / "adapter"), "--corpus",
            "prose", "--batch-sizes", "1", "--prompt-len", "8", "--rounds", "3"]  # fmt: skip
    assert main(args) == 0
    assert "FFN units kept per block" in capsys.readouterr().out
    assert main(["bench-lm", str(tmp_path / "base"), "--rounds", "3"]) == 2
    assert "--adapter" in capsys.readouterr().err
    with pytest.raises(TauGateError, match="not a TauGate GPT checkpoint"):
        save_gpt(base, tmp_path / "adapter")  # a folder of something else is not overwritten


def test_hugging_face_model_decode_and_bench(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = tiny_llama(tmp_path)
    gated = copy.deepcopy(base)
    apply_taugate_(gated, TauGateConfig())
    with torch.no_grad():
        for m in gated.modules():
            if hasattr(m, "tau") and hasattr(m, "gamma"):
                m.tau.uniform_(-0.05, 0.05)
    calib = torch.randint(0, 64, (400,))
    rows, info = bench_lm(base, gated, calib, batch_sizes=(1,), prompt_len=6, timing=FAST)
    assert {r["path"] for r in rows} >= set(PATHS) and info["batches"][1]["max_abs_diff"] < 1e-3
    again = load_lm(tmp_path / "llama-0")  # a Hugging Face directory
    assert type(again).__name__ == "LlamaForCausalLM"


def test_units_dropped_by_compile_are_checked_against_the_compiled_arrays(capsys):
    """Calibrated on one repeated byte, compile drops units that random prompts then open: the
    compiled logits then differ from the hard-gated model's, and bench-lm checks the kernel
    against the compiled arrays in torch math instead (and says so)."""
    from taugate.lm.report import print_lm_bench

    base, gated, _ = random_lm(activation="relu", active=0.3, **SMALL)
    calib = torch.full((200,), 65)  # "AAAA...": few units fire
    text = torch.randint(0, 256, (500,))
    rows, info = bench_lm(base, gated, calib, batch_sizes=(1,), prompt_len=8, timing=FAST,
                          prompt_tokens=text)  # fmt: skip
    b = info["batches"][1]
    kept = [x["units_kept"] for x in info["compile"]["blocks"]]
    assert min(kept) < SMALL["d_ffn"]
    assert b["reference"] == "compiled arrays in torch" and b["max_abs_diff"] < 1e-3
    assert b["max_abs_diff_vs_hard"] > 1e-3
    print_lm_bench("x", rows, info)
    assert "units that compile dropped" in capsys.readouterr().out
    with pytest.raises(TauGateError, match="prompt text has 5 tokens; a prompt needs 8"):
        bench_lm(base, gated, calib, batch_sizes=(1,), prompt_len=8, timing=FAST,
                 prompt_tokens=text[:5])  # fmt: skip
