"""Train and evaluate a causal language model (any method) on a stream of token ids.

The loss is next-token cross-entropy + ``lambda * sum_layers mean(g)`` (the TauGate regulariser,
``taugate.nn.model.sparsity_penalty``). Windows of ``seq_len + 1`` tokens are drawn at offsets from
a seeded CPU generator, so a run is deterministic on the CPU for a seed. Evaluation reports bits
per byte (the own GPT is byte-level: one byte per token; give ``bytes_per_token`` otherwise) and
the hard FFN active share per gated layer.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from taugate.errors import TauGateError
from taugate.nn.gate import TauGate
from taugate.nn.model import gates, harden_, sparsity_penalty


@dataclass
class LMTrainConfig:
    """One training run of a language model."""

    steps: int = 200  # optimiser steps
    batch_size: int = 16  # windows per step
    seq_len: int = 128  # tokens per window (the model sees seq_len, predicts the next of each)
    lr: float = 3e-3  # learning rate
    optimizer: str = "adamw"  # adamw | sgd (with momentum)
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0  # on the trainable parameters
    sparsity: float = 0.0  # lambda of the gate regulariser; 0 = off
    grad_clip: float = 1.0  # max gradient norm (0 = no clipping)
    seed: int = 0  # window sampling seed

    def __post_init__(self) -> None:
        for k in ("steps", "batch_size", "seq_len"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if k == "steps" else 1):
                raise TauGateError(f"LMTrainConfig.{k} must be a positive integer, got {v!r}")
        for k in ("lr", "momentum", "weight_decay", "sparsity", "grad_clip"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise TauGateError(f"LMTrainConfig.{k} must be a finite number >= 0, got {v!r}")
        if self.optimizer not in ("adamw", "sgd"):
            raise TauGateError(
                f"LMTrainConfig.optimizer must be adamw or sgd, got {self.optimizer!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def as_ids(tokens) -> torch.Tensor:
    """A 1-D int64 tensor of token ids (from bytes, a numpy array or a tensor)."""
    if isinstance(tokens, (bytes, bytearray)):
        tokens = np.frombuffer(bytes(tokens), np.uint8)
    if not isinstance(tokens, torch.Tensor):
        a = np.asarray(tokens)
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise TauGateError(f"token ids must be a 1-D integer sequence, got {a.shape} {a.dtype}")
        return torch.from_numpy(a.astype(np.int64))  # a copy: byte corpora are read-only
    if tokens.dim() != 1 or tokens.dtype.is_floating_point:
        raise TauGateError(
            f"token ids must be a 1-D integer sequence, got {tuple(tokens.shape)} {tokens.dtype}"
        )
    return tokens.long()


def lm_logits(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, vocab) of the own GPT (returns (logits, cache)) or a Hugging Face model."""
    out = (
        model(idx)
        if not hasattr(model, "config") or hasattr(model, "blocks")
        else model(input_ids=idx)
    )
    if isinstance(out, tuple):
        out = out[0]
    return getattr(out, "logits", out)


def max_context(model: nn.Module) -> int | None:
    """The longest sequence ``model`` takes (the own GPT's block size, a Hugging Face model's
    position table), or None when it does not say."""
    cfg = getattr(model, "config", None)
    for k in ("block_size", "max_position_embeddings", "n_positions"):
        v = getattr(cfg, k, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _windows(ids: torch.Tensor, n: int, seq_len: int, gen: torch.Generator) -> torch.Tensor:
    if len(ids) < seq_len + 2:
        raise TauGateError(
            f"need more than {seq_len + 1} tokens for windows of {seq_len}, got {len(ids)}"
        )
    start = torch.randint(0, len(ids) - seq_len - 1, (n,), generator=gen)  # (n,)
    return torch.stack([ids[s : s + seq_len + 1] for s in start.tolist()])  # (n, seq_len + 1)


def train_lm(
    model: nn.Module, tokens, cfg: LMTrainConfig, desc: str = "train", quiet: bool = False
) -> dict:
    """Minimise next-token cross-entropy (+ lambda * sum mean(g)) over the trainable parameters."""
    ids = as_ids(tokens)
    params = [p for p in model.parameters() if p.requires_grad]
    hist = {"steps": 0, "loss": float("nan"), "seconds": 0.0}
    if not params or cfg.steps == 0:
        return hist
    opt = (torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
           if cfg.optimizer == "adamw" else
           torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           foreach=False))  # fmt: skip
    gen = torch.Generator().manual_seed(int(cfg.seed))
    model.train()
    t0, running = time.perf_counter(), 0.0
    bar = tqdm(total=cfg.steps, desc=desc, disable=quiet, leave=False)
    try:
        for step in range(cfg.steps):
            w = _windows(ids, cfg.batch_size, cfg.seq_len, gen)  # (B, T + 1)
            logits = lm_logits(model, w[:, :-1])  # (B, T, V)
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1)
            )
            if cfg.sparsity > 0:
                loss = loss + cfg.sparsity * sparsity_penalty(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            lv = float(loss.detach())
            running = lv if step == 0 else 0.9 * running + 0.1 * lv
            hist["steps"] = step + 1
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{running:.3f}")
    finally:
        bar.close()
    model.eval()
    hist.update(loss=running, seconds=time.perf_counter() - t0)
    if not math.isfinite(running):
        raise TauGateError(f"{desc}: training diverged (loss {running}); lower the learning rate")
    return hist


@torch.no_grad()
def evaluate_lm(model: nn.Module, tokens, *, seq_len: int = 128, max_windows: int = 64,
                hard: bool = False, bytes_per_token: float = 1.0) -> dict:  # fmt: skip
    """Bits per byte and the hard FFN active share per gated layer on consecutive windows of
    ``tokens`` (at most ``max_windows``), soft or ``hard`` gates. The active share of a layer is
    the mean over tokens of the share of its units whose hard gate is open and whose phi(z) != 0."""
    ids = as_ids(tokens)
    n = min(max_windows, (len(ids) - 1) // seq_len)
    if n < 1:
        raise TauGateError(f"need more than {seq_len} tokens to evaluate, got {len(ids)}")
    x = ids[: n * seq_len + 1]
    inp = x[:-1].reshape(n, seq_len)  # (n, T)
    tgt = x[1:].reshape(n, seq_len)  # (n, T)
    g = [m for _, m in gates(model)]
    was = [m.hard for m in g]
    model.eval()
    try:
        harden_(model, True)  # the statistics are of the hard gates, whatever is evaluated
        logits = lm_logits(model, inp)  # (n, T, V)
        active = [_open_share(m) for m in g]
        if not hard:
            harden_(model, False)
            logits = lm_logits(model, inp)
    finally:
        for m, h in zip(g, was, strict=True):
            m.hard = h
    nll = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
    bits = float(nll) / math.log(2)
    return {"loss": float(nll), "bits_per_token": bits, "bits_per_byte": bits / bytes_per_token,
            "tokens": int(n * seq_len), "active_share": active}  # fmt: skip


def _open_share(gate: TauGate) -> float:
    """The share of (token, unit) pairs whose unit computes: open hard gate and phi(z) != 0 (a
    unit with gains but no gate, as GainOnly's, is open wherever phi(z) != 0)."""
    z = gate.last_z
    if z is None:
        return 1.0
    open_ = gate._phi(z) != 0  # (..., width)
    if gate.gated:
        open_ &= z > gate.tau
    return float(open_.float().mean())
