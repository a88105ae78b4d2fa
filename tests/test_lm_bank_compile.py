"""Compiling a language-model mode bank (taugate.lm.bank_compile): one Numba FFN block per gated
block holds every mode's (tau, gamma); the compiled bank equals the hard-gated bank row by row,
each row equals that mode's own compiled model, compaction drops exactly the units that fire in no
mode, KV-cache decoding and generation agree, and misuse is a one-line error."""

from __future__ import annotations

import copy

import pytest
import torch

from taugate.errors import TauGateError
from taugate.lm.bank import LMBank
from taugate.lm.bank_compile import compile_bank_
from taugate.lm.compile import compile_lm_, compiled_blocks
from taugate.lm.methods import build_lm_method
from taugate.nn import gates, harden_

try:
    from lm_helpers import logits_of, tiny, tiny_own, token_ids
except ImportError:  # tests/ imported as a package
    from tests.lm_helpers import logits_of, tiny, tiny_own, token_ids

MODES = ("a", "b", "c")
CASES = ["own-relu", "own-gelu", "own-swiglu", "opt", "gpt2", "llama"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def base_for(case: str, tmp_path):
    if case.startswith("own-"):
        return tiny_own(case[4:])
    return tiny(case, tmp_path)


def mode_models(base, seed: int = 0) -> dict:
    """Three gated copies of ``base`` with random tau and gamma; in every mode units 0 and 1
    never fire (tau = +inf), and unit 2 is open in mode "a" only."""
    out = {}
    g = torch.Generator().manual_seed(seed)
    for i, m in enumerate(MODES):
        model = build_lm_method(base, "taugate")
        with torch.no_grad():
            for _, gate in gates(model):
                gate.tau.copy_(0.3 * torch.randn(gate.width, generator=g))
                gate.tau[:3] = float("inf")
                if i == 0:
                    gate.tau[2] = -1e9  # open wherever phi(z) != 0
                gate.gamma.copy_(0.5 + torch.rand(gate.width, generator=g))
        out[m] = model.eval()
    return out


def stream_of(ids: torch.Tensor) -> torch.Tensor:
    """Calibration text covering exactly the windows ``ids`` (B, T), plus one target token."""
    return torch.cat([ids.reshape(-1), ids[:1, :1].reshape(-1)])  # (B * T + 1,)


def fires_somewhere(models: dict, ids: torch.Tensor) -> list[int]:
    """Per gated block, the units that fire (hard gate open, phi(z) != 0) on ``ids`` in some mode:
    from the single-mode models, by hooks on their gates."""
    union = None
    for model in models.values():
        hard = harden_(copy.deepcopy(model), True)
        seen: list[torch.Tensor] = []

        def hook(gt, inp, _out, seen=seen):
            seen.append(gt.open_mask(inp[0]))

        hooks = [gate.register_forward_hook(hook) for _, gate in gates(hard)]
        logits_of(hard, ids)
        for h in hooks:
            h.remove()
        fired = [s.reshape(-1, s.shape[-1]).any(0) for s in seen]  # per block: (width,) bool
        union = fired if union is None else [u | f for u, f in zip(union, fired, strict=True)]
    return [int(u.sum()) for u in union]


@pytest.mark.parametrize("case", CASES)
def test_compiled_bank_equals_hard_bank_and_each_modes_compiled_model(case, tmp_path):
    base = base_for(case, tmp_path)
    models = mode_models(base)
    ids = token_ids(base, batch=3, length=8)  # (3, 8)
    ref = LMBank.from_models(base, models)
    ref.hard = True
    bank = LMBank.from_models(base, models)
    report = compile_bank_(bank, stream_of(ids), seq_len=8, max_windows=3)
    blocks = compiled_blocks(bank.model)
    assert len(blocks) == len(bank.blocks) and all(b.packed.n_modes == 3 for b in blocks)
    kept = [r["units_kept"] for r in report["blocks"]]
    assert kept == fires_somewhere(models, ids)  # only units that fire in no mode are dropped
    assert all(r["fire_in_no_mode"] >= 2 for r in report["blocks"])
    row_modes = ["b", "c", "a"]
    want = ref.logits(ids, modes=row_modes)  # (3, 8, vocab)
    got = bank.logits(ids, modes=row_modes)
    scale = max(1.0, float(want.abs().max()))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4 * scale)
    assert all(b.kernel_calls > 0 for b in blocks)  # the Numba kernel ran, not torch math
    for m in MODES:
        torch.testing.assert_close(bank(ids, mode=m), ref(ids, mode=m), rtol=0, atol=1e-4 * scale)
    assert (ref(ids, mode="a") - ref(ids, mode="b")).abs().max() > 1e-2  # modes really differ
    for b, m in enumerate(row_modes):  # row b equals mode m's own compiled model (gains folded)
        single = harden_(copy.deepcopy(models[m]), True)
        compile_lm_(single, stream_of(ids), seq_len=8, max_windows=3)
        torch.testing.assert_close(got[b], logits_of(single, ids)[b], rtol=0, atol=1e-4 * scale)
    for blk in blocks:  # the torch fallback on the same tables gives the same function
        blk.use_kernel = False
    torch.testing.assert_close(bank.logits(ids, modes=row_modes), got, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("case", ["own-gelu", "gpt2"])
def test_compiled_bank_generates_as_the_hard_bank(case, tmp_path):
    """Greedy generation with the KV cache: mixed modes, and one mode by set_mode."""
    base = base_for(case, tmp_path)
    models = mode_models(base, seed=1)
    ids = token_ids(base, batch=3, length=6)
    ref = LMBank.from_models(base, models)
    ref.hard = True
    bank = LMBank.from_models(base, models)
    # calibrate on the reference's own continuations, so no dropped unit fires while decoding
    full = ref.generate(ids, 5, modes=["c", "a", "b"], greedy=True)  # (3, 11)
    calib = [ref.generate(ids, 5, mode=m, greedy=True) for m in MODES] + [full]
    windows = torch.cat(calib)  # (12, 11)
    compile_bank_(bank, stream_of(windows), seq_len=11, max_windows=12)
    assert torch.equal(bank.generate(ids, 5, modes=["c", "a", "b"], greedy=True), full)
    bank.set_mode("b")
    assert torch.equal(bank.generate(ids, 5, greedy=True), calib[1])


def test_misuse_is_a_one_line_error(tmp_path):
    base = tiny_own("relu")
    models = mode_models(base)
    ids = token_ids(base, batch=2, length=8)
    bank = LMBank.from_models(base, models)
    for bad in (1.0, -0.1, "0"):
        with pytest.raises(TauGateError, match="min firing rate must be in") as e:
            compile_bank_(bank, stream_of(ids), min_rate=bad, seq_len=8)
        assert "\n" not in str(e.value)
    with pytest.raises(TauGateError, match="calibration text too short"):
        compile_bank_(LMBank.from_models(base, models), ids[0, :4], seq_len=8)
    compile_bank_(bank, stream_of(ids), seq_len=8)
    with pytest.raises(TauGateError, match="compiled already"):
        compile_bank_(bank, stream_of(ids), seq_len=8)
    with pytest.raises(TauGateError, match="modes\\[1\\]|unknown mode"):
        bank.logits(ids, modes=["a", "zz"])


def test_calibration_per_mode():
    """{mode: text}: each mode's rates on its own text; a unit is kept when it fires on its
    mode's text. Missing or unknown modes are one-line errors."""
    base = tiny_own("gelu")
    models = mode_models(base)
    ids = token_ids(base, batch=2, length=8)
    same = LMBank.from_models(base, models)
    r_same = compile_bank_(same, dict.fromkeys(MODES, stream_of(ids)), seq_len=8)
    plain = LMBank.from_models(base, models)
    assert compile_bank_(plain, stream_of(ids), seq_len=8)["blocks"] == r_same["blocks"]
    for texts, msg in (
        ({"a": stream_of(ids), "b": stream_of(ids)}, r"no text for mode\(s\) c"),
        (dict.fromkeys((*MODES, "d"), stream_of(ids)), r"text for unknown mode\(s\) d"),
    ):
        with pytest.raises(TauGateError, match=msg) as e:
            compile_bank_(LMBank.from_models(base, models), texts, seq_len=8)
        assert "\n" not in str(e.value)


def test_the_bank_method_and_what_a_compiled_bank_refuses():
    base = tiny_own("swiglu")
    models = mode_models(base)
    ids = token_ids(base, batch=2, length=8)
    bank = LMBank.from_models(base, models)
    assert bank.compiled is None
    report = bank.compile_(stream_of(ids), seq_len=8)
    assert (
        bank.compiled is report and bank.hard and "modes 3" in repr(compiled_blocks(bank.model)[0])
    )
    bank.hard = True  # already hard: allowed
    for what, fn in (
        ("gates are hard", lambda: setattr(bank, "hard", False)),
        ("mode_model needs the uncompiled bank", lambda: bank.mode_model("a")),
    ):
        with pytest.raises(TauGateError, match=what) as e:
            fn()
        assert "\n" not in str(e.value)
