"""One seed of the language study: a byte-level GPT pretrained on a 50/50 mix of two text modes and
frozen, then specialised to the target mode with every method (and TauGate also to the other
mode, for the overlap table), each evaluated in bits per byte on both modes' test text."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from taugate.data.text import TextSplit, load_text, split_text
from taugate.lm.gpt import GPT, GPTConfig
from taugate.lm.methods import build_lm_method
from taugate.lm.train import LMTrainConfig, as_ids, evaluate_lm, train_lm
from taugate.nn.methods import method_gate_config
from taugate.nn.model import gate_statistics, high_act_masks
from taugate.nn.parameters import count_parameters
from taugate.reproduce.study import jaccard
from taugate.reproduce_lm.config import GATED, LMStudyConfig

LABELS = {"frozen": "Frozen", "bitfit": "BitFit", "taugate": "TauGate", "gainonly": "GainOnly",
          "tauonly": "TauOnly", "lora": "LoRA", "fullft": "Full FT"}  # fmt: skip


@dataclass
class LMStudyData:
    """Both modes' text, split by document, and the foundation's training mix."""

    splits: dict[str, TextSplit]  # mode -> train / valid / test byte tokens
    mix: np.ndarray  # (2 n,) uint8: n training bytes of each mode, one after the other

    def record(self) -> dict:
        return {"modes": {m: s.record() for m, s in self.splits.items()},
                "mix_bytes_per_mode": int(len(self.mix) // 2)}  # fmt: skip


def load_lm_study_data(cfg: LMStudyConfig, data_dir=None) -> LMStudyData:
    splits = {m: split_text(load_text(m, data_dir, max_bytes=cfg.max_bytes), valid=cfg.valid,
                            test=cfg.test) for m in cfg.modes}  # fmt: skip
    n = min(len(s.train) for s in splits.values())  # 50/50 by bytes
    mix = np.concatenate([splits[m].train[:n] for m in cfg.modes])
    return LMStudyData(splits, mix)


def new_gpt(cfg: LMStudyConfig, seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, d_model=cfg.d_model,
                         d_ffn=cfg.d_ffn, activation=cfg.activation, block_size=cfg.seq_len))  # fmt: skip


def train_foundation(cfg: LMStudyConfig, seed: int, data: LMStudyData, quiet: bool):
    """The base model: every parameter trained on the mix, then frozen; (model, history)."""
    model = new_gpt(cfg, seed)
    tc = LMTrainConfig(steps=cfg.foundation_steps, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                       lr=cfg.foundation_lr, seed=seed)  # fmt: skip
    hist = train_lm(model, data.mix, tc, desc=f"seed {seed} foundation", quiet=quiet)
    model.requires_grad_(False)
    return model.eval(), hist


def _windows(cfg: LMStudyConfig, tokens: np.ndarray) -> torch.Tensor:
    """The evaluation windows (n, T) that :func:`evaluate_lm` reads: consecutive, from the start."""
    ids = as_ids(tokens)
    n = max(1, min(cfg.eval_windows, (len(ids) - 1) // cfg.seq_len))
    return ids[: n * cfg.seq_len].reshape(n, cfg.seq_len)  # (n, T)


def unit_rates(model, cfg: LMStudyConfig, tokens: np.ndarray) -> list[torch.Tensor]:
    """Per gated layer, (width,): the share of the tokens (the windows of ``tokens``) on which each
    unit's smooth gate is above ``high_act``."""
    with torch.no_grad():
        masks = high_act_masks(model, _windows(cfg, tokens), cfg.high_act)  # [(n, T, width)]
    return [m.reshape(-1, m.shape[-1]).float().mean(0) for m in masks]  # (n T, width) -> (width,)


def weighted_jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """sum min(a, b) / sum max(a, b) of two non-negative vectors (1.0 when both are zero): the
    Jaccard index of the masks, weighted by how often each unit is high."""
    top = float(torch.maximum(a, b).sum())
    return 1.0 if top == 0 else float(torch.minimum(a, b).sum()) / top


def overlap_rows(models: dict, cfg: LMStudyConfig, data: LMStudyData, seed: int) -> list[dict]:
    """Per FFN layer: how alike the target- and other-specialised TauGate models' high gates are,
    each on its own mode's test text (and, for reference, both on the target's)."""
    t, o = cfg.target, cfg.other
    rt = unit_rates(models[t], cfg, data.splits[t].test)
    ro = unit_rates(models[o], cfg, data.splits[o].test)
    ro_t = unit_rates(models[o], cfg, data.splits[t].test)  # the other mode's gates on target text
    rows = []
    for i, (a, b, c) in enumerate(zip(rt, ro, ro_t, strict=True), 1):
        ma, mb = a >= cfg.unit_share, b >= cfg.unit_share
        rows.append({"seed": seed, "layer": i, "jaccard": jaccard(ma, mb),
                     "weighted_jaccard": weighted_jaccard(a, b),
                     "weighted_jaccard_same_text": weighted_jaccard(a, c),
                     f"units_{t}": int(ma.sum()), f"units_{o}": int(mb.sum()),
                     "units": int(a.numel())})  # fmt: skip
    return rows


def _bpb(model, cfg: LMStudyConfig, tokens, *, hard: bool = False) -> dict:
    return evaluate_lm(model, tokens, seq_len=cfg.seq_len, max_windows=cfg.eval_windows, hard=hard)


def evaluate_method(model, name: str, cfg: LMStudyConfig, data: LMStudyData) -> dict:
    """One result row: trainable parameters and bits per byte on both modes' test text; for the
    gated methods also with hard gates and compiled, high-act frac, mean gate and the hard FFN
    active share per layer (on the target's test text)."""
    t, o = data.splits[cfg.target].test, data.splits[cfg.other].test
    row: dict = {"method": name, "label": LABELS[name] if name != "lora" else f"LoRA r={cfg.lora_rank}",
                 "params": count_parameters(model)[0], "target": cfg.target, "other": cfg.other,
                 "bpb_target": _bpb(model, cfg, t)["bits_per_byte"],
                 "bpb_other": _bpb(model, cfg, o)["bits_per_byte"]}  # fmt: skip
    if name not in GATED:
        return row
    hard = _bpb(model, cfg, t, hard=True)
    row["hard_bpb_target"] = hard["bits_per_byte"]
    row["hard_bpb_other"] = _bpb(model, cfg, o, hard=True)["bits_per_byte"]
    with torch.no_grad():
        stats = gate_statistics(model, _windows(cfg, t), cfg.high_act)
    if stats:  # GainOnly has gains but no gates
        row["high_act_frac"] = float(np.mean([s["high_act_frac"] for s in stats]))
        row["mean_gate"] = float(np.mean([s["mean_gate"] for s in stats]))
    for i, a in enumerate(hard["active_share"], 1):
        row[f"hard_active_L{i}"] = a
    if cfg.compile:
        from taugate.lm.compile import compile_lm_

        compiled = copy.deepcopy(model)
        report = compile_lm_(compiled, data.splits[cfg.target].train[: cfg.calib_tokens],
                             seq_len=cfg.seq_len, max_windows=max(1, cfg.calib_tokens // cfg.seq_len))  # fmt: skip
        row["compiled_bpb_target"] = _bpb(compiled, cfg, t)["bits_per_byte"]
        row["compiled_bpb_other"] = _bpb(compiled, cfg, o)["bits_per_byte"]
        kept = sum(b["units_kept"] for b in report["blocks"])
        row["compiled_units_kept"] = kept / sum(b["units_original"] for b in report["blocks"])
    return row


@dataclass
class LMSeedResult:
    """What one seed produced."""

    rows: list[dict]  # one result row per method (specialised to the target)
    overlap: list[dict]  # Jaccard of the FFN unit masks per layer (if overlap)
    models: dict[str, torch.nn.Module]  # method -> the model specialised to the target
    foundation_seconds: float


def _save(model, name: str, cfg: LMStudyConfig, d: Path) -> None:
    from taugate.lm.adapters import save_adapter

    if name in GATED:
        save_adapter(model, d / name, cfg.gate_config())
    elif name == "lora":
        model.save_pretrained(str(d / name))  # peft's adapter_model.safetensors + config
    elif name in ("bitfit", "fullft"):
        from taugate.lm.checkpoint import save_gpt

        save_gpt(model, d / name)


def lm_specs(cfg: LMStudyConfig) -> list[tuple[str, str]]:
    """(method, text mode) of every model one seed trains: each method on the target mode, and
    TauGate on the other mode for the overlap table when ``cfg.overlap``."""
    return [(m, cfg.target) for m in cfg.methods] + (
        [("taugate", cfg.other)] if cfg.overlap else []
    )


@dataclass
class LMAdapted:
    """One (method, seed) of the language study: its model and, on the target mode, its row."""

    name: str  # the method
    mode: str  # the text mode it was specialised to
    model: torch.nn.Module
    row: dict | None  # the result row (None for TauGate on the other mode)


def adapt_lm(cfg: LMStudyConfig, seed: int, data: LMStudyData, base, name: str, mode: str,
             quiet: bool, f_seconds: float = 0.0) -> LMAdapted:  # fmt: skip
    """Specialise a copy of the foundation ``base`` with method ``name`` to ``mode`` and evaluate
    it. The method's own random init (LoRA's) is seeded by ``seed`` alone, so a (method, seed)
    gives the same model whichever methods ran before it, here or in a Ray task."""
    gc = method_gate_config(name, cfg.gate_config())  # None for the ungated methods
    torch.manual_seed(seed)
    model = build_lm_method(base, name, gc, lora_rank=cfg.lora_rank)
    tc = LMTrainConfig(steps=cfg.adapt_steps, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                       lr=cfg.method_lr(name), seed=seed + 1,
                       sparsity=gc.sparsity if gc else 0.0)  # fmt: skip
    t0 = time.perf_counter()
    if name != "frozen":
        train_lm(model, data.splits[mode].train, tc, desc=f"seed {seed} {name}@{mode}",
                 quiet=quiet)  # fmt: skip
    seconds = time.perf_counter() - t0
    row = None
    if mode == cfg.target:
        row = evaluate_method(model, name, cfg, data)
        row.update(seed=seed, sparsity=tc.sparsity, train_seconds=round(seconds, 3),
                   foundation_seconds=round(f_seconds, 3))  # fmt: skip
    return LMAdapted(name, mode, model, row)


def save_lm_adapted(a: LMAdapted, cfg: LMStudyConfig, seed: int, out: Path) -> None:
    d = out / "models" / f"seed{seed}"
    _save(a.model, a.name, cfg, d if a.mode == cfg.target else d / f"on-{a.mode}")


def lm_seed_result(cfg: LMStudyConfig, seed: int, data: LMStudyData, adapted: list[LMAdapted],
                   f_seconds: float) -> LMSeedResult:  # fmt: skip
    rows = [a.row for a in adapted if a.row is not None]
    models = {a.name: a.model for a in adapted if a.mode == cfg.target}
    gate_models = {a.mode: a.model for a in adapted if a.name == "taugate"}
    overlap = []
    if cfg.overlap and set(gate_models) == set(cfg.modes):
        overlap = overlap_rows(gate_models, cfg, data, seed)
    return LMSeedResult(rows, overlap, models, f_seconds)


def run_lm_seed(cfg: LMStudyConfig, seed: int, data: LMStudyData, out: Path | None,
                quiet: bool) -> LMSeedResult:  # fmt: skip
    """The foundation and every method of ``cfg`` for one seed; models under
    ``out/models/seed<seed>`` when ``out`` and ``cfg.save_models``."""
    from taugate.lm.checkpoint import save_gpt

    save = out is not None and cfg.save_models
    base, hist = train_foundation(cfg, seed, data, quiet)
    if save:
        save_gpt(base, out / "models" / f"seed{seed}" / "foundation")
    adapted = []
    for name, mode in lm_specs(cfg):
        a = adapt_lm(cfg, seed, data, base, name, mode, quiet, hist["seconds"])
        if save:
            save_lm_adapted(a, cfg, seed, out)
        adapted.append(a)
    return lm_seed_result(cfg, seed, data, adapted, hist["seconds"])
