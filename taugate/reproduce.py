"""The paper's study: a foundation on a 50/50 mix of 0° and a rotated mode, frozen, then every method
specialised to the rotated mode, for N seeds; results, tables, figure and saved models under ``out``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from taugate.configs import ALL_METHODS, ReproduceConfig, TrainConfig  # noqa: F401
from taugate.errors import TauGateError
from taugate.io import atomic_write_json, ensure_writable_dir
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
from taugate.report.results import write_results
from taugate.train import accuracy, mix_modes, set_seed, train


@dataclass
class StudyData:
    """The four arrays a study needs, flattened to (N, D) float32, plus provenance."""

    x0_train: np.ndarray
    xa_train: np.ndarray
    y_train: np.ndarray
    x0_test: np.ndarray
    xa_test: np.ndarray
    y_test: np.ndarray
    provenance: dict = field(default_factory=dict)


def load_study_data(cfg: ReproduceConfig, data_dir=None, quiet: bool = False) -> StudyData:
    from taugate.data import load_dataset, rotated_split

    ds = load_dataset(cfg.dataset, data_dir, quiet=quiet)
    ntr = cfg.limit_train or len(ds.y_train)
    nte = cfg.limit_test or len(ds.y_test)
    return StudyData(
        x0_train=rotated_split(ds, "train", 0.0)[:ntr],
        xa_train=rotated_split(ds, "train", cfg.angle)[:ntr],
        y_train=ds.y_train[:ntr],
        x0_test=rotated_split(ds, "test", 0.0)[:nte],
        xa_test=rotated_split(ds, "test", cfg.angle)[:nte],
        y_test=ds.y_test[:nte],
        provenance={**ds.provenance(), "n_train_used": int(ntr), "n_test_used": int(nte)},
    )


def train_foundation(sizes, data: StudyData, tc: TrainConfig, device, desc: str, quiet: bool):
    """A fresh MLP (seeded by ``tc.seed``) trained on a seeded 50/50 mix of the 0° and rotated
    training images, then frozen on the CPU. Returns (model, training history)."""
    set_seed(tc.seed)
    model = MLP(sizes)
    x_mix, _ = mix_modes(data.x0_train, data.xa_train, tc.seed)
    hist = train(model, x_mix, data.y_train, tc, device, desc, quiet)
    return model.cpu().requires_grad_(False), hist


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """|A ∩ B| / |A ∪ B| of two boolean masks of equal shape (1.0 when both are empty)."""
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def _lr_for(cfg: ReproduceConfig, method: str) -> float:
    return cfg.gate_lr if get_method(method).gated else cfg.adapt_lr


def _evaluate(model, name: str, cfg: ReproduceConfig, data: StudyData, device) -> dict:
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
        stats = gate_statistics(
            model, torch.from_numpy(np.require(data.xa_test, np.float32, ["C", "W"])), cfg.high_act
        )
        row["high_act_frac"] = float(np.mean([s["high_act_frac"] for s in stats]))
        row["mean_gate"] = float(np.mean([s["mean_gate"] for s in stats]))
        for i, s in enumerate(stats, 1):
            row[f"hard_active_L{i}"] = s["hard_active"]
    return row


def run_seed(
    cfg: ReproduceConfig, seed: int, data: StudyData, device, out: Path | None, quiet: bool
) -> tuple[list[dict], list[dict]]:
    """Foundation + every method for one seed. Returns (result rows, overlap rows)."""
    n_in, n_out = data.x0_train.shape[1], int(data.y_train.max()) + 1
    sizes = [n_in, *cfg.hidden, n_out]
    prov = {**data.provenance, "angle": cfg.angle, "seed": seed}
    fcfg = TrainConfig(
        cfg.foundation_epochs, cfg.batch_size, cfg.foundation_lr, cfg.momentum, seed=seed
    )
    foundation, hist = train_foundation(sizes, data, fcfg, device, f"seed {seed} foundation", quiet)
    models_dir = out / "models" / f"seed{seed}" if out is not None and cfg.save_models else None
    if models_dir is not None:
        save_checkpoint(
            foundation, models_dir / "foundation.safetensors", sizes=sizes, method="fullft",
            provenance={**prov, "method": "foundation", "trained_on": "mix"},
        )  # fmt: skip
    rows, gate_models = [], {}
    base_gc = cfg.gate_config()
    specs = [(m, cfg.angle) for m in cfg.methods]
    if cfg.overlap:
        specs.append(("taugate", 0.0))  # 0°-specialised TauGate, for Table 3
    for name, target in specs:
        gc = method_gate_config(name, base_gc)
        model = build_method(foundation, name, gc, cfg.lora_rank)
        x_target = data.xa_train if target == cfg.angle else data.x0_train
        acfg = TrainConfig(
            cfg.adapt_epochs, cfg.batch_size, _lr_for(cfg, name), cfg.momentum,
            sparsity=gc.sparsity if gc else 0.0, seed=seed,
        )  # fmt: skip
        tag = name if target == cfg.angle else f"{name}@0"
        t0 = time.perf_counter()
        train(model, x_target, data.y_train, acfg, device, f"seed {seed} {tag}", quiet)
        model.cpu()
        if target == cfg.angle:
            row = _evaluate(model, name, cfg, data, device)
            row.update(seed=seed, train_seconds=round(time.perf_counter() - t0, 3))
            rows.append(row)
        if name == "taugate":
            gate_models[target] = model
        if models_dir is not None:
            fname = f"{name}.safetensors" if target == cfg.angle else f"{name}-0deg.safetensors"
            save_checkpoint(
                model, models_dir / fname, sizes=sizes, method=name, gate_config=gc,
                lora_rank=cfg.lora_rank,
                provenance={**prov, "method": name, "lambda": acfg.sparsity, "target_angle": target},
            )  # fmt: skip
    overlap = []
    if cfg.overlap and {0.0, cfg.angle} <= set(gate_models) and cfg.angle != 0.0:
        m0 = high_act_masks(
            gate_models[0.0],
            torch.from_numpy(np.require(data.x0_test, np.float32, ["C", "W"])),
            cfg.high_act,
        )
        ma = high_act_masks(
            gate_models[cfg.angle],
            torch.from_numpy(np.require(data.xa_test, np.float32, ["C", "W"])),
            cfg.high_act,
        )
        for i, (a, b) in enumerate(zip(m0, ma), 1):
            overlap.append({"seed": seed, "layer": i, "jaccard": jaccard(a, b)})
    for r in rows:
        r["foundation_seconds"] = round(hist["seconds"], 3)
    return rows, overlap


def reproduce(cfg: ReproduceConfig, out: str | Path, data_dir=None, quiet: bool = False) -> dict:
    """Run the whole study and write everything under ``out``. Returns a summary dict."""
    from taugate.device import device_name, select_device

    out = ensure_writable_dir(out)
    device = select_device(cfg.device)
    t0 = time.perf_counter()
    data = load_study_data(cfg, data_dir, quiet)
    t_data = time.perf_counter() - t0
    meta = {
        "config": cfg.to_dict(),
        "data": data.provenance,
        "device": device_name(device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "command": "taugate reproduce --config config.json",
    }
    atomic_write_json(out / "config.json", meta)
    rows: list[dict] = []
    overlap: list[dict] = []
    for seed in range(cfg.seed0, cfg.seed0 + cfg.seeds):
        r, o = run_seed(cfg, seed, data, device, out, quiet)
        rows += r
        overlap += o
        for row in r:
            row.update(
                dataset=data.provenance.get("dataset"), source=data.provenance.get("source"),
                split=data.provenance.get("split"), angle=cfg.angle, device=device_name(device),
            )  # fmt: skip
        write_results(out, rows, overlap, cfg.angle, data.provenance, cfg.lora_rank)
    elapsed = time.perf_counter() - t0
    meta["timing"] = {"data_seconds": round(t_data, 3), "total_seconds": round(elapsed, 3)}
    atomic_write_json(out / "config.json", meta)
    return {
        "out": str(out),
        "rows": rows,
        "overlap": overlap,
        "seconds": elapsed,
        "data": data.provenance,
    }


def config_from_file(path: str | Path) -> ReproduceConfig:
    """Rebuild the ReproduceConfig saved in a run's ``config.json``."""
    import json

    p = Path(path)
    try:
        raw = json.loads(p.read_text())
        d = raw.get("config", raw)
        d["methods"], d["hidden"] = tuple(d["methods"]), tuple(d["hidden"])
        return ReproduceConfig(**d)
    except FileNotFoundError:
        raise TauGateError(f"config file {p} does not exist") from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise TauGateError(f"{p}: not a reproduce config.json ({e})") from None
