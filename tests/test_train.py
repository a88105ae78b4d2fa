"""Training loop: determinism, the regulariser's effect, config checks, device selection."""

import sys
import types

import numpy as np
import pytest
import torch

from taugate import device as device_mod
from taugate.configs import TrainConfig
from taugate.errors import TauGateError
from taugate.nn import MLP, build_method, gate_statistics
from taugate.train import accuracy, mix_modes, set_seed, train


def _toy(n=600, d=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0.5)
    return x, y


def _fit(seed, epochs=2):
    x, y = _toy()
    set_seed(seed)
    m = MLP([12, 16, 16, 4])
    train(m, x, y, TrainConfig(epochs=epochs, batch_size=64, lr=0.05, seed=seed), quiet=True)
    return m


def test_training_is_deterministic_for_a_seed():
    a, b, c = _fit(3), _fit(3), _fit(4)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_training_learns():
    x, y = _toy()
    m = _fit(0, epochs=30)
    assert accuracy(m, x, y) > 0.8


def test_regulariser_closes_gates():
    x, y = _toy()
    set_seed(0)
    base = MLP([12, 32, 32, 4])
    train(base, x, y, TrainConfig(epochs=3, batch_size=64, lr=0.05), quiet=True)
    base.requires_grad_(False)
    shares = []
    for lam in (0.0, 1.0):
        m = build_method(base, "taugate")
        train(m, x, y, TrainConfig(epochs=3, batch_size=64, lr=2.0, sparsity=lam), quiet=True)
        st = gate_statistics(m, torch.from_numpy(x))
        shares.append(np.mean([s["hard_active"] for s in st]))
    assert shares[1] < shares[0] - 0.05, shares


def test_frozen_trains_nothing():
    x, y = _toy()
    m = build_method(MLP([12, 8, 4]), "frozen")
    assert train(m, x, y, TrainConfig(), quiet=True)["steps"] == 0


def test_sgd_without_foreach(monkeypatch):
    seen = {}
    real = torch.optim.SGD

    def spy(params, **kw):
        seen.update(kw)
        return real(params, **kw)

    monkeypatch.setattr(torch.optim, "SGD", spy)
    x, y = _toy(64)
    train(MLP([12, 4, 4]), x, y, TrainConfig(), quiet=True)
    assert seen["foreach"] is False  # DirectML has no foreach kernels (CPU fallback)


def test_divergence_is_reported():
    x, y = _toy()
    x[0, 0] = np.inf
    with pytest.raises(TauGateError, match="diverged"):
        train(MLP([12, 4, 4]), x, y, TrainConfig(batch_size=600), quiet=True)


@pytest.mark.parametrize(
    "kw", [{"epochs": -1}, {"batch_size": 0}, {"lr": 0}, {"lr": float("nan")}, {"sparsity": -1}]
)
def test_train_config_checks(kw):
    with pytest.raises(TauGateError):
        TrainConfig(**kw)


def test_mix_modes_is_a_seeded_half_split():
    a = np.zeros((1000, 3), np.float32)
    b = np.ones((1000, 3), np.float32)
    mixed, pick = mix_modes(a, b, seed=5)
    assert 0.45 < pick.mean() < 0.55
    assert np.array_equal(mixed[:, 0], pick.astype(np.float32))
    assert np.array_equal(mix_modes(a, b, seed=5)[1], pick)


# --- device selection, without the real DirectML package -------------------------------------


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: False)
    monkeypatch.setitem(sys.modules, "torch_directml", None)  # import fails


def test_auto_falls_back_to_cpu(no_accelerators):
    assert device_mod.select_device("auto") == torch.device("cpu")


def test_auto_prefers_directml_when_it_imports(no_accelerators, monkeypatch):
    fake = types.ModuleType("torch_directml")
    fake.device = lambda: "privateuseone:0"
    fake.is_available = lambda: True
    monkeypatch.setitem(sys.modules, "torch_directml", fake)
    assert device_mod.select_device("auto") == "privateuseone:0"
    assert device_mod.select_device("directml") == "privateuseone:0"


def test_auto_prefers_cuda_over_directml(no_accelerators, monkeypatch):
    fake = types.ModuleType("torch_directml")
    fake.device = lambda: "privateuseone:0"
    monkeypatch.setitem(sys.modules, "torch_directml", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_mod.select_device("auto") == torch.device("cuda")


def test_auto_then_mps(no_accelerators, monkeypatch):
    monkeypatch.setattr(device_mod, "_mps_available", lambda: True)
    assert device_mod.select_device("auto") == torch.device("mps")


@pytest.mark.parametrize("name", ["directml", "cuda", "mps"])
def test_explicit_missing_device_is_an_error(no_accelerators, name):
    with pytest.raises(TauGateError, match=name):
        device_mod.select_device(name)


def test_unknown_device():
    with pytest.raises(TauGateError, match="unknown device 'tpu'"):
        device_mod.select_device("tpu")
