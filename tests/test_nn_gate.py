"""The gate formula, its hard limit, identity init, the in-place rewrites and the config checks."""

import math

import pytest
import torch
from torch import nn

from taugate.errors import TauGateError
from taugate.nn import (
    MLP,
    TauGate,
    TauGateConfig,
    apply_taugate_,
    gate_statistics,
    gates,
    harden_,
    sparsity_penalty,
)


def _gate(width=7, **kw):
    g = TauGate(width, TauGateConfig(**kw))
    with torch.no_grad():
        g.tau.copy_(torch.linspace(-1, 1, width))
        g.gamma.copy_(torch.linspace(0.5, 2, width))
    return g


def test_soft_gate_is_eq_2_to_4():
    g = _gate(sharpness=3.0)
    z = torch.randn(11, 7) * 2
    expected = torch.empty_like(z)
    for b in range(11):
        for j in range(7):
            zj, t, gm = float(z[b, j]), g.tau[j].item(), g.gamma[j].item()
            expected[b, j] = gm * max(zj, 0.0) / (1 + math.exp(-3.0 * (zj - t)))
    torch.testing.assert_close(g(z), expected, rtol=1e-5, atol=1e-6)


def test_hard_gate_is_indicator():
    g = _gate()
    g.hard = True
    z = torch.randn(50, 7)
    expected = g.gamma * torch.relu(z) * (z > g.tau).float()
    assert torch.equal(g(z), expected)


@pytest.mark.parametrize("s", [1e3, 1e5])
def test_soft_tends_to_hard_as_sharpness_grows(s):
    g = _gate(sharpness=s)
    z = torch.randn(200, 7)
    z = torch.where((z - g.tau).abs() < 1e-2, z + 0.05, z)  # keep clear of the step itself
    soft = g(z)
    g.hard = True
    assert torch.allclose(soft, g(z), atol=1e-3 if s < 1e4 else 1e-6)


def test_gain_only_has_no_gate():
    g = TauGate(5, TauGateConfig(gate=False, train_tau=False))
    z = torch.randn(4, 5)
    assert torch.equal(g(z), torch.relu(z))
    assert g.last_gate is None and not g.tau.requires_grad


def test_identity_init():
    torch.manual_seed(0)
    base = MLP([20, 16, 16, 3])
    gated = MLP([20, 16, 16, 3])
    gated.load_state_dict(base.state_dict())
    apply_taugate_(gated, TauGateConfig())
    x = torch.randn(64, 20)
    for _, g in gates(gated):
        assert torch.all(g.gamma == 1) and torch.all(g.tau < 0)
    harden_(gated)
    assert torch.equal(gated(x), base(x))  # hard gate at init cuts nothing
    harden_(gated, False)
    gated(x)
    for _, g in gates(gated):
        open_units = g.last_z > 0
        assert torch.all(g.last_gate[open_units] >= 0.95)  # smooth gate starts near open


def test_apply_filter_and_regex():
    m = MLP([8, 6, 5, 4, 2])
    assert apply_taugate_(m, TauGateConfig(target_modules=r"^3$")) == ["3"]
    m2 = MLP([8, 6, 5, 4, 2])
    names = apply_taugate_(m2, filter_fn=lambda name, mod: name != "1")
    assert names == ["3", "5"] and isinstance(m2[1], nn.ReLU) and isinstance(m2[3], TauGate)
    assert [g.width for _, g in gates(m2)] == [5, 4]


def test_sparsity_penalty_is_sum_of_layer_means():
    m = MLP([8, 6, 5, 2])
    apply_taugate_(m)
    m(torch.randn(9, 8))
    expected = sum(g.last_gate.mean() for _, g in gates(m))
    torch.testing.assert_close(sparsity_penalty(m), expected)


def test_gate_statistics_ranges():
    m = MLP([8, 32, 2])
    apply_taugate_(m)
    (st,) = gate_statistics(m, torch.randn(100, 8))
    assert 0 <= st["hard_active"] <= st["hard_open"] <= 1
    assert 0 <= st["high_act_frac"] <= 1 and 0 < st["mean_gate"] < 1


@pytest.mark.parametrize(
    "kw",
    [
        {"sharpness": 0},
        {"sharpness": -1},
        {"sharpness": float("nan")},
        {"sparsity": -1e-3},
        {"init_open": 1.0},
        {"high_act": 1.5},
        {"gate": False},
        {"target_modules": "("},
    ],
)
def test_config_rejects_bad_values(kw):
    with pytest.raises(TauGateError):
        TauGateConfig(**kw)


def test_tau_gradient_window_for_activations_that_start_at_their_floor():
    """A gelu / silu threshold starts at the floor, where sigmoid(s (z - tau)) is 1 for every z: the
    exact gradient to tau is 0. In the window it is the gradient at clamp(s (z - tau), -w, w);
    the forward stays exact, and ReLU keeps the exact gradient."""
    import torch

    from taugate.nn.config import TauGateConfig
    from taugate.nn.gate import TauGate

    z = torch.linspace(-2.0, 2.0, 12).reshape(3, 4)  # (B, width)
    assert TauGate(4, TauGateConfig(), "relu").tau_grad_window == 0.0
    for act in ("gelu", "gelu-tanh", "silu"):
        g = TauGate(4, TauGateConfig(), act)
        exact = TauGate(4, TauGateConfig(tau_grad_window=0), act)
        assert g.tau_grad_window == 4.0
        g(z).sum().backward()
        exact(z).sum().backward()
        assert float(exact.tau.grad.abs().max()) == 0.0  # the exact gradient vanishes there
        s = g.sharpness
        sig = torch.sigmoid((s * (z - g.tau.detach())).clamp(-4.0, 4.0))  # (B, width)
        want = (-s * sig * (1 - sig) * g._phi(z)).sum(0)  # d(sum gamma phi(z) g) / d tau
        torch.testing.assert_close(g.tau.grad, want)
        assert float(g.tau.grad.abs().min()) > 0
        with torch.no_grad():
            torch.testing.assert_close(g(z), exact(z))  # the same forward
