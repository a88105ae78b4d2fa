"""Training a causal LM from a token stream: next-token loss + lambda * sum mean(g), bits per byte,
hard FFN active share per layer, determinism, the built-in corpora."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from taugate.data.text import load_text, split_text
from taugate.errors import TauGateError
from taugate.lm.gpt import GPT, GPTConfig
from taugate.lm.methods import build_lm_method
from taugate.lm.train import LMTrainConfig, evaluate_lm, train_lm


def _tiny(activation="relu", seed=0):
    torch.manual_seed(seed)
    return GPT(
        GPTConfig(n_layer=2, n_head=2, d_model=32, d_ffn=64, activation=activation, block_size=64)
    )


@pytest.fixture(scope="module")
def prose():
    s = split_text(load_text("prose", data_dir=None, max_bytes=60_000))
    return s.train, s.valid


def test_pretraining_on_the_builtin_corpus_learns_and_is_deterministic(prose):
    train, valid = prose
    cfg = LMTrainConfig(steps=60, batch_size=8, seq_len=48, lr=3e-3, seed=1)
    before = evaluate_lm(_tiny(), valid, seq_len=48, max_windows=16)
    model = _tiny()
    hist = train_lm(model, train, cfg, quiet=True)
    after = evaluate_lm(model, valid, seq_len=48, max_windows=16)
    assert before["bits_per_byte"] > 7.5  # ~ log2(256) = 8 at random init
    assert after["bits_per_byte"] < before["bits_per_byte"] - 2.0, (before, after)
    again = _tiny()
    assert train_lm(again, train, cfg, quiet=True)["loss"] == hist["loss"]  # deterministic
    for p, q in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)


def test_taugate_with_lambda_sparsifies_and_reports_the_active_share(prose):
    train, valid = prose
    base = _tiny("silu")
    train_lm(base, train, LMTrainConfig(steps=40, batch_size=8, seq_len=48, seed=0), quiet=True)
    ev = {}
    for lam in (0.0, 1.0):
        m = build_lm_method(base, "taugate")
        # Adam moves a threshold by about lr per step: from the silu floor (-16.3) to the bulk of z
        cfg = LMTrainConfig(steps=60, batch_size=8, seq_len=48, lr=0.5, sparsity=lam, seed=2)
        train_lm(m, train, cfg, quiet=True)
        ev[lam] = evaluate_lm(m, valid, seq_len=48, max_windows=8, hard=True)
        assert len(ev[lam]["active_share"]) == 2 and all(
            0 <= a <= 1 for a in ev[lam]["active_share"]
        )
        assert math.isfinite(ev[lam]["bits_per_byte"])
    assert np.mean(ev[1.0]["active_share"]) < np.mean(ev[0.0]["active_share"]) - 0.05, ev


def test_train_config_and_input_errors():
    with pytest.raises(TauGateError, match="LMTrainConfig.steps"):
        LMTrainConfig(steps=-1)
    with pytest.raises(TauGateError, match="optimizer"):
        LMTrainConfig(optimizer="lbfgs")
    with pytest.raises(TauGateError, match="1-D integer"):
        train_lm(_tiny(), torch.zeros(3, 4), LMTrainConfig(steps=1))
    with pytest.raises(TauGateError, match="need more than"):
        train_lm(_tiny(), torch.arange(10), LMTrainConfig(steps=1, seq_len=32))
