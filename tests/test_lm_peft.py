"""The baselines against peft, and every language-model method (taugate.lm.methods) set up right.

What it shows: the project's own LoRA (``taugate.nn.lora``) is peft's LoRA on the MLP (same
trainable count, same outputs with the same A and B), and GainOnly is peft's feed-forward IA3
(same count, same outputs with the same vectors); ``build_lm_method`` trains only each method's
parameters on a tiny Llama, GPT-2, OPT and the own GPT, starts every method at the base model's
logits, gives a one-line install hint without peft; and 20 Adam steps of TauGate on random tokens
lower the loss and move gamma (and tau, where the gate has a gradient: see
``test_training_moves_tau``). Every HF model is saved with ``save_pretrained`` and loaded back.
"""

from __future__ import annotations

import copy
import importlib.util
import sys

import pytest
import torch
from torch import nn

from taugate.errors import TauGateError
from taugate.lm.families import ffn_blocks, linear_arrays
from taugate.lm.methods import LM_METHODS, base_model, build_lm_method, require_peft
from taugate.nn import (
    MLP,
    LoRALinear,
    build_method,
    count_parameters,
    gates,
    harden_,
    sparsity_penalty,
)

try:
    from lm_helpers import (
        FFN,
        LAYERS,
        logits_of,
        next_token_loss,
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
        next_token_loss,
        tiny_gpt2,
        tiny_llama,
        tiny_opt,
        tiny_own,
        token_ids,
    )

HAVE_PEFT = importlib.util.find_spec("peft") is not None
HAVE_HF = importlib.util.find_spec("transformers") is not None
needs_peft = pytest.mark.skipif(not HAVE_PEFT, reason="peft ([hf] extra) not installed")
needs_hf = pytest.mark.skipif(not HAVE_HF, reason="transformers ([hf] extra) not installed")

pytestmark = [
    pytest.mark.filterwarnings("ignore:fan_in_fan_out is set to False:UserWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

BUILDERS = {
    "own-gelu": lambda p: tiny_own("gelu"),
    "own-relu": lambda p: tiny_own("relu"),
    "own-swiglu": lambda p: tiny_own("swiglu"),
    "opt": tiny_opt,
    "gpt2": tiny_gpt2,  # gelu_new
    "llama": tiny_llama,
}
RELU = {"own-relu", "opt"}  # soft ReLU gates start at 0.95, not 1: compare these hard
FAMILIES = [pytest.param(c, id=c, marks=() if c.startswith("own") else needs_hf) for c in BUILDERS]


@pytest.fixture(autouse=True)
def _hf_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _trainable(model: nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


# -- the MLP: own LoRA == peft LoRA, GainOnly == peft IA3 ------------------------------------


@needs_peft
@pytest.mark.parametrize("rank", [1, 4])
def test_own_lora_equals_peft_lora(rank):
    import peft

    torch.manual_seed(0)
    mlp = MLP([20, 16, 12, 5])
    ours = build_method(mlp, "lora", lora_rank=rank)
    theirs = peft.get_peft_model(
        copy.deepcopy(mlp),
        peft.LoraConfig(r=rank, lora_alpha=rank, target_modules=["0", "2", "4"], lora_dropout=0.0),
    )
    expected = sum(rank * (a + b) for a, b in ((20, 16), (16, 12), (12, 5)))
    assert count_parameters(ours) == count_parameters(theirs)
    assert count_parameters(ours)[0] == theirs.get_nb_trainable_parameters()[0] == expected
    x = torch.randn(64, 20)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), mlp(x), atol=0, rtol=0)  # B = 0 in both
        torch.testing.assert_close(theirs(x), mlp(x), atol=0, rtol=0)
        for k in ("0", "2", "4"):
            lin, plin = ours[int(k)], theirs.base_model.model[int(k)]
            assert isinstance(lin, LoRALinear) and lin.scaling == plin.scaling["default"] == 1.0
            a, b = torch.randn_like(lin.lora_A), torch.randn_like(lin.lora_B)  # (r, in), (out, r)
            assert plin.lora_A["default"].weight.shape == a.shape
            assert plin.lora_B["default"].weight.shape == b.shape
            lin.lora_A.copy_(a), lin.lora_B.copy_(b)
            plin.lora_A["default"].weight.copy_(a), plin.lora_B["default"].weight.copy_(b)
        out = ours(x)
        torch.testing.assert_close(out, theirs(x), atol=1e-6, rtol=1e-6)
        assert (out - mlp(x)).abs().max() > 0.1  # the update is really used


@needs_peft
def test_lora_alpha_scales_like_peft():
    import peft

    torch.manual_seed(1)
    lin = nn.Linear(7, 3)
    ours = LoRALinear(copy.deepcopy(lin), rank=2, alpha=6)
    wrapped = peft.get_peft_model(
        nn.Sequential(copy.deepcopy(lin)),
        peft.LoraConfig(r=2, lora_alpha=6, target_modules=["0"], lora_dropout=0.0),
    )
    theirs = wrapped.base_model.model[0]
    assert ours.scaling == theirs.scaling["default"] == 3.0
    with torch.no_grad():
        ours.lora_B.normal_()
        theirs.lora_A["default"].weight.copy_(ours.lora_A)
        theirs.lora_B["default"].weight.copy_(ours.lora_B)
        x = torch.randn(9, 7)
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=1e-6)


@needs_peft
def test_gainonly_equals_peft_feedforward_ia3():
    """peft's feed-forward IA3 on Linear k+1 computes ``W (x * l) + b``: it scales the output of
    the ReLU before it, which is what GainOnly's ``gamma * relu(z)`` does."""
    import peft

    torch.manual_seed(2)
    mlp = MLP([20, 16, 12, 5])
    gain = build_method(mlp, "gainonly")
    ia3 = peft.get_peft_model(
        copy.deepcopy(mlp),
        peft.IA3Config(target_modules=["2", "4"], feedforward_modules=["2", "4"]),
    )
    assert count_parameters(gain)[0] == ia3.get_nb_trainable_parameters()[0] == 16 + 12
    x = torch.randn(64, 20)
    with torch.no_grad():
        torch.testing.assert_close(ia3(x), mlp(x), atol=0, rtol=0)  # l starts at 1
        torch.testing.assert_close(gain(x), mlp(x), atol=0, rtol=0)  # gamma starts at 1
        for (_, g), k in zip(gates(gain), (2, 4)):
            vec = 0.5 + torch.rand(g.width)
            ia3_l = ia3.base_model.model[k].ia3_l["default"]
            assert ia3_l.shape == (1, g.width)  # (1, in): scales the input
            g.gamma.copy_(vec), ia3_l.copy_(vec[None, :])
        out = gain(x)
        torch.testing.assert_close(out, ia3(x), atol=1e-6, rtol=1e-5)
        assert (out - mlp(x)).abs().max() > 1e-2


# -- every LM method -------------------------------------------------------------------------


def _expected_trainable(base: nn.Module, method: str, rank: int) -> int | None:
    blocks = ffn_blocks(base)
    units = sum(b.width for b in blocks)
    if method in ("lora", "ia3"):
        return None  # peft's own count, checked separately
    return {
        "frozen": 0,
        "bitfit": sum(p.numel() for n, p in base.named_parameters() if n.endswith("bias")),
        "taugate": 2 * units,
        "gainonly": units,
        "tauonly": units,
        "fullft": count_parameters(base)[1],
    }[method]


def _lora_count(base: nn.Module, rank: int) -> int:
    total = 0
    for b in ffn_blocks(base):
        for attr in (b.gate, b.up, b.down):
            if attr:
                w, _ = linear_arrays(getattr(b.owner, attr), attr)  # (out, in)
                total += rank * sum(w.shape)
    return total


@pytest.mark.parametrize("method", LM_METHODS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_method_trains_only_its_parameters_and_starts_at_the_base(family, method, tmp_path):
    if method in ("lora", "ia3") and not HAVE_PEFT:
        pytest.skip("peft ([hf] extra) not installed")
    rank = 2
    base = BUILDERS[family](tmp_path)
    before = {n: p.detach().clone() for n, p in base.state_dict().items()}
    model = build_lm_method(base, method, lora_rank=rank)
    trainable = _trainable(model)
    n_trainable = sum(p.numel() for p in trainable.values())
    assert n_trainable == count_parameters(model)[0]
    suffix = {"bitfit": ("bias",), "taugate": ("tau", "gamma"), "gainonly": ("gamma",),
              "tauonly": ("tau",)}.get(method)  # fmt: skip
    if method in ("lora", "ia3"):
        assert n_trainable > 0 and n_trainable == model.get_nb_trainable_parameters()[0]
        want = _lora_count(base, rank) if method == "lora" else LAYERS * FFN  # IA3: down's input
        assert n_trainable == want
        assert all(("lora_" if method == "lora" else "ia3_l") in n for n in trainable)
        assert base_model(model) is not model and not gates(model)
    else:
        assert n_trainable == _expected_trainable(base, method, rank)
        assert base_model(model) is model
        if suffix:
            assert all(n.rsplit(".", 1)[1] in suffix for n in trainable)
    if method == "lora":
        assert all(not p.any() for n, p in trainable.items() if "lora_B" in n)  # B starts at 0
    if method == "ia3":
        assert all(torch.equal(p, torch.ones_like(p)) for p in trainable.values())  # l at 1
    # the base is untouched: no gate, no adapter, same weights, nothing unfrozen
    assert not gates(base) and not any("lora" in n or "ia3" in n for n, _ in base.named_modules())
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())
    ids = token_ids(base)
    model.eval()
    with torch.no_grad():
        ref = logits_of(base, ids)
        if family in RELU:
            harden_(model)
        out = logits_of(model, ids)
        torch.testing.assert_close(out, ref, atol=1e-5 * max(1.0, float(ref.abs().max())), rtol=0)
        if not trainable:
            return
        gen = torch.Generator().manual_seed(0)
        for n, p in trainable.items():  # moving the method's parameters moves the logits
            noise = 0.5 * torch.randn(p.shape, generator=gen)
            p.copy_(noise) if n.endswith("tau") else p.add_(noise)  # tau near 0: cuts units
        assert (logits_of(model, ids) - ref).abs().max() > 1e-3


@needs_peft
@pytest.mark.parametrize("method", ["lora", "ia3"])
@pytest.mark.parametrize("family", [p for p in FAMILIES if p.id in ("own-gelu", "llama", "gpt2")])
def test_peft_baselines_respect_target_modules(family, method, tmp_path):
    model = build_lm_method(BUILDERS[family](tmp_path), method, target_modules=r"\.1(\.|$)")
    adapted = {n.rsplit(f".{'lora_A' if method == 'lora' else 'ia3_l'}", 1)[0]
               for n in _trainable(model)}  # fmt: skip
    assert adapted and all(".1." in n and ".0." not in n for n in adapted)


@needs_hf
@needs_peft
@pytest.mark.parametrize("method", ["lora", "ia3", "bitfit"])
def test_baselines_run_whatever_the_activation(method, tmp_path):
    """LoRA, IA3 and BitFit do not touch phi: a GPT-2 with gelu_fast, which TauGate refuses, is
    fine for them."""
    base = tiny_gpt2(tmp_path, "gelu_fast")
    with pytest.raises(TauGateError, match="unsupported activation module FastGELUActivation"):
        build_lm_method(base, "taugate")
    model = build_lm_method(base, method, lora_rank=2)
    ids = token_ids(base)
    with torch.no_grad():
        torch.testing.assert_close(logits_of(model, ids), logits_of(base, ids), atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_missing_peft_is_a_one_line_install_hint(method, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now raises ImportError
    base = tiny_own("gelu")
    msg = r"need peft, which is not installed: pip install 'taugate\[hf\]'$"
    with pytest.raises(TauGateError, match=msg) as e:
        build_lm_method(base, method)
    assert "\n" not in str(e.value)
    with pytest.raises(TauGateError, match=msg):
        require_peft()
    assert count_parameters(build_lm_method(base, "taugate"))[0] == 2 * LAYERS * FFN  # no peft


def test_unknown_method_and_bad_rank():
    base = tiny_own("gelu")
    with pytest.raises(TauGateError, match=r"^unknown method 'prefix' for a language model; known"):
        build_lm_method(base, "prefix")
    with pytest.raises(TauGateError, match="LoRA rank must be >= 1, got 0"):
        build_lm_method(base, "lora", lora_rank=0)


# -- training ------------------------------------------------------------------------------


def _train(family: str, tmp_path, steps: int = 20):
    """``steps`` Adam steps of TauGate on one batch of random tokens; (model, losses, before)."""
    base = BUILDERS[family](tmp_path)
    model = build_lm_method(base, "taugate")
    params = list(_trainable(model).values())
    before = {n: p.detach().clone() for n, p in _trainable(model).items()}
    opt = torch.optim.Adam(params, lr=0.05)
    ids = token_ids(base, batch=4, length=16, seed=3)
    losses = []
    for _ in range(steps):
        loss = next_token_loss(model, ids) + 1e-2 * sparsity_penalty(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        losses.append(float(next_token_loss(model, ids) + 1e-2 * sparsity_penalty(model)))
    return model, losses, before


SMOKE = [p for p in FAMILIES if p.id in ("own-gelu", "opt", "gpt2", "llama")]


@pytest.mark.parametrize("family", SMOKE)
def test_training_lowers_the_loss_and_moves_gamma(family, tmp_path):
    torch.manual_seed(0)
    model, losses, before = _train(family, tmp_path)
    assert losses[-1] < losses[0] - 0.02, losses
    for n, p in _trainable(model).items():
        if n.endswith("gamma"):
            assert (p.detach() - before[n]).abs().max() > 0.1, n
    _, again, _ = _train(family, tmp_path)  # deterministic
    assert again == losses


@pytest.mark.parametrize(
    "family",
    [
        pytest.param("own-relu", id="own-relu"),
        pytest.param("opt", id="opt", marks=needs_hf),
        # gelu / silu thresholds start at the floor: they move through tau's gradient window
        pytest.param("own-gelu", id="own-gelu"),
        pytest.param("gpt2", id="gpt2", marks=needs_hf),
        pytest.param("llama", id="llama", marks=needs_hf),
    ],
)
def test_training_moves_tau(family, tmp_path):
    torch.manual_seed(0)
    model, losses, before = _train(family, tmp_path)
    assert losses[-1] < losses[0]
    moved = [float((p.detach() - before[n]).abs().max()) for n, p in _trainable(model).items()
             if n.endswith("tau")]  # fmt: skip
    assert len(moved) == LAYERS and min(moved) > 0.1, moved
