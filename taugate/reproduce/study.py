"""The paper's study, per seed: a foundation on a 50/50 mix of 0° and a rotated mode, frozen, then
each method specialised to the rotated mode. ``taugate reproduce`` runs it for every method and
seed (:mod:`taugate.reproduce.run`); ``taugate sweep`` runs the same :func:`run_seed` for TauGate
alone at each lambda and width, with its foundations kept on disk."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from taugate.configs import ReproduceConfig, TrainConfig
from taugate.nn import (
    MLP,
    build_method,
    count_parameters,
    gate_statistics,
    get_method,
    high_act_masks,
    method_gate_config,
    save_checkpoint,
)
from taugate.train import accuracy, mix_modes, set_seed, train


@dataclass
class StudyData:
    """The arrays a study needs, flattened to (N, D) float32, plus provenance."""

    x0_train: np.ndarray  # (N, D) training images at 0°
    xa_train: np.ndarray  # (N, D) the same images at the angle
    y_train: np.ndarray  # (N,)
    x0_test: np.ndarray  # (M, D)
    xa_test: np.ndarray  # (M, D)
    y_test: np.ndarray  # (M,)
    provenance: dict = field(default_factory=dict)

    @property
    def sizes_for(self):
        """``sizes_for(hidden)``: [n_in, *hidden, n_classes] of an MLP for this data."""
        n_in, n_out = self.x0_train.shape[1], int(self.y_train.max()) + 1
        return lambda hidden: [n_in, *hidden, n_out]


def load_study_data(cfg: ReproduceConfig, data_dir=None, quiet: bool = False) -> StudyData:
    """The study's arrays. A fallback to the embedded digits is always announced on stderr:
    ``quiet`` hides progress bars, not that the data is not what was asked for."""
    from taugate.data import load_dataset, rotated_split

    ds = load_dataset(cfg.dataset, data_dir, quiet=False)
    ntr = cfg.limit_train or len(ds.y_train)
    nte = cfg.limit_test or len(ds.y_test)
    return StudyData(
        x0_train=rotated_split(ds, "train", 0.0)[:ntr],
        xa_train=rotated_split(ds, "train", cfg.angle)[:ntr],
        y_train=ds.y_train[:ntr],
        x0_test=rotated_split(ds, "test", 0.0)[:nte],
        xa_test=rotated_split(ds, "test", cfg.angle)[:nte],
        y_test=ds.y_test[:nte],
        provenance={
            **ds.provenance(),
            "n_train_used": int(min(ntr, len(ds.y_train))),
            "n_test_used": int(min(nte, len(ds.y_test))),
        },  # fmt: skip
    )


def train_foundation(cfg: ReproduceConfig, seed: int, data: StudyData, device, quiet: bool):
    """A fresh MLP (seeded) trained on a seeded 50/50 mix of the 0° and rotated training images,
    then frozen on the CPU. Returns (model, training history)."""
    tc = foundation_train_config(cfg, seed, len(data.y_train))
    set_seed(seed)
    model = MLP(data.sizes_for(cfg.hidden))
    x_mix, _ = mix_modes(data.x0_train, data.xa_train, seed)
    hist = train(model, x_mix, data.y_train, tc, device, f"seed {seed} foundation", quiet)
    return model.cpu().requires_grad_(False), hist


def foundation_train_config(cfg: ReproduceConfig, seed: int, n_train: int) -> TrainConfig:
    epochs = cfg.schedule(n_train)["foundation"]["epochs"]
    return TrainConfig(epochs, cfg.batch_size, cfg.foundation_lr, cfg.momentum, seed=seed)


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """|A ∩ B| / |A ∪ B| of two boolean masks of equal shape (1.0 when both are empty)."""
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.require(x, np.float32, ["C", "W"]))


def evaluate(model, name: str, cfg: ReproduceConfig, data: StudyData, device) -> dict:
    """One result row: trainable parameters and accuracy at 0° and at the angle; for methods with
    thresholds also hard-gate accuracy, high-act frac, mean gate and the hard active share."""
    m = get_method(name)
    row: dict = {
        "method": m.name,
        "label": m.label if m.name != "lora" else f"LoRA r={cfg.lora_rank}",
        "params": count_parameters(model)[0],
        "acc_0": accuracy(model, data.x0_test, data.y_test, device),
        "acc_angle": accuracy(model, data.xa_test, data.y_test, device),
    }
    if m.thresholds:
        row["hard_acc_0"] = accuracy(model, data.x0_test, data.y_test, device, hard=True)
        row["hard_acc_angle"] = accuracy(model, data.xa_test, data.y_test, device, hard=True)
        model.cpu()
        stats = gate_statistics(model, _tensor(data.xa_test), cfg.high_act)
        row["high_act_frac"] = float(np.mean([s["high_act_frac"] for s in stats]))
        row["mean_gate"] = float(np.mean([s["mean_gate"] for s in stats]))
        for i, s in enumerate(stats, 1):
            row[f"hard_active_L{i}"] = s["hard_active"]
    return row


@dataclass
class SeedResult:
    """What one seed produced."""

    rows: list[dict]  # one result row per method (at the angle)
    overlap: list[dict]  # Jaccard per hidden layer (Table 3), if the 0° TauGate was trained
    models: dict[str, torch.nn.Module]  # method -> the model specialised to the angle
    foundation_seconds: float = 0.0  # 0 when the foundation was given


def adapt_specs(cfg: ReproduceConfig) -> list[tuple[str, float]]:
    """(method, target angle) of every model one seed trains: each method at the angle, and the
    0° TauGate for Table 3 when ``cfg.overlap``."""
    specs = [(m, cfg.angle) for m in cfg.methods]
    return specs + ([("taugate", 0.0)] if cfg.overlap else [])


@dataclass
class Adapted:
    """One (method, seed) of the study: its model and, at the angle, its result row."""

    name: str  # the method
    target: float  # the angle it was specialised to
    model: torch.nn.Module  # trained, on the CPU
    row: dict | None  # the result row (None for the 0° TauGate of Table 3)
    sparsity: float  # its lambda


def adapt(cfg: ReproduceConfig, seed: int, data: StudyData, device, foundation, name: str,
          target: float, quiet: bool, f_seconds: float = 0.0) -> Adapted:  # fmt: skip
    """Specialise a copy of ``foundation`` with method ``name`` to ``target`` and evaluate it.
    The method's own random init (LoRA's A) is seeded by ``seed`` alone, so a (method, seed)
    gives the same model whichever methods ran before it, here or in a Ray task."""
    gc = method_gate_config(name, cfg.gate_config())
    set_seed(seed)
    model = build_method(foundation, name, gc, cfg.lora_rank)
    x_target = data.xa_train if target == cfg.angle else data.x0_train
    lr = cfg.gate_lr if get_method(name).gated else cfg.adapt_lr
    adapt_epochs = cfg.schedule(len(data.y_train))["adapt"]["epochs"]
    acfg = TrainConfig(adapt_epochs, cfg.batch_size, lr, cfg.momentum,
                       sparsity=gc.sparsity if gc else 0.0, seed=seed)  # fmt: skip
    tag = name if target == cfg.angle else f"{name}@0"
    t0 = time.perf_counter()
    train(model, x_target, data.y_train, acfg, device, f"seed {seed} {tag}", quiet)
    model.cpu()
    row = None
    if target == cfg.angle:
        row = evaluate(model, name, cfg, data, device)
        row.update(seed=seed, train_seconds=round(time.perf_counter() - t0, 3),
                   foundation_seconds=round(f_seconds, 3))  # fmt: skip
    return Adapted(name, target, model, row, acfg.sparsity)


def save_foundation(
    foundation, cfg: ReproduceConfig, seed: int, data: StudyData, out: Path
) -> None:
    prov = {**data.provenance, "angle": cfg.angle, "seed": seed}
    save_checkpoint(foundation, out / "models" / f"seed{seed}" / "foundation.safetensors",
                    sizes=data.sizes_for(cfg.hidden), method="fullft",
                    provenance={**prov, "method": "foundation", "trained_on": "mix"})  # fmt: skip


def save_adapted(a: Adapted, cfg: ReproduceConfig, seed: int, data: StudyData, out: Path) -> None:
    prov = {**data.provenance, "angle": cfg.angle, "seed": seed}
    fname = f"{a.name}.safetensors" if a.target == cfg.angle else f"{a.name}-0deg.safetensors"
    save_checkpoint(a.model, out / "models" / f"seed{seed}" / fname,
                    sizes=data.sizes_for(cfg.hidden), method=a.name,
                    gate_config=method_gate_config(a.name, cfg.gate_config()),
                    lora_rank=cfg.lora_rank,
                    provenance={**prov, "method": a.name, "lambda": a.sparsity,
                                "target_angle": a.target})  # fmt: skip


def seed_result(cfg: ReproduceConfig, seed: int, data: StudyData, adapted: list[Adapted],
                f_seconds: float = 0.0) -> SeedResult:  # fmt: skip
    """The seed's rows (in method order), its Table-3 overlap and its models."""
    rows = [a.row for a in adapted if a.row is not None]
    models = {a.name: a.model for a in adapted if a.target == cfg.angle}
    gate_models = {a.target: a.model for a in adapted if a.name == "taugate"}
    overlap = []
    if cfg.overlap and {0.0, cfg.angle} <= set(gate_models) and cfg.angle != 0.0:
        m0 = high_act_masks(gate_models[0.0], _tensor(data.x0_test), cfg.high_act)
        ma = high_act_masks(gate_models[cfg.angle], _tensor(data.xa_test), cfg.high_act)
        for i, (a, b) in enumerate(zip(m0, ma), 1):
            overlap.append({"seed": seed, "layer": i, "jaccard": jaccard(a, b)})
    return SeedResult(rows, overlap, models, f_seconds)


def run_seed(cfg: ReproduceConfig, seed: int, data: StudyData, device, out: Path | None,
             quiet: bool, *, foundation=None) -> SeedResult:  # fmt: skip
    """Foundation (trained, unless given) and every method of ``cfg`` for one seed; the models
    are saved under ``out/models/seed<seed>`` when ``out`` and ``cfg.save_models``."""
    save = out is not None and cfg.save_models
    f_seconds = 0.0
    if foundation is None:
        foundation, hist = train_foundation(cfg, seed, data, device, quiet)
        f_seconds = hist["seconds"]
        if save:
            save_foundation(foundation, cfg, seed, data, out)
    adapted = []
    for name, target in adapt_specs(cfg):
        a = adapt(cfg, seed, data, device, foundation, name, target, quiet, f_seconds)
        if save:
            save_adapted(a, cfg, seed, data, out)
        adapted.append(a)
    return seed_result(cfg, seed, data, adapted, f_seconds)
