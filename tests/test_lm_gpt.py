"""The own byte-level GPT: config checks, shapes, tied embeddings, causality, the KV cache against
a full forward, generation, the FFN's submodule names, and that a tiny model learns."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from taugate.errors import TauGateError
from taugate.lm.gpt import GPT, MLP, GPTConfig, decode, encode

ACTS = ("relu", "gelu", "gelu-tanh", "silu", "swiglu")


def _model(activation="gelu", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(block_size=32, n_layer=2, n_head=2, d_model=16, d_ffn=24, activation=activation)
    return GPT(GPTConfig(**{**cfg, **kw})).eval()


def _ids(B=2, T=12, seed=1):
    return torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("vocab_size", 0, "GPTConfig.vocab_size must be a positive integer, got 0"),
        ("block_size", -1, "GPTConfig.block_size must be a positive integer"),
        ("n_layer", 2.0, "GPTConfig.n_layer must be a positive integer, got 2.0"),
        ("n_head", True, "GPTConfig.n_head must be a positive integer"),
        ("d_ffn", 0, "GPTConfig.d_ffn must be a positive integer"),
        ("n_head", 3, r"GPTConfig.d_model \(128\) must be divisible by n_head \(3\)"),
        ("activation", "tanh", "GPTConfig.activation must be one of relu, gelu, gelu-tanh, silu, swiglu"),
        ("activation", "GELU", "got 'GELU'"),
        ("dropout", 1.0, r"GPTConfig.dropout must be a number in \[0, 1\), got 1.0"),
        ("dropout", -0.1, "GPTConfig.dropout"),
        ("bias", 1, "GPTConfig.bias must be True or False, got 1"),
    ],
)  # fmt: skip
def test_config_checks_are_one_line_errors(field, value, message):
    with pytest.raises(TauGateError, match=message) as e:
        GPTConfig(**{field: value})
    assert "\n" not in str(e.value)


def test_config_defaults():
    c = GPTConfig()
    assert (c.vocab_size, c.block_size, c.dropout, c.bias) == (256, 256, 0.0, True)
    assert c.head_dim * c.n_head == c.d_model


@pytest.mark.parametrize("activation", ACTS)
def test_shapes_and_cache(activation):
    m = _model(activation)
    logits, present = m(_ids(3, 7))
    assert logits.shape == (3, 7, 256) and logits.dtype == torch.float32
    assert len(present) == 2
    for k, v in present:
        assert k.shape == v.shape == (3, 2, 7, 8)  # (B, n_head, T, head_dim)


def test_tied_embeddings_and_parameter_count():
    m = _model(bias=False)
    assert m.lm_head.weight is m.wte.weight
    assert m.lm_head.bias is None
    d, f, L = 16, 24, 2
    per_block = 2 * d + 4 * d * d + 2 * d * f  # two LayerNorms (no bias), attention, FFN
    assert m.num_parameters() == 256 * d + 32 * d + L * per_block + d
    assert m.num_parameters() == sum(p.numel() for p in m.parameters())  # the tie counted once
    with torch.no_grad():
        m.wte.weight[65].zero_()
    assert torch.equal(m.lm_head.weight[65], torch.zeros(d))


def test_init_is_deterministic_and_scaled():
    a, b, c = _model(seed=3), _model(seed=3), _model(seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["wte.weight"], sc["wte.weight"])
    big = _model(d_model=256, d_ffn=1024, n_head=4, n_layer=8)
    assert big.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert big.blocks[0].attn.proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)
    assert big.blocks[0].mlp.down.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)
    assert torch.count_nonzero(big.blocks[0].mlp.up.bias) == 0


@pytest.mark.parametrize("activation", ACTS)
def test_causal(activation):
    m = _model(activation)
    idx = _ids(2, 10)
    changed = idx.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 256
    with torch.no_grad():
        a, _ = m(idx)
        b, _ = m(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=0)
    assert (a[:, 6:] - b[:, 6:]).abs().amax(dim=-1).min() > 1e-6


@pytest.mark.parametrize("activation", ACTS)
def test_kv_cache_token_by_token_matches_full_forward(activation):
    m = _model(activation)
    idx = _ids(2, 12)
    with torch.no_grad():
        full, full_cache = m(idx)
        past, steps = None, []
        for t in range(idx.size(1)):
            logits, past = m(idx[:, t : t + 1], past)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-5)
    for (k1, v1), (k2, v2) in zip(past, full_cache):
        torch.testing.assert_close(k1, k2, rtol=0, atol=1e-5)
        torch.testing.assert_close(v1, v2, rtol=0, atol=1e-5)


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("chunks", [(5, 4, 3), (1, 6, 5), (3, 1, 1, 7)])
def test_kv_cache_multi_token_chunks_match_full_forward(activation, chunks):
    m = _model(activation)
    idx = _ids(2, sum(chunks), seed=2)
    with torch.no_grad():
        full, _ = m(idx)
        past, outs, start = None, [], 0
        for n in chunks:
            logits, past = m(idx[:, start : start + n], past)
            outs.append(logits)
            start += n
    assert past[0][0].shape[2] == sum(chunks)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=0, atol=1e-5)


def test_block_size_overflow_is_a_one_line_error():
    m = _model(block_size=8)
    with pytest.raises(TauGateError, match="sequence of 9 tokens .* longer than block_size 8"):
        m(_ids(1, 9))
    _, past = m(_ids(1, 6))
    with pytest.raises(TauGateError, match=r"10 tokens \(6 cached \+ 4 new\) .* block_size 8"):
        m(_ids(1, 4), past)
    m(_ids(1, 2), past)  # exactly block_size is fine


def test_bad_inputs_are_errors():
    m = _model()
    with pytest.raises(TauGateError, match=r"\(B, T\) int64"):
        m(_ids(1, 4).int())
    with pytest.raises(TauGateError, match=r"\(B, T\) int64"):
        m(_ids(1, 4)[0])
    with pytest.raises(TauGateError, match=r"token ids must be in \[0, 256\), got 0..256"):
        m(torch.tensor([[0, 256]]))
    _, past = m(_ids(1, 4))
    with pytest.raises(TauGateError, match=r"past must hold 2 \(k, v\) pairs, got 1"):
        m(_ids(1, 1), past[:1])


@pytest.mark.parametrize("activation", ["relu", "swiglu"])
def test_generate_greedy_is_deterministic_and_matches_argmax(activation):
    m = _model(activation)
    prompt = _ids(2, 5)
    out = m.generate(prompt, 9, greedy=True)
    assert out.shape == (2, 14) and out.dtype == torch.long
    assert torch.equal(out[:, :5], prompt)
    assert torch.equal(out, m.generate(prompt, 9, greedy=True))
    with torch.no_grad():  # each new token is the argmax of a full forward over what precedes it
        logits, _ = m(out[:, :-1])
    assert torch.equal(logits[:, 4:].argmax(-1), out[:, 5:])


def test_generate_sampling_follows_the_generator_and_restores_mode():
    m = _model(dropout=0.1).train()
    prompt = _ids(1, 3)
    a = m.generate(prompt, 12, temperature=0.8, generator=torch.Generator().manual_seed(5))
    b = m.generate(prompt, 12, temperature=0.8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (1, 15)
    assert m.training
    assert torch.equal(m.generate(prompt, 0), prompt)
    # the context may fill block_size exactly: the last new token is never fed back
    assert m.generate(prompt, 30, greedy=True).shape == (1, 33)
    with pytest.raises(TauGateError, match="context of 33 tokens, longer than block_size 32"):
        m.generate(prompt, 31, greedy=True)
    with pytest.raises(TauGateError, match="temperature must be > 0"):
        m.generate(prompt, 2, temperature=0.0)
    with pytest.raises(TauGateError, match="prompt with T0 >= 1"):
        m.generate(prompt[:, :0], 2)
    with pytest.raises(TauGateError, match="max_new_tokens must be >= 0"):
        m.generate(prompt, -1)


@pytest.mark.parametrize(
    ("activation", "act_type", "approximate"),
    [("relu", nn.ReLU, None), ("gelu", nn.GELU, "none"), ("gelu-tanh", nn.GELU, "tanh"),
     ("silu", nn.SiLU, None)],
)  # fmt: skip
def test_plain_mlp_submodules(activation, act_type, approximate):
    m = _model(activation)
    assert isinstance(m.blocks, nn.ModuleList) and len(m.blocks) == 2
    block = m.blocks[1]
    assert [n for n, _ in block.named_children()] == ["ln_1", "attn", "ln_2", "mlp"]
    mlp = block.mlp
    assert isinstance(mlp, MLP) and (mlp.kind, mlp.activation) == ("plain", activation)
    assert [n for n, _ in mlp.named_children()] == ["up", "act", "down"]
    assert type(mlp.act) is act_type
    if approximate is not None:
        assert mlp.act.approximate == approximate
    assert (mlp.up.in_features, mlp.up.out_features) == (16, 24)
    assert (mlp.down.in_features, mlp.down.out_features) == (24, 16)
    x = torch.randn(2, 3, 16)
    torch.testing.assert_close(mlp(x), mlp.down(mlp.act(mlp.up(x))))


def test_swiglu_mlp_submodules():
    mlp = _model("swiglu").blocks[0].mlp
    assert (mlp.kind, mlp.activation) == ("glu", "silu")
    assert [n for n, _ in mlp.named_children()] == ["gate", "up", "act", "down"]
    assert type(mlp.act) is nn.SiLU
    assert mlp.gate.out_features == mlp.up.out_features == 24
    x = torch.randn(2, 3, 16)
    torch.testing.assert_close(mlp(x), mlp.down(F.silu(mlp.gate(x)) * mlp.up(x)))


def test_replacing_act_changes_the_output():
    """The gating code swaps ``mlp.act``; the forward must go through that attribute."""
    m = _model("relu")
    idx = _ids(1, 6)
    with torch.no_grad():
        before, _ = m(idx)
        for b in m.blocks:
            b.mlp.act = nn.Identity()
        after, _ = m(idx)
    assert not torch.allclose(before, after)


def test_encode_decode():
    text = "héllo, wörld ✓"
    ids = encode(text)
    assert ids.dtype == torch.long and ids.shape == (len(text.encode("utf-8")),)
    assert int(ids.max()) < 256 and decode(ids) == text
    assert decode(ids.tolist()) == text
    assert encode("").shape == (0,) and decode(encode("")) == ""
    assert decode([0xFF, 0x41]) == "\ufffdA"  # invalid UTF-8 is replaced
    with pytest.raises(TauGateError, match="1-D"):
        decode(ids[None])
    with pytest.raises(TauGateError, match=r"\[0, 256\)"):
        decode([300])
    with pytest.raises(TauGateError, match="encode takes a str"):
        encode(b"abc")


def test_tiny_model_learns_a_repeated_string():
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=32, n_layer=2, n_head=2, d_model=32, d_ffn=64, activation="gelu")
    m = GPT(cfg)
    data = encode("the quick brown fox. " * 20)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        starts = torch.randint(0, len(data) - 33, (8,), generator=gen)
        batch = torch.stack([data[s : s + 33] for s in starts.tolist()])  # (8, 33)
        logits, _ = m(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(256), abs=0.3)
    assert sum(losses[-10:]) / 10 < 1.0, losses[-10:]
