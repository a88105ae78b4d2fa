"""Compiling a gated language model: the compiled logits equal the hard-gated torch model's for every
activation of the own GPT and every family; gains are folded, units that never fire are dropped;
the drop-in block falls back to torch math off the fast path; adapters save and load (tau, gamma)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from taugate.errors import TauGateError
from taugate.lm.adapters import load_adapter_, read_adapter, save_adapter
from taugate.lm.apply import gated_blocks
from taugate.lm.compile import compile_lm_, compiled_blocks
from taugate.lm.ffn_module import CompiledFFN
from taugate.nn import TauGateConfig, apply_taugate_, harden_

try:
    from lm_helpers import logits_of, tiny, tiny_own, token_ids
except ImportError:  # tests/ imported as a package
    from tests.lm_helpers import logits_of, tiny, tiny_own, token_ids

OWN = ("relu", "gelu", "gelu-tanh", "silu", "swiglu")
FAMILIES = ("opt", "gpt2", "llama")


def _gated(model, seed=0, spread=1.0):
    """``model`` gated, with random thresholds (some units never fire) and gains, hardened."""
    apply_taugate_(model, TauGateConfig())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for b in gated_blocks(model):
            gate = getattr(b.owner, b.act)
            gate.tau.uniform_(-spread, spread, generator=g)
            gate.tau[:2] = float("inf")  # these can never fire: compaction drops them
            gate.gamma.uniform_(0.5, 1.5, generator=g)
    return harden_(model.eval(), True)


def _compiled_equals_hard(model, ids):
    """Compile a copy of the hard-gated ``model`` calibrated on exactly the windows ``ids`` (B, T):
    units that never fire there are dropped, so on those windows the function is the same."""
    with torch.no_grad():
        hard = logits_of(model, ids)
    compiled = copy.deepcopy(model)
    stream = torch.cat([ids.reshape(-1), ids[:1, :1].reshape(-1)])  # B windows of T, + 1 target
    report = compile_lm_(compiled, stream, seq_len=ids.shape[1], max_windows=ids.shape[0])
    with torch.no_grad():
        got = logits_of(compiled, ids)
    scale = max(1.0, float(hard.abs().max()))
    torch.testing.assert_close(got, hard, atol=1e-4 * scale, rtol=0)
    blocks = compiled_blocks(compiled)
    assert blocks and all(b.kernel_calls > 0 for b in blocks)  # the Numba kernel ran, not torch
    assert all(r["units_kept"] <= r["units_original"] - 2 for r in report["blocks"])
    uncompacted = copy.deepcopy(model)  # every unit kept: equal on any input
    compile_lm_(uncompacted, stream, seq_len=ids.shape[1], compact=False)
    other = ids.flip(0).roll(3, dims=1)
    with torch.no_grad():
        torch.testing.assert_close(logits_of(uncompacted, other), logits_of(model, other),
                                   atol=1e-4 * scale, rtol=0)  # fmt: skip
    return compiled, report


@pytest.mark.parametrize("activation", OWN)
def test_compiled_own_gpt_equals_the_hard_gated_model(activation):
    model = _gated(tiny_own(activation))
    ids = token_ids(model, batch=4, length=10)
    compiled, _ = _compiled_equals_hard(model, ids)
    kind = "glu" if activation == "swiglu" else "plain"
    assert all(b.packed.glu == (kind == "glu") for b in compiled_blocks(compiled))


@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_hf_model_equals_the_hard_gated_model(family, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = _gated(tiny(family, tmp_path))
    ids = token_ids(model, batch=4, length=10)
    compiled, report = _compiled_equals_hard(model, ids)
    assert [r["name"] for r in report["blocks"]] == [b.name for b in gated_blocks(model)]
    if family == "opt":  # inline FFN: fc1 is the compiled block, the activation and fc2 identities
        layer = compiled.model.decoder.layers[0]
        assert isinstance(layer.fc1, CompiledFFN) and isinstance(layer.fc2, torch.nn.Identity)


def test_gains_are_folded_and_units_that_never_fire_are_dropped():
    model = _gated(tiny_own("relu"))
    b = gated_blocks(model)[0]
    gate = getattr(b.owner, b.act)
    calib = token_ids(model, batch=8, length=9, seed=5).reshape(-1)
    compiled = copy.deepcopy(model)
    compile_lm_(compiled, calib, seq_len=8)
    block = compiled_blocks(compiled)[0]
    w_down = b.owner.down.weight.detach().numpy()  # (d, F)
    kept = block.packed.n_units
    assert kept <= gate.width - 2
    # every kept row of down^T is a column of down times its unit's gain
    wdt = block.packed.view("wdt")  # (kept, d)
    cols = w_down.T * gate.gamma.detach().numpy()[:, None]  # (F, d)
    for row in wdt:
        assert np.isclose(np.abs(cols - row).max(axis=1), 0, atol=1e-6).any()


def test_fallback_to_torch_math_off_the_fast_path():
    model = _gated(tiny_own("silu"))
    calib = token_ids(model, batch=8, length=9, seed=5).reshape(-1)
    compile_lm_(model, calib, seq_len=8)
    block = compiled_blocks(model)[0]
    x = torch.randn(3, 5, block.packed.d_in)
    fast = block(x)
    assert block.kernel_calls == 1
    torch.testing.assert_close(block(x.double()), fast.double(), atol=1e-5, rtol=1e-5)  # torch math
    xg = x.clone().requires_grad_(True)
    y = block(xg)  # autograd on: torch math, differentiable
    y.sum().backward()
    assert block.kernel_calls == 1 and xg.grad is not None
    torch.testing.assert_close(y.detach(), fast, atol=1e-5, rtol=1e-5)
    nc = x.transpose(0, 1)  # non-contiguous float32: still the kernel, on a copy
    torch.testing.assert_close(block(nc), fast.transpose(0, 1), atol=1e-5, rtol=1e-5)


def test_compile_errors():
    model = tiny_own("relu")
    with pytest.raises(TauGateError, match="no gated FFN block"):
        compile_lm_(model, torch.arange(100) % 256)
    _gated(model)
    with pytest.raises(TauGateError, match="calibration text too short"):
        compile_lm_(model, torch.arange(5), seq_len=8)
    with pytest.raises(TauGateError, match="min firing rate"):
        compile_lm_(model, torch.arange(100) % 256, min_rate=1.0)


def test_adapter_round_trip_and_refusals(tmp_path):
    base = tiny_own("gelu")
    model = _gated(copy.deepcopy(base), seed=3)
    path = save_adapter(model, tmp_path / "a")
    meta, tensors = read_adapter(path)
    assert meta["family"] == "taugate-gpt" and len(meta["blocks"]) == len(gated_blocks(model))
    fresh = copy.deepcopy(base)
    names = load_adapter_(fresh, path)
    assert names == [b.name for b in gated_blocks(model)]
    ids = token_ids(base, batch=2, length=10)
    harden_(fresh.eval(), True)
    torch.testing.assert_close(logits_of(fresh, ids), logits_of(model, ids))
    size = sum(t.numel() for t in tensors.values())
    assert size == 2 * sum(b.width for b in gated_blocks(model))  # tau and gamma, nothing else
    other = tiny_own("gelu", d_ffn=48)  # another base: other widths
    with pytest.raises(TauGateError, match="width"):
        load_adapter_(other, path)
    with pytest.raises(TauGateError, match="activation"):
        load_adapter_(tiny_own("silu"), path)
    data = bytearray((path / "adapter.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "adapter.safetensors").write_bytes(bytes(data))
    with pytest.raises(TauGateError, match="sha256"):
        read_adapter(path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(TauGateError, match="not a TauGate adapter"):
        save_adapter(model, tmp_path / "mine")
    assert json.loads((path / "adapter.json").read_text())["format"] == "taugate-adapter"


def test_a_block_the_gate_cannot_wrap_is_named(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tiny("llama", tmp_path)
    del model.model.layers[1].mlp.act_fn  # a Llama MLP without its activation module
    with pytest.raises(TauGateError, match=r"model\.layers\.1\.mlp: has no 'act_fn'"):
        apply_taugate_(model, TauGateConfig())
