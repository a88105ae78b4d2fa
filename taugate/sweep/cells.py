"""One sweep cell: TauGate at one (width, seed, lambda) trained by the reproduction's
:func:`~taugate.reproduce.study.run_seed`, then compiled, measured and timed. Foundations are
trained once per (width, seed) and kept on disk for every lambda and rerun."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from taugate.bench.run import bench_model
from taugate.bench.timing import TimingConfig
from taugate.compile import CompileConfig, compile_model
from taugate.errors import TauGateError
from taugate.nn import load_checkpoint, save_checkpoint
from taugate.reproduce.study import load_study_data, run_seed, train_foundation
from taugate.runtime import CompiledModel

BENCH_POOL = 1024  # test images the timings cycle through


@dataclass
class TrainedCell:
    """One cell trained, compiled and measured, not yet timed: what a Ray task sends back to the
    driver (:mod:`taugate.sweep.ray_run`), which saves the artifact and times it."""

    cell: dict  # the cell-level columns (accuracies, active shares, units kept, trained_on)
    compiled: CompiledModel  # the artifact (with its predictor, if any)
    module: torch.nn.Module  # the trained TauGate module (the torch-soft / torch-hard backends)
    name: str  # the artifact's folder name: w{width}-s{seed}-l{lam}.taugate
    predicted: dict = field(default_factory=dict)  # per predicted backend label, its quality


class CellRunner:
    """Holds the data (loaded once, or given) and runs the cells of one sweep configuration."""

    def __init__(self, cfg, out: Path, data_dir=None, quiet: bool = False, *, data=None) -> None:
        self.cfg, self.out, self.quiet = cfg, Path(out), quiet
        self.data = load_study_data(cfg.study, data_dir, quiet) if data is None else data
        self.device = torch.device("cpu")

    def provenance(self) -> dict:
        return {**self.data.provenance, "angle": self.cfg.study.angle}

    def foundation_key(self, width: int, seed: int) -> tuple[Path, dict]:
        """(file, key) of the foundation of this width and seed."""
        rc, d = self.cfg.cell_config(width, 0.0), self.data
        key = {"sizes": d.sizes_for(rc.hidden), "seed": seed,
               "schedule": rc.schedule(len(d.y_train))["foundation"], "lr": rc.foundation_lr,
               "batch": rc.batch_size, "momentum": rc.momentum, "data": d.provenance}  # fmt: skip
        return self.out / "foundations" / f"w{width}-s{seed}.safetensors", key

    def saved_foundation(self, width: int, seed: int):
        """The foundation on disk if one was trained with this key, else None."""
        path, key = self.foundation_key(width, seed)
        if path.exists():
            try:
                model, meta = load_checkpoint(path)
                if meta["provenance"].get("key") == key:
                    return model.requires_grad_(False)
            except TauGateError:
                pass  # unreadable (e.g. from an older run): train again
        return None

    def train_foundation(self, width: int, seed: int):
        """A new frozen foundation of this width and seed (not saved)."""
        rc = self.cfg.cell_config(width, 0.0)
        return train_foundation(rc, seed, self.data, self.device, self.quiet)[0]

    def save_foundation(self, width: int, seed: int, model) -> None:
        path, key = self.foundation_key(width, seed)
        save_checkpoint(model, path, sizes=key["sizes"], method="fullft", provenance={"key": key})

    def foundation(self, width: int, seed: int):
        """The frozen foundation of this width and seed: loaded if already trained, else trained
        and saved."""
        model = self.saved_foundation(width, seed)
        if model is None:
            model = self.train_foundation(width, seed)
            self.save_foundation(width, seed, model)
        return model

    def run(self, width: int, seed: int, lam: float) -> list[dict]:
        """One cell from start to end here: train, compile, save the artifact, time."""
        trained = self.train(width, seed, lam, self.foundation(width, seed))
        trained.compiled.save(self.out / "artifacts" / trained.name)
        return self.time(trained)

    def train(self, width: int, seed: int, lam: float, foundation) -> TrainedCell:
        """TauGate trained on ``foundation``, compiled (with its predictor) and measured: every
        deterministic column of the cell. Writes nothing (a Ray task runs it)."""
        cfg, d = self.cfg, self.data
        rc = cfg.cell_config(width, lam)
        res = run_seed(rc, seed, d, self.device, None, self.quiet, foundation=foundation)
        row, model = res.rows[0], res.models["taugate"].eval()
        cell = {"width": width, "seed": seed, "lambda": lam, "dataset": d.provenance.get("dataset"),
                "angle": rc.angle, "acc_0_soft": row["acc_0"], "acc_angle_soft": row["acc_angle"],
                "acc_0_hard": row["hard_acc_0"], "acc_angle_hard": row["hard_acc_angle"],
                "high_act_frac": row["high_act_frac"]}  # fmt: skip
        idx = np.sort(np.random.default_rng(0).permutation(len(d.xa_train))[: cfg.calib_size])
        spec, report = compile_model(model, d.xa_train[idx], CompileConfig())
        prov = {**self.provenance(), "method": "taugate", "lambda": lam, "seed": seed,
                "sizes": d.sizes_for(rc.hidden), "target_angle": rc.angle}  # fmt: skip
        predictor = None
        if cfg.predictor_rank:
            from taugate.mlp_predictor import fit_mlp_predictor
            from taugate.predictor import PredictorConfig

            m0 = 2.0 if 2.0 in cfg.margins else cfg.margins[0]  # the artifact's default margin
            pc = PredictorConfig(rank=min(cfg.predictor_rank, *spec.sizes[1:-1]), margin=m0)
            predictor = fit_mlp_predictor(spec, d.xa_train[idx], pc)
        compiled = CompiledModel(spec, {"provenance": prov, "compile": report}, predictor=predictor)
        for name, x in (("0", d.x0_test), ("angle", d.xa_test)):
            logits = compiled.predict(x, backend="compact")
            cell[f"acc_{name}_compiled"] = float((logits.argmax(1) == d.y_test).mean())
            if name == "angle":  # hard active share per hidden layer, over the whole test set
                for i, a in enumerate(compiled.last_stats["active_share"], 1):
                    cell[f"active_L{i}"] = a
        cell["active_mean"] = float(np.mean([cell[k] for k in cell if k.startswith("active_L")]))
        cell["units_kept"] = ";".join(map(str, report["units_kept"]))
        cell["trained_on"] = platform.node()
        quality = _predicted_quality(compiled, cfg.margins, d) if predictor else {}
        return TrainedCell(cell, compiled, model, f"w{width}-s{seed}-l{lam:g}.taugate", quality)

    def time(self, trained: TrainedCell) -> list[dict]:
        """Time every backend of a trained cell on this machine (recorded in ``timed_on``)."""
        cfg, d = self.cfg, self.data
        cell, compiled, full = trained.cell, trained.compiled, trained.predicted
        timing = TimingConfig(rounds=cfg.rounds, sample_seconds=cfg.sample_seconds)
        bench_rows, binfo = bench_model(compiled, d.xa_test[:BENCH_POOL], cfg.batch_sizes, cfg.backends,
                                        cfg.threads, timing, module=trained.module,
                                        margins=cfg.margins if full else None)  # fmt: skip
        exact_ms = {r["batch"]: r["median_ms"] for r in bench_rows if r["backend"] == "rowskip"}
        rows = []
        for r in bench_rows:
            r.pop("quality", None)  # measured on the whole test set instead (full)
            if r["backend"] in full:
                r.update(full[r["backend"]])
                r["speedup_vs_rowskip"] = exact_ms.get(r["batch"], float("nan")) / r["median_ms"]
            timed = {k: v for k, v in r.items() if not k.startswith("active_")}
            timed["timed_active_mean"] = r["active_mean"]  # share on the timed batch itself
            rows.append({**cell, **timed, "compile_seconds": binfo["compile_seconds"],
                         "timed_on": platform.node()})  # fmt: skip
        return rows


def _predicted_quality(compiled, margins, d) -> dict[str, dict]:
    """Per predicted backend label, its quality on the whole test set at the angle (flat
    ``pred_*`` fields and ``acc_angle_predicted``; see :func:`taugate.bench.predicted.quality`)."""
    from taugate.bench import predicted

    out = {}
    for name, variant in predicted.variants(compiled, margins).items():
        q = predicted.quality(variant, d.xa_test, d.y_test)
        out[name] = {"pred_margin": q["margin"], "pred_rank": q["rank"], "pred_recall": q["recall"],
                     "pred_computed": q["computed_share"], "pred_agreement": q["agreement"],
                     "acc_angle_predicted": q["accuracy_predicted"],
                     "pred_acc_change": q["accuracy_change_points"]}  # fmt: skip
    return out
