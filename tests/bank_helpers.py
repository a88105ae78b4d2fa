"""Small TauGate models of one frozen foundation, for the mode bank tests: built, randomised,
read out in the reference's tensor names (independently of taugate.bank), run hard-gated."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from taugate.nn import MLP, TauGate, TauGateConfig, build_method

TAU_KINDS = ("pos", "neg", "zero", "mixed", "closed", "open")
GAMMA_KINDS = ("near1", "signed", "zeros")


def foundation(sizes: list[int], seed: int) -> nn.Module:
    """A random frozen MLP (biases spread so that some units are on and some off)."""
    torch.manual_seed(seed)
    model = MLP(sizes)
    with torch.no_grad():
        for lin in linears(model):
            lin.bias.normal_(0.0, 0.3)
    return model.requires_grad_(False)


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model if isinstance(m, nn.Linear)]


def activations(model: nn.Module) -> list[nn.Module]:
    """The ReLU or TauGate after each hidden Linear, in order."""
    return [m for m in model if isinstance(m, (nn.ReLU, TauGate))]


def _taus(kind: str, n: int, rng) -> np.ndarray:
    if kind == "pos":
        return rng.uniform(0.0, 1.0, n)
    if kind == "neg":
        return -rng.uniform(0.0, 1.0, n)
    if kind == "mixed":
        return rng.choice([np.inf, -np.inf, 0.0, 0.3, 0.8, -0.2], n)
    return np.full(n, {"zero": 0.0, "closed": np.inf, "open": -1e30}[kind])


def _gammas(kind: str, n: int, rng) -> np.ndarray:
    if kind == "near1":
        return rng.uniform(0.5, 1.5, n)
    if kind == "signed":
        return rng.uniform(-1.5, 1.5, n)
    return np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.5, 1.5, n))


def mode_model(base: nn.Module, gated: list[int], taus: list[str], gammas: list[str], rng):
    """A TauGate copy of ``base`` with gates on hidden layers ``gated`` only, whose thresholds and
    gains are drawn by kind (``taus[k]`` / ``gammas[k]`` for the k-th gated layer)."""
    names = "|".join(str(2 * i + 1) for i in gated)  # MLP children: Linear 0, act 1, Linear 2...
    model = build_method(base, "taugate", TauGateConfig(target_modules=f"^({names})$"))
    with torch.no_grad():
        gates = [a for a in activations(model) if isinstance(a, TauGate)]
        for g, tk, gk in zip(gates, taus, gammas, strict=True):
            g.tau.copy_(torch.from_numpy(_taus(tk, g.width, rng).astype(np.float32)))
            g.gamma.copy_(torch.from_numpy(_gammas(gk, g.width, rng).astype(np.float32)))
    return model


def reference_tensors(models: dict) -> tuple[list[dict], dict]:
    """The bank's layer list and tensors (reference names) read straight off the torch modules."""
    first = next(iter(models.values()))
    lins, acts = linears(first), activations(first)
    layers, tensors = [], {}
    for i, lin in enumerate(lins):
        last = i == len(lins) - 1
        gated = not last and any(isinstance(activations(m)[i], TauGate) for m in models.values())
        layers.append(
            {
                "in": lin.in_features,
                "out": lin.out_features,
                "gated": gated,
                "activation": "none" if last else "relu",
            }
        )
        tensors[f"layers.{i}.weight"] = lin.weight.detach().numpy().copy()
        tensors[f"layers.{i}.bias"] = lin.bias.detach().numpy().copy()
    assert len(acts) == len(lins) - 1
    for name, m in models.items():
        for i, a in enumerate(activations(m)):
            if layers[i]["gated"]:
                gate = isinstance(a, TauGate)
                n = layers[i]["out"]
                tau = a.tau.detach().numpy().copy() if gate else np.full(n, -np.inf, np.float32)
                gam = a.gamma.detach().numpy().copy() if gate else np.ones(n, np.float32)
                tensors[f"modes.{name}.{i}.tau"], tensors[f"modes.{name}.{i}.gamma"] = tau, gam
    return layers, tensors


def write_taus(models: dict, tensors: dict) -> None:
    """Copy the (tie-separated) thresholds of ``tensors`` back into the torch gates."""
    with torch.no_grad():
        for name, m in models.items():
            for i, a in enumerate(activations(m)):
                if isinstance(a, TauGate):
                    a.tau.copy_(torch.from_numpy(tensors[f"modes.{name}.{i}.tau"]))


@torch.no_grad()
def torch_hard(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Logits of the hard-gated torch model (eval mode)."""
    for a in activations(model):
        if isinstance(a, TauGate):
            a.hard = True
    return model.eval()(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()
