"""Training loops: the foundation on a 50/50 mix of two modes, and adaptation of a method copy.

Data is held as tensors on the device and batched by index (no DataLoader), shuffled by a seeded
CPU generator so that a run is deterministic on the CPU for a given seed. The optimiser is SGD with
momentum and ``foreach=False``: DirectML has no foreach kernels and would fall back to the CPU.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from taugate.configs import TrainConfig  # noqa: F401  (re-exported)
from taugate.errors import TauGateError
from taugate.nn.model import harden_, sparsity_penalty


def set_seed(seed: int) -> None:
    """Seed torch and numpy (model init and anything random outside the explicit generators)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def as_tensors(x: np.ndarray, y: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    xt = torch.from_numpy(np.require(x, np.float32, ["C", "W"])).to(device)  # (N, D)
    yt = torch.from_numpy(np.require(y, np.int64, ["C", "W"])).to(device)  # (N,)
    return xt, yt


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig,
    device=None,
    desc: str = "train",
    quiet: bool = False,
) -> dict:
    """Minimise cross-entropy (+ lambda * sum_layers mean(g)) over the trainable parameters."""
    device = device if device is not None else torch.device("cpu")
    params = [p for p in model.parameters() if p.requires_grad]
    history = {"steps": 0, "loss": float("nan"), "seconds": 0.0}
    if not params or cfg.epochs == 0:
        return history  # Frozen: nothing to learn
    model.to(device).train()
    opt = torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=False
    )
    xt, yt = as_tensors(x, y, device)
    n = xt.shape[0]
    gen = torch.Generator().manual_seed(int(cfg.seed))
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc=desc, disable=quiet, leave=False)
    running = 0.0
    try:
        for _epoch in range(cfg.epochs):
            perm = torch.randperm(n, generator=gen).to(device)  # (N,)
            for k in range(steps_per_epoch):
                idx = perm[k * cfg.batch_size : (k + 1) * cfg.batch_size]
                logits = model(xt[idx])  # (b, n_classes)
                loss = nn.functional.cross_entropy(logits, yt[idx])
                if cfg.sparsity > 0:
                    loss = loss + cfg.sparsity * sparsity_penalty(model).to(loss.device)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                history["steps"] += 1
                lv = float(loss.detach())
                running = 0.9 * running + 0.1 * lv if history["steps"] > 1 else lv
                if history["steps"] % 20 == 0:
                    bar.set_postfix(loss=f"{running:.3f}")
                bar.update(1)
    finally:
        bar.close()
    history["loss"] = running
    history["seconds"] = time.perf_counter() - t0
    if not math.isfinite(running):
        raise TauGateError(f"{desc}: training diverged (loss {running}); lower the learning rate")
    model.eval()
    return history


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: np.ndarray, device=None, batch_size: int = 4096, hard: bool = False
) -> torch.Tensor:
    """Logits (N, n_classes) on the CPU, with the gates soft (training form) or hard."""
    device = device if device is not None else torch.device("cpu")
    model.to(device).eval()
    harden_(model, hard)
    try:
        xt = torch.from_numpy(np.require(x, np.float32, ["C", "W"]))  # (N, D), writable
        outs = [
            model(xt[i : i + batch_size].to(device)).cpu() for i in range(0, len(xt), batch_size)
        ]
    finally:
        harden_(model, False)
    return torch.cat(outs) if outs else torch.zeros((0, 0))


def accuracy(
    model: nn.Module, x: np.ndarray, y: np.ndarray, device=None, hard: bool = False
) -> float:
    logits = predict_logits(model, x, device=device, hard=hard)
    return float((logits.argmax(1).numpy() == np.asarray(y)).mean())


def mix_modes(x_a: np.ndarray, x_b: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per example pick mode a or b with probability 1/2 (a seeded 50/50 mix of the same images).
    Returns the mixed inputs (N, D) and the boolean choice (N,) (True = mode b)."""
    if x_a.shape != x_b.shape:
        raise TauGateError(f"modes differ in shape: {x_a.shape} vs {x_b.shape}")
    rng = np.random.default_rng(seed)
    pick_b = rng.random(x_a.shape[0]) < 0.5  # (N,)
    return np.where(pick_b[:, None], x_b, x_a), pick_b  # (N, D)
