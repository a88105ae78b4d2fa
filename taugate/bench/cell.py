"""One sweep cell: TauGate at one (width, seed, lambda) trained, hardened, compiled, measured and
timed. Foundations are trained once per (width, seed) and kept on disk for every lambda and rerun."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from taugate.bench.run import bench_model
from taugate.bench.timing import TimingConfig
from taugate.compile import CompileConfig, compile_model
from taugate.configs import ReproduceConfig, TrainConfig
from taugate.errors import TauGateError
from taugate.nn import build_method, load_checkpoint, method_gate_config, save_checkpoint
from taugate.reproduce import load_study_data, train_foundation
from taugate.runtime import CompiledModel
from taugate.train import accuracy, train

BENCH_POOL = 1024  # test images the timings cycle through


class CellRunner:
    """Holds the data (loaded once) and runs cells of one sweep configuration."""

    def __init__(self, cfg, out: Path, data_dir=None, quiet: bool = False) -> None:
        self.cfg, self.out, self.quiet = cfg, Path(out), quiet
        rc = ReproduceConfig(dataset=cfg.dataset, angle=cfg.angle, limit_train=cfg.limit_train,
                             limit_test=cfg.limit_test)  # fmt: skip
        self.data = load_study_data(rc, data_dir, quiet)
        self.device = torch.device("cpu")

    def provenance(self) -> dict:
        return {**self.data.provenance, "angle": self.cfg.angle}

    def foundation(self, width: int, seed: int):
        """The frozen foundation of this width and seed: loaded if already trained, else trained."""
        cfg, d = self.cfg, self.data
        sizes = [d.x0_train.shape[1], *([width] * cfg.depth), int(d.y_train.max()) + 1]
        key = {"sizes": sizes, "seed": seed, "epochs": cfg.foundation_epochs, "lr": cfg.foundation_lr,
               "batch": cfg.batch_size, "momentum": cfg.momentum, "data": d.provenance}  # fmt: skip
        path = self.out / "foundations" / f"w{width}-s{seed}.safetensors"
        if path.exists():
            try:
                model, meta = load_checkpoint(path)
                if meta["provenance"].get("key") == key:
                    return model.requires_grad_(False), sizes
            except TauGateError:
                pass  # unreadable (e.g. from an older run): train again
        tc = TrainConfig(
            cfg.foundation_epochs, cfg.batch_size, cfg.foundation_lr, cfg.momentum, seed=seed
        )
        model, _ = train_foundation(
            sizes, d, tc, self.device, f"foundation w{width} s{seed}", self.quiet
        )
        save_checkpoint(model, path, sizes=sizes, method="fullft", provenance={"key": key})
        return model, sizes

    def run(self, width: int, seed: int, lam: float) -> list[dict]:
        cfg, d = self.cfg, self.data
        foundation, sizes = self.foundation(width, seed)
        base = ReproduceConfig(sharpness=cfg.sharpness, sparsity=lam).gate_config()
        gc = method_gate_config("taugate", base)
        model = build_method(foundation, "taugate", gc)
        tc = TrainConfig(
            cfg.adapt_epochs, cfg.batch_size, cfg.gate_lr, cfg.momentum, sparsity=lam, seed=seed
        )
        train(
            model,
            d.xa_train,
            d.y_train,
            tc,
            self.device,
            f"taugate w{width} s{seed} λ={lam:g}",
            self.quiet,
        )
        model.cpu().eval()
        cell = {"width": width, "seed": seed, "lambda": lam, "dataset": d.provenance.get("dataset"),
                "angle": cfg.angle}  # fmt: skip
        for name, x in (("0", d.x0_test), ("angle", d.xa_test)):
            cell[f"acc_{name}_soft"] = accuracy(model, x, d.y_test)
            cell[f"acc_{name}_hard"] = accuracy(model, x, d.y_test, hard=True)
        idx = np.sort(np.random.default_rng(0).permutation(len(d.xa_train))[: cfg.calib_size])
        layers, tensors, info = compile_model(model, d.xa_train[idx], CompileConfig())
        extra = {
            "kept_units": info["kept_units"],
            "original_layers": info["original_layers"],
            "provenance": {
                **self.provenance(),
                "method": "taugate",
                "lambda": lam,
                "seed": seed,
                "sizes": sizes,
                "target_angle": cfg.angle,
            },  # fmt: skip
            "compile": info["report"],
        }
        compiled = CompiledModel.from_arrays(layers, tensors, extra)
        compiled.save(self.out / "artifacts" / f"w{width}-s{seed}-l{lam:g}.taugate")
        for name, x in (("0", d.x0_test), ("angle", d.xa_test)):
            logits = compiled.predict(x, backend="compact")
            cell[f"acc_{name}_compiled"] = float((logits.argmax(1) == d.y_test).mean())
            if name == "angle":  # hard active share per hidden layer, over the whole test set
                for i, a in enumerate(compiled.last_stats["active_share"], 1):
                    cell[f"active_L{i}"] = a
        cell["active_mean"] = float(np.mean([cell[k] for k in cell if k.startswith("active_L")]))
        cell["units_kept"] = ";".join(map(str, info["report"]["units_kept"]))
        timing = TimingConfig(rounds=cfg.rounds, sample_seconds=cfg.sample_seconds)
        bench_rows, binfo = bench_model(compiled, d.xa_test[:BENCH_POOL], cfg.batch_sizes, cfg.backends,
                                        cfg.threads, timing, module=model)  # fmt: skip
        rows = []
        for r in bench_rows:
            timed = {k: v for k, v in r.items() if not k.startswith("active_")}
            timed["timed_active_mean"] = r["active_mean"]  # share on the timed batch itself
            rows.append({**cell, **timed, "compile_seconds": binfo["compile_seconds"]})
        return rows
