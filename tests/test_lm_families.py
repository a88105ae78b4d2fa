"""FFN gating of language models (taugate.lm.families, taugate.lm.apply) on tiny random models.

What it shows, per family (the own GPT with every activation, OPT, GPT-2 with three activations,
Llama): the family and its FFN blocks are found with the right kind, width and activation, GPT-2's
Conv1D weights are read as (out, in); ``apply_taugate_`` puts an identity TauGate on each block's
activation (logits unchanged, soft and hard; soft ReLU gates only to their documented 0.95 floor);
the trainable count is 2 x the gated units; a hard gate really skips (the FFN equals a reference
written here from the block's own modules); the penalty and statistics work; ``target_modules``,
``filter_fn``, double gating, non-LMs, unsupported activations and dtypes behave. Every HF model
is saved with ``save_pretrained`` into a temp dir and loaded back: no network.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import re

import pytest
import torch
from torch import nn

from taugate.errors import TauGateError
from taugate.lm.apply import gated_blocks
from taugate.lm.families import family_of, ffn_blocks, linear_arrays
from taugate.lm.methods import build_lm_method
from taugate.nn import (
    MLP,
    TauGate,
    TauGateConfig,
    apply_taugate_,
    count_parameters,
    gate_statistics,
    gates,
    harden_,
    print_trainable_parameters,
    sparsity_penalty,
    trainable_parameters_line,
)

try:
    from lm_helpers import (
        FFN,
        LAYERS,
        logits_of,
        tiny_gpt2,
        tiny_llama,
        tiny_opt,
        tiny_own,
        token_ids,
    )
except ImportError:  # tests/ imported as a package
    from tests.lm_helpers import (
        FFN,
        LAYERS,
        logits_of,
        tiny_gpt2,
        tiny_llama,
        tiny_opt,
        tiny_own,
        token_ids,
    )

needs_hf = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None, reason="transformers ([hf] extra) missing"
)

BLOCK_NAME = {"taugate-gpt": "blocks.{}.mlp", "opt": "model.decoder.layers.{}",
              "gpt2": "transformer.h.{}.mlp", "llama": "model.layers.{}.mlp"}  # fmt: skip
OWNER_CLASS = {"taugate-gpt": "MLP", "opt": "OPTDecoderLayer", "gpt2": "GPT2MLP",
               "llama": "LlamaMLP"}  # fmt: skip

# case -> (builder(tmp_path), family, kind, activation TauGate should see)
CASES = {
    **{f"own-{a}": (lambda p, a=a: tiny_own(a), "taugate-gpt", "plain", a)
       for a in ("relu", "gelu", "gelu-tanh", "silu")},
    "own-swiglu": (lambda p: tiny_own("swiglu"), "taugate-gpt", "glu", "silu"),
    "opt": (tiny_opt, "opt", "plain", "relu"),
    "gpt2-gelu_new": (lambda p: tiny_gpt2(p, "gelu_new"), "gpt2", "plain", "gelu-tanh"),
    "gpt2-gelu": (lambda p: tiny_gpt2(p, "gelu"), "gpt2", "plain", "gelu"),
    "gpt2-relu": (lambda p: tiny_gpt2(p, "relu"), "gpt2", "plain", "relu"),
    "gpt2-gelu_pytorch_tanh": (lambda p: tiny_gpt2(p, "gelu_pytorch_tanh"), "gpt2", "plain",
                               "gelu-tanh"),
    "llama": (tiny_llama, "llama", "glu", "silu"),
}  # fmt: skip
ALL = [pytest.param(c, id=c, marks=() if c.startswith("own") else needs_hf) for c in CASES]
ONE_PER_FAMILY = [p for p in ALL if p.id in ("own-gelu", "own-swiglu", "opt", "gpt2-gelu_new",
                                             "llama")]  # fmt: skip


@pytest.fixture(autouse=True)
def _hf_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def build(case, tmp_path):
    return CASES[case][0](tmp_path)


def names(family: str) -> list[str]:
    return [BLOCK_NAME[family].format(i) for i in range(LAYERS)]


def scale(t: torch.Tensor) -> float:
    return max(1.0, float(t.abs().max()))


# -- recognising the families ----------------------------------------------------------------


@pytest.mark.parametrize("case", ALL)
def test_family_and_ffn_blocks(case, tmp_path):
    _, family, kind, activation = CASES[case]
    model = build(case, tmp_path)
    assert family_of(model).name == family
    blocks = ffn_blocks(model)
    assert [b.name for b in blocks] == names(family)  # one block per layer, in forward order
    for b in blocks:
        assert b.owner is model.get_submodule(b.name)
        assert type(b.owner).__name__ == OWNER_CLASS[family]
        assert (b.kind, b.width, b.activation) == (kind, FFN, activation)
        assert b.inline == (family == "opt")
        z_attr = {"llama": "gate_proj", "opt": "fc1", "gpt2": "c_fc"}.get(family)
        z_attr = z_attr or ("gate" if kind == "glu" else "up")
        assert b.z_module is getattr(b.owner, z_attr)


@needs_hf
def test_gpt2_conv1d_weights_are_read_as_out_in(tmp_path):
    mlp = tiny_gpt2(tmp_path).transformer.h[0].mlp
    for conv, (d_in, d_out) in ((mlp.c_fc, (16, FFN)), (mlp.c_proj, (FFN, 16))):
        assert tuple(conv.weight.shape) == (d_in, d_out)  # HF Conv1D stores (in, out)
        w, b = linear_arrays(conv, "c")
        assert w.shape == (d_out, d_in) and b.shape == (d_out,) and w.dtype == b.dtype
        x = torch.randn(5, d_in)
        by_hand = x @ conv.weight.detach() + conv.bias.detach()  # x @ W + b: (5, out)
        ours = x @ torch.from_numpy(w).T + torch.from_numpy(b)  # (5, in) @ (in, out)
        torch.testing.assert_close(ours, by_hand, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(conv(x).detach(), by_hand, rtol=1e-6, atol=1e-6)


@needs_hf
def test_linear_arrays_of_a_bias_free_linear_and_of_a_non_projection(tmp_path):
    mlp = tiny_llama(tmp_path).model.layers[0].mlp
    w, b = linear_arrays(mlp.up_proj, "up")
    assert w.shape == (FFN, 16) and not b.any()  # Llama has no biases: zeros
    assert torch.equal(torch.from_numpy(w), mlp.up_proj.weight.detach())
    with pytest.raises(TauGateError, match=r"^here: expected a Linear or Conv1D projection, got "):
        linear_arrays(mlp.act_fn, "here")


# -- gating every family ---------------------------------------------------------------------


@pytest.mark.parametrize("case", ALL)
def test_apply_taugate_is_the_identity_at_init(case, tmp_path):
    _, family, kind, activation = CASES[case]
    base = build(case, tmp_path)
    model = copy.deepcopy(base)
    cfg = TauGateConfig()
    assert apply_taugate_(model, cfg) == names(family)
    assert [b.name for b in gated_blocks(model)] == names(family)
    for b in ffn_blocks(model):
        g = getattr(b.owner, b.act)
        assert isinstance(g, TauGate)
        assert (g.width, g.activation, g.hard) == (FFN, activation, False)
        assert torch.allclose(g.tau, torch.full((FFN,), cfg.tau_start(activation)))
        assert torch.equal(g.gamma, torch.ones(FFN))
    ids = token_ids(base)
    with torch.no_grad():
        ref = logits_of(base, ids)
        soft = logits_of(model, ids)
        hard = logits_of(harden_(model), ids)
        for _, g in gates(model):
            g.gamma.zero_()  # the gates are in the path: shutting them moves the logits a lot
        off = logits_of(model, ids)
    tol = 1e-5 * scale(ref)
    torch.testing.assert_close(hard, ref, atol=tol, rtol=0)
    assert (off - ref).abs().max() > 1e3 * tol
    if activation != "relu":
        torch.testing.assert_close(soft, ref, atol=tol, rtol=0)
    else:  # soft ReLU gates start at g(0) = init_open = 0.95, not 1 (DEVELOPERS.md): not exact
        assert (soft - ref).abs().max() < 0.05 * (off - ref).abs().max()


@pytest.mark.parametrize("case", [p for p in ALL if CASES[p.id][3] == "relu"])
def test_soft_relu_gate_keeps_at_least_init_open_of_every_unit(case, tmp_path):
    model = build(case, tmp_path)
    apply_taugate_(model, TauGateConfig(init_open=0.95))
    with torch.no_grad():
        logits_of(model, token_ids(model))
    for _, g in gates(model):
        z, gate = g.last_z, g.last_gate
        assert bool((gate[z >= 0] >= 0.95).all()) and bool((gate <= 1).all())
        h = g(z)  # (B, T, width): between 0.95 relu(z) and relu(z)
        assert bool((h >= 0.95 * torch.relu(z) - 1e-7).all() and (h <= torch.relu(z)).all())


@pytest.mark.parametrize("case", ALL)
def test_taugate_trains_two_parameters_per_gated_unit(case, tmp_path, capsys):
    base = build(case, tmp_path)
    base_total = count_parameters(base)[1]
    model = build_lm_method(base, "taugate")
    units = sum(b.width for b in ffn_blocks(base))
    assert units == LAYERS * FFN
    trainable, total = count_parameters(model)
    assert (trainable, total) == (2 * units, base_total + 2 * units)
    assert {n.rsplit(".", 1)[1] for n, p in model.named_parameters() if p.requires_grad} == {
        "tau",
        "gamma",
    }
    assert not gates(base)  # the base is not touched
    line = trainable_parameters_line(model)
    pct = 100.0 * 2 * units / total
    want = f"trainable params: {2 * units:,} || all params: {total:,} || trainable%: {pct:.4f}"
    assert line == want
    print_trainable_parameters(model)
    assert capsys.readouterr().out == line + "\n"


# -- the hard gate skips ---------------------------------------------------------------------


def _shut_half(model: nn.Module, seed: int = 0) -> None:
    """tau = +inf for the even units, 0 for every fourth odd one; gamma random in [0.5, 1.5]."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, g in gates(model):
            g.tau[::2] = math.inf
            g.tau[1::4] = 0.0
            g.gamma.copy_(0.5 + torch.rand(g.width, generator=gen))


def _reference(b, phi, x: torch.Tensor, tau: torch.Tensor, gamma: torch.Tensor, masked=True):
    """The hard-gated FFN written out from the block's own projections: plain
    ``down(phi(z) 1[z > tau] gamma)``, glu ``down(silu(z) 1[z > tau] gamma up(x))``."""
    z = b.z_module(x)  # (..., width)
    h = phi(z) * gamma * ((z > tau).to(z.dtype) if masked else 1.0)
    if b.kind == "glu":
        h = h * getattr(b.owner, b.up)(x)
    return getattr(b.owner, b.down)(h)


@pytest.mark.parametrize("case", ALL)
def test_hard_gate_equals_the_ffn_written_by_hand(case, tmp_path):
    base = build(case, tmp_path)
    model = copy.deepcopy(base)
    apply_taugate_(model)
    _shut_half(model)
    harden_(model)
    seen: dict[str, dict[str, torch.Tensor]] = {}
    hooks = []
    for b in ffn_blocks(model):  # record the FFN's input x, down's input h and its output
        rec = seen.setdefault(b.name, {})

        def ffn_input(_m, inp, rec=rec):
            rec["x"] = inp[0]

        def down_io(_m, inp, out, rec=rec):
            rec.update(h=inp[0], out=out)

        hooks.append(b.z_module.register_forward_pre_hook(ffn_input))
        hooks.append(getattr(b.owner, b.down).register_forward_hook(down_io))
    with torch.no_grad():
        logits_of(model, token_ids(model))
        for h in hooks:
            h.remove()
        for b, b0 in zip(ffn_blocks(model), ffn_blocks(base)):
            g, phi = getattr(b.owner, b.act), getattr(b0.owner, b0.act)  # phi: the base's module
            rec = seen[b.name]
            assert not isinstance(phi, TauGate)
            want = _reference(b, phi, rec["x"], g.tau, g.gamma)
            torch.testing.assert_close(rec["out"], want, rtol=1e-5, atol=1e-6)  # in the model
            assert bool((rec["h"][..., ::2] == 0).all())  # the shut units' rows are skipped
            open_ = _reference(b, phi, rec["x"], g.tau, g.gamma, masked=False)
            assert (open_ - want).abs().max() > 1e-2  # and skipping them matters
            if not b.inline:  # the FFN module itself, on a fresh random input
                x = torch.randn(3, 5, 16)
                want = _reference(b, phi, x, g.tau, g.gamma)
                torch.testing.assert_close(b.owner(x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ONE_PER_FAMILY)
def test_sparsity_penalty_and_gate_statistics_on_a_gated_lm(case, tmp_path):
    model = build(case, tmp_path)
    apply_taugate_(model)
    first = gates(model)[0][1]
    with torch.no_grad():
        first.tau[::2] = math.inf  # layer 0: half the units shut
    ids = token_ids(model)
    logits_of(model, ids)
    penalty = sparsity_penalty(model)
    by_hand = sum(torch.sigmoid(g.sharpness * (g.last_z - g.tau)).mean() for _, g in gates(model))
    torch.testing.assert_close(penalty, by_hand)
    assert penalty.requires_grad and 1.0 < float(penalty.detach()) <= LAYERS - 0.5 + 1e-6
    harden_(model)
    stats = gate_statistics(model, ids)
    assert all(g.hard for _, g in gates(model))  # restored
    assert [s["layer"] for s in stats] == [n for n, _ in gates(model)]
    for s, (_, g) in zip(stats, gates(model)):
        z = g.last_z
        assert s["hard_open"] == pytest.approx(float((z > g.tau).float().mean()))
        mean_gate = torch.sigmoid(g.sharpness * (z - g.tau.detach())).mean()
        assert s["mean_gate"] == pytest.approx(float(mean_gate))
        assert s["hard_active"] == pytest.approx(float(((z > g.tau) & (z > 0)).float().mean()))
        assert 0 <= s["high_act_frac"] <= 1
    assert stats[0]["hard_open"] <= 0.5  # the shut half never opens
    if CASES[case][3] == "relu":  # tau < 0: open also for a few z <= 0
        assert stats[1]["hard_open"] > stats[1]["hard_active"]
    else:  # tau at the floor of phi: nearly every unit open
        assert stats[1]["hard_open"] > 0.9


# -- selecting, refusing ---------------------------------------------------------------------


@pytest.mark.parametrize("case", ONE_PER_FAMILY)
def test_target_modules_regex_selects_layers(case, tmp_path):
    family = CASES[case][1]
    model = build(case, tmp_path)
    assert apply_taugate_(model, TauGateConfig(target_modules=r"\.1(\.|$)")) == names(family)[1:]
    blocks = ffn_blocks(model)
    assert not isinstance(getattr(blocks[0].owner, blocks[0].act), TauGate)
    assert isinstance(getattr(blocks[1].owner, blocks[1].act), TauGate)
    assert [b.name for b in gated_blocks(model)] == names(family)[1:]
    assert sum(p.numel() for _, g in gates(model) for p in g.parameters()) == 2 * FFN


@pytest.mark.parametrize("case", ONE_PER_FAMILY)
def test_a_regex_matching_nothing_is_a_one_line_error(case, tmp_path):
    model = build(case, tmp_path)
    msg = re.escape("target_modules 'nowhere[7-9]' matches none of the 2 FFN blocks (")
    with pytest.raises(TauGateError, match=f"^{msg}") as e:
        apply_taugate_(model, TauGateConfig(target_modules="nowhere[7-9]"))
    assert "\n" not in str(e.value) and not gates(model)


@pytest.mark.parametrize("case", ONE_PER_FAMILY)
def test_filter_fn_sees_name_and_owner(case, tmp_path):
    family = CASES[case][1]
    model = build(case, tmp_path)
    calls = []

    def only_layer_0(name, owner):
        calls.append((name, type(owner).__name__))
        return name == names(family)[0]

    assert apply_taugate_(model, filter_fn=only_layer_0) == names(family)[:1]
    assert calls == [(n, OWNER_CLASS[family]) for n in names(family)]
    assert len(gates(model)) == 1
    with pytest.raises(TauGateError, match="^the filter matches none of the 2 FFN blocks"):
        apply_taugate_(copy.deepcopy(model), filter_fn=lambda n, o: False)


@pytest.mark.parametrize("case", ONE_PER_FAMILY)
def test_gating_twice_is_an_error_and_changes_nothing(case, tmp_path):
    family = CASES[case][1]
    model = build(case, tmp_path)
    apply_taugate_(model, TauGateConfig(target_modules=r"\.0(\.|$)"))
    before = [id(g) for _, g in gates(model)]
    with pytest.raises(TauGateError, match=rf"^{names(family)[0]}: is gated already$"):
        apply_taugate_(model)  # layer 1 is free, layer 0 is not: nothing at all is done
    assert [id(g) for _, g in gates(model)] == before
    with pytest.raises(TauGateError, match="is gated already"):
        apply_taugate_(model, TauGateConfig(target_modules=r"\.0(\.|$)"))


class _ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x):
        return self.body(torch.relu(self.conv(x)))


def test_a_model_that_is_neither_an_lm_nor_an_mlp():
    net = _ConvNet()
    # the MLP path: no ReLU after a Linear, so nothing is gated and nothing is said (see report)
    assert apply_taugate_(net) == [] and not gates(net)
    with pytest.raises(TauGateError, match=r"^_ConvNet: not a supported language model") as e:
        ffn_blocks(net)
    assert "\n" not in str(e.value)
    with pytest.raises(TauGateError, match="not a supported language model"):
        build_lm_method(net, "taugate")
    assert gated_blocks(net) == []
    mlp = MLP([6, 5, 4, 3])  # the MLP path itself still works beside the LM dispatch
    assert apply_taugate_(mlp) == ["1", "3"]


@needs_hf
@pytest.mark.parametrize(("act", "cls"), [("gelu_fast", "FastGELUActivation"),
                                          ("quick_gelu", "QuickGELUActivation")])  # fmt: skip
def test_an_unsupported_activation_is_a_one_line_error_naming_the_module(act, cls, tmp_path):
    model = tiny_gpt2(tmp_path, act)
    with pytest.raises(TauGateError, match=rf"^transformer\.h\.0\.mlp\.act: unsupported activation "
                       rf"module {cls} \(TauGate gates relu, gelu, gelu-tanh and silu\)$") as e:  # fmt: skip
        apply_taugate_(model)
    assert "\n" not in str(e.value) and not gates(model)
    with pytest.raises(TauGateError, match=r"^transformer\.h\.1\.mlp\.act: unsupported"):
        apply_taugate_(model, TauGateConfig(target_modules=r"h\.1\."))
    with pytest.raises(TauGateError, match=cls):
        build_lm_method(model, "taugate")
    assert family_of(model).name == "gpt2" and gated_blocks(model) == []  # still an LM


@pytest.mark.parametrize("case", ["own-swiglu", pytest.param("gpt2-gelu", marks=needs_hf),
                                  pytest.param("opt", marks=needs_hf)])  # fmt: skip
def test_gates_follow_the_model_dtype(case, tmp_path):
    base = build(case, tmp_path).double()
    model = copy.deepcopy(base)
    apply_taugate_(model)
    for _, g in gates(model):
        assert g.tau.dtype == g.gamma.dtype == torch.float64
    ids = token_ids(base)
    with torch.no_grad():
        ref = logits_of(base, ids)
        hard = logits_of(harden_(model), ids)
    assert hard.dtype == torch.float64
    torch.testing.assert_close(hard, ref, atol=1e-12 * scale(ref), rtol=0)
    model.float()  # and they move with it afterwards
    assert all(g.tau.dtype == g.gamma.dtype == torch.float32 for _, g in gates(model))
    assert logits_of(model, ids).dtype == torch.float32
