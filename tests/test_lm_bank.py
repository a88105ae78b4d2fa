"""Language-model mode banks (taugate.lm.bank): one base + N TauGate adapters, switched per request.

What it shows on tiny random models: each row of a mixed-mode batch equals that mode's
single-mode model (the base with the adapter loaded by ``load_adapter_``), soft and hard, for the
own GPT (relu, gelu, swiglu) and OPT / Llama (saved with ``save_pretrained``: no network); greedy
and seeded sampling generation equal the single-mode model's; switching copies nothing and reads
no file (the adapters and the base are deleted after loading); ``from_models`` equals
``load_lm_bank``; every user error is one line; the ``taugate generate`` CLI; the cost smoke test.
"""

from __future__ import annotations

import importlib.util
import math
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taugate.cli import main
from taugate.errors import TauGateError
from taugate.lm.adapters import load_adapter_, save_adapter
from taugate.lm.bank import LMBank, load_lm_bank
from taugate.lm.bank_cost import lm_switch_cost
from taugate.lm.bank_gate import BankGate, Selection
from taugate.lm.checkpoint import load_lm, save_gpt
from taugate.lm.gpt import GPT, GPTConfig, decode, encode
from taugate.lm.methods import build_lm_method
from taugate.nn import TauGate, TauGateConfig, gates, harden_

needs_hf = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None, reason="transformers ([hf] extra) missing"
)
MODES = ("a", "b", "c")


def tiny_gpt(activation: str, seed: int = 0, d_ffn: int = 64) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(n_layer=2, n_head=2, d_model=32, d_ffn=d_ffn, activation=activation,
                    block_size=32)  # fmt: skip
    model = GPT(cfg)
    with torch.no_grad():  # larger weights than GPT's 0.02 init, so the FFNs matter
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5.0)
    return model.eval()


def random_gates(base, seed: int, target_modules: str | None = None):
    """A gated copy of ``base`` with random tau (some units shut) and gamma."""
    model = build_lm_method(base, "taugate", target_modules=target_modules)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, gate in gates(model):
            gate.tau.copy_(0.3 * torch.randn(gate.width, generator=g))
            gate.gamma.copy_(0.5 + torch.rand(gate.width, generator=g))
    return model.eval()


def on_disk(tmp_path, base, seed: int = 0):
    """The base saved (own GPT: save_gpt) and one random adapter per mode: (base dir, adapters)."""
    base_dir = tmp_path / "base"
    save_gpt(base, base_dir)
    adapters = {}
    for i, m in enumerate(MODES):
        adapters[m] = save_adapter(random_gates(base, 100 * seed + i), tmp_path / f"ad-{m}")
    return base_dir, adapters


def single(base_dir, path, hard: bool):
    """The single-mode reference: the base loaded fresh with the adapter (load_adapter_)."""
    model = load_lm(base_dir)
    load_adapter_(model, path)
    return harden_(model, hard).eval()


def logits_of(model, ids):
    with torch.no_grad():
        out = model(ids) if isinstance(model, GPT) else model(input_ids=ids)
    return out[0] if isinstance(out, tuple) else out.logits


def ids_for(vocab: int, batch: int = 5, length: int = 9, seed: int = 1):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one torch thread is fastest and does not fight other processes for cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("activation", ["relu", "gelu", "swiglu"])
def test_mixed_rows_equal_single_mode_models(tmp_path, activation):
    for seed in range(2):
        base = tiny_gpt(activation, seed)
        base_dir, adapters = on_disk(tmp_path / f"s{seed}", base, seed)
        bank = load_lm_bank(base_dir, adapters)
        models = {m: random_gates(base, 100 * seed + i) for i, m in enumerate(MODES)}
        mem = LMBank.from_models(base, models)  # in memory: the same bank from the gated models
        idx = ids_for(256, seed=seed)
        g = torch.Generator().manual_seed(seed)
        row_modes = [MODES[int(i)] for i in torch.randint(0, 3, (5,), generator=g)]
        row_modes[:3] = MODES  # every mode present
        for hard in (False, True):
            bank.hard = mem.hard = hard
            mixed = bank.logits(idx, modes=row_modes)  # (B, T, vocab)
            refs = {m: logits_of(single(base_dir, adapters[m], hard), idx) for m in MODES}
            for b, m in enumerate(row_modes):
                torch.testing.assert_close(mixed[b], refs[m][b], rtol=0, atol=1e-5)
            for m in MODES:
                torch.testing.assert_close(bank(idx, mode=m), refs[m], rtol=0, atol=1e-5)
            assert (refs["a"] - refs["b"]).abs().max() > 1e-2  # the modes really differ
            torch.testing.assert_close(mem.logits(idx, modes=row_modes), mixed, rtol=0, atol=1e-6)


@given(st.integers(0, 2**16), st.sampled_from(["relu", "silu", "gelu-tanh"]), st.booleans())
@settings(max_examples=25, deadline=None)
def test_bank_gate_rows_equal_tau_gates(seed, activation, hard):
    g = torch.Generator().manual_seed(seed)
    M, B, T, W = 3, 4, 5, 7
    taus, gammas = torch.randn(M, W, generator=g), torch.rand(M, W, generator=g) + 0.5
    rows = torch.randint(0, M, (B,), generator=g)
    bank_gate = BankGate(taus, gammas, activation, 5.0, True, Selection(rows=rows))
    bank_gate.hard = hard
    z = torch.randn(B, T, W, generator=g)  # (B, T, W)
    flat = bank_gate(z.reshape(B * T, W)).reshape(B, T, W)  # OPT feeds (B * T, W)
    out = bank_gate(z)
    for b in range(B):
        ref = TauGate(W, TauGateConfig(sharpness=5.0), activation)
        with torch.no_grad():
            ref.tau.copy_(taus[rows[b]])
            ref.gamma.copy_(gammas[rows[b]])
            ref.hard = hard
            want = ref(z[b])
        torch.testing.assert_close(out[b], want, rtol=1e-6, atol=1e-7)  # SIMD vs tail
        torch.testing.assert_close(flat[b], want, rtol=1e-6, atol=1e-7)


def test_generate_equals_single_mode_generation(tmp_path):
    base = tiny_gpt("swiglu")
    base_dir, adapters = on_disk(tmp_path, base)
    bank = load_lm_bank(base_dir, adapters)
    bank.hard = True
    idx = ids_for(256, batch=3, length=6)
    row_modes = ["c", "a", "b"]
    out = bank.generate(idx, 10, modes=row_modes, greedy=True)  # (B, 6 + 10)
    assert out.shape == (3, 16)
    for b, m in enumerate(row_modes):
        ref = single(base_dir, adapters[m], True)
        assert torch.equal(out[b], ref.generate(idx, 10, greedy=True)[b])
    sampled = bank.generate(idx, 6, "b", generator=torch.Generator().manual_seed(3))
    want = ref.generate(idx, 6, generator=torch.Generator().manual_seed(3))  # ref: mode "b"
    assert torch.equal(sampled, want)
    assert bank.mode == "a"  # a call with mode= / modes= leaves the current mode alone


def test_switch_copies_nothing_and_reads_no_file(tmp_path):
    base = tiny_gpt("relu")
    base_dir, adapters = on_disk(tmp_path, base)
    bank = load_lm_bank(base_dir, adapters)
    idx = ids_for(256)
    want = {m: bank(idx, mode=m) for m in MODES}
    ptrs = {n: p.data_ptr() for n, p in bank.model.named_parameters()}
    tables = [(g.taus.data_ptr(), g.gammas.data_ptr()) for g in bank.gates]
    for path in (base_dir, *adapters.values()):
        shutil.rmtree(path)
    for m in ("c", "a", "b", "a"):
        bank.set_mode(m)
        assert bank.mode == m
        torch.testing.assert_close(bank(idx), want[m], rtol=0, atol=0)
    bank.logits(idx, modes=["a", "b", "c", "b", "a"])
    assert {n: p.data_ptr() for n, p in bank.model.named_parameters()} == ptrs
    assert [(g.taus.data_ptr(), g.gammas.data_ptr()) for g in bank.gates] == tables
    assert len(bank.gates) == 2 and bank.gates[0].taus.shape == (3, 64)
    # a mode as a model of its own, written as an adapter, loads back to the same logits
    again = save_adapter(bank.mode_model("b"), tmp_path / "again")
    fresh = tiny_gpt("relu")  # the same seed: the base again (its files are gone)
    load_adapter_(fresh, again)
    torch.testing.assert_close(logits_of(fresh, idx), want["b"], rtol=0, atol=1e-6)


def one_line(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg


def test_errors_are_one_line(tmp_path):
    base = tiny_gpt("relu")
    base_dir, adapters = on_disk(tmp_path, base)
    bank = load_lm_bank(base_dir, adapters)
    idx = ids_for(256, batch=2)
    with pytest.raises(TauGateError) as e:
        bank.set_mode("z")
    one_line(e, "unknown mode 'z'", "a, b, c")
    with pytest.raises(TauGateError) as e:
        bank.logits(idx, modes=["a", "b", "c"])
    one_line(e, "3 entries", "2 rows")
    with pytest.raises(TauGateError) as e:
        bank.logits(idx, modes=["a", "x"])
    one_line(e, "unknown mode 'x'")
    with pytest.raises(TauGateError) as e:
        bank.logits(idx, "a", modes=["a", "b"])
    one_line(e, "not both")
    with pytest.raises(TauGateError) as e:
        load_lm_bank(base_dir, {})
    one_line(e, "at least one mode")
    with pytest.raises(TauGateError) as e:
        load_lm_bank(base_dir, [("a", adapters["a"]), ("a", adapters["b"])])
    one_line(e, "mode 'a' appears more than once")
    with pytest.raises(TauGateError) as e:
        load_lm_bank(base_dir, {"a.b": adapters["a"]})
    one_line(e, "mode name 'a.b'")
    wide = save_adapter(random_gates(tiny_gpt("relu", d_ffn=48), 0), tmp_path / "wide")
    with pytest.raises(TauGateError) as e:
        load_lm_bank(base_dir, {"a": adapters["a"], "w": wide})
    one_line(e, "mode 'w'", "blocks.0.mlp", "width 48", "base model 64")
    half = save_adapter(random_gates(base, 0, r"blocks\.0\."), tmp_path / "half")
    with pytest.raises(TauGateError) as e:
        load_lm_bank(base_dir, {"a": adapters["a"], "h": half})
    one_line(e, "mode 'h' gates the FFN blocks blocks.0.mlp", "mode 'a'")
    with pytest.raises(TauGateError) as e:
        load_lm_bank(base_dir, {"a": tmp_path / "nowhere"})
    one_line(e, "mode 'a'", "adapter.json")
    with pytest.raises(TauGateError) as e:
        LMBank.from_models(base, {"a": random_gates(tiny_gpt("relu", d_ffn=48), 0)})
    one_line(e, "mode 'a'", "blocks.0.mlp", "width 48", "base model 64")
    with pytest.raises(TauGateError) as e:
        LMBank.from_models(base, {"a": base})
    one_line(e, "mode 'a'", "no gated FFN block")


@needs_hf
@pytest.mark.parametrize("family", ["opt", "llama"])
def test_hugging_face_rows_equal_single_mode_models(tmp_path, monkeypatch, family):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        from lm_helpers import HF_VOCAB, tiny_llama, tiny_opt
    except ImportError:  # tests/ imported as a package
        from tests.lm_helpers import HF_VOCAB, tiny_llama, tiny_opt

    base = {"opt": tiny_opt, "llama": tiny_llama}[family](tmp_path)
    base_dir = next(p for p in tmp_path.iterdir() if p.is_dir())  # its save_pretrained dir
    adapters = {m: save_adapter(random_gates(base, i), tmp_path / f"ad-{m}")
                for i, m in enumerate(MODES)}  # fmt: skip
    bank = load_lm_bank(base_dir, adapters)
    idx = ids_for(HF_VOCAB, batch=3, length=7)
    row_modes = ["b", "c", "a"]
    for hard in (False, True):
        bank.hard = hard
        mixed = bank.logits(idx, modes=row_modes)
        for b, m in enumerate(row_modes):
            ref = single(base_dir, adapters[m], hard)
            torch.testing.assert_close(mixed[b], logits_of(ref, idx)[b], rtol=0, atol=1e-5)
    out = bank.generate(idx, 3, modes=row_modes, greedy=True)  # on the HF model's KV cache
    ref = single(base_dir, adapters["c"], True)
    step = logits_of(ref, idx)[:, -1].argmax(-1)  # (B,)
    assert out.shape == (3, 10) and int(out[1, 7]) == int(step[1])


def test_cli_generate(tmp_path, capsys):
    base = tiny_gpt("gelu")
    base_dir, adapters = on_disk(tmp_path, base)
    ref = single(base_dir, adapters["b"], False)
    want = decode(ref.generate(encode("hi")[None, :], 6, greedy=True)[0])
    argv = ["generate", str(base_dir), "--adapter", f"a={adapters['a']}", "--adapter",
            f"b={adapters['b']}", "--mode", "b", "--prompt", "hi", "--max-new-tokens", "6",
            "--temperature", "0"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out == want + "\n"
    hard = single(base_dir, adapters["b"], True)
    want_hard = decode(hard.generate(encode("hi")[None, :], 6, greedy=True)[0])
    assert main([*argv, "--compiled", "--corpus", "a=code"]) == 0  # the Numba kernel
    assert capsys.readouterr().out == want_hard + "\n"
    argv = ["generate", str(base_dir), "--adapter", str(adapters["b"]), "--prompt", "hi",
            "--max-new-tokens", "6", "--temperature", "0"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out == want + "\n"
    assert main([*argv[:4], "--mode", "zz", *argv[4:]]) == 2
    assert "unknown mode 'zz' (this bank has: default)" in capsys.readouterr().err
    assert main(["generate", str(base_dir), "--adapter", f"a={adapters['a']}", "--adapter",
                 f"b={adapters['b']}", "--prompt", "hi"]) == 2  # fmt: skip
    assert "--mode is needed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    assert "examples:" in capsys.readouterr().out


def test_switch_cost_smoke(tmp_path):
    base = tiny_gpt("relu")
    bank = LMBank.from_models(base, {m: random_gates(base, i) for i, m in enumerate(MODES[:2])})
    res = lm_switch_cost(bank, prompt_len=8, repeats=3, batch=4)
    for k in ("switch_us", "load_adapter_us", "mixed_step_us", "single_steps_us"):
        assert math.isfinite(res[k]) and res[k] > 0, (k, res[k])
    assert res["max_abs_diff_mixed_vs_single"] < 1e-4
    assert bank.mode == "a"
    with pytest.raises(TauGateError) as e:
        lm_switch_cost(bank, prompt_len=32)
    one_line(e, "block_size 32")
