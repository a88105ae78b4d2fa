"""Exact parameter counts, method set-up, LoRA, GainOnly == IA3 and checkpoints."""

import pytest
import torch
from torch import nn

from taugate.errors import TauGateError
from taugate.nn import (
    METHODS,
    MLP,
    build_method,
    count_parameters,
    gates,
    load_checkpoint,
    save_checkpoint,
    trainable_parameters_line,
)

PAPER_COUNTS = {
    "frozen": 0,
    "bitfit": 266,
    "gainonly": 256,
    "tauonly": 256,
    "taugate": 512,
    "lora": 10_448,
    "fullft": 118_282,
}


@pytest.fixture(scope="module")
def foundation():
    torch.manual_seed(0)
    return MLP([784, 128, 128, 10])


@pytest.mark.parametrize("method", list(PAPER_COUNTS))
def test_trainable_parameter_counts(foundation, method):
    model = build_method(foundation, method)
    assert count_parameters(model)[0] == PAPER_COUNTS[method]
    assert set(METHODS) == set(PAPER_COUNTS)


def test_peft_style_report(foundation):
    line = trainable_parameters_line(build_method(foundation, "taugate"))
    assert line == "trainable params: 512 || all params: 118,794 || trainable%: 0.4310"


@pytest.mark.parametrize("method", list(PAPER_COUNTS))
def test_every_method_starts_as_the_foundation(foundation, method):
    x = torch.rand(32, 784)
    model = build_method(foundation, method)
    if method == "taugate" or method == "tauonly":
        for _, g in gates(model):
            g.hard = True  # hard gate at init is exact; the soft one is only near-open
    torch.testing.assert_close(model(x), foundation(x), atol=1e-6, rtol=0)


def test_methods_do_not_touch_the_foundation(foundation):
    before = {k: v.clone() for k, v in foundation.state_dict().items()}
    m = build_method(foundation, "fullft")
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    for k, v in foundation.state_dict().items():
        assert torch.equal(v, before[k])


def test_unknown_method():
    with pytest.raises(TauGateError, match="unknown method 'dropout'"):
        build_method(MLP([4, 3, 2]), "dropout")


def test_gainonly_equals_feedforward_ia3():
    """peft's IA3 on a feed-forward layer multiplies that layer's *input* by a learned vector
    (``x * ia3_l`` before the Linear). Scaling the input of Linear k+1 is scaling the output of the
    ReLU after Linear k: exactly GainOnly's ``gamma * relu(z)``."""
    torch.manual_seed(1)
    base = MLP([12, 9, 7, 3])
    gain = build_method(base, "gainonly")
    vecs = [torch.rand(9) + 0.5, torch.rand(7) + 0.5]
    with torch.no_grad():
        for (_, g), v in zip(gates(gain), vecs):
            g.gamma.copy_(v)

    class IA3FeedForward(
        nn.Module
    ):  # the computation of peft.tuners.ia3.Linear, is_feedforward=True
        def __init__(self, lin, vec):
            super().__init__()
            self.base, self.ia3_l = lin, nn.Parameter(vec.clone())

        def forward(self, x):
            return self.base(x * self.ia3_l)  # (B, in) * (in,)

    ia3 = MLP([12, 9, 7, 3])
    ia3.load_state_dict(base.state_dict())
    ia3[2] = IA3FeedForward(ia3[2], vecs[0])
    ia3[4] = IA3FeedForward(ia3[4], vecs[1])
    x = torch.randn(40, 12)
    torch.testing.assert_close(gain(x), ia3(x), rtol=1e-5, atol=1e-6)
    n_ia3 = sum(p.numel() for n, p in ia3.named_parameters() if "ia3_l" in n)
    assert n_ia3 == count_parameters(gain)[0]


def test_lora_merged_weight_matches_forward(foundation):
    m = build_method(foundation, "lora", lora_rank=4)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.normal_()
    x = torch.rand(5, 784)
    lin = m[0]
    torch.testing.assert_close(
        lin(x), x @ lin.merged_weight().T + lin.base.bias, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("method", list(PAPER_COUNTS))
def test_checkpoint_round_trip(tmp_path, method):
    torch.manual_seed(2)
    model = build_method(MLP([10, 8, 8, 3]), method, lora_rank=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = save_checkpoint(model, tmp_path / "m.safetensors", sizes=[10, 8, 8, 3], method=method,
                           lora_rank=2, provenance={"seed": 2})  # fmt: skip
    loaded, meta = load_checkpoint(path)
    x = torch.randn(6, 10)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert meta["method"] == method and meta["provenance"] == {"seed": 2}


def test_checkpoint_errors(tmp_path):
    with pytest.raises(TauGateError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(TauGateError, match="bad.safetensors"):
        load_checkpoint(bad)
