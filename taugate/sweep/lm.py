"""The language-model kind of sweep: TauGate on the own GPT (the language study's
:class:`~taugate.reproduce_lm.config.LMStudyConfig`) at each lambda x FFN width x seed, evaluated
in bits per byte (soft, hard, compiled) and timed at decode (``taugate bench-lm``'s paths).

It enters :func:`taugate.sweep.run.run_sweep` through the same seam as the MLP sweep: a config
with ``cells`` / ``cell_key`` / ``to_dict`` / ``threads``, a ``runner`` and ``write_outputs``."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from taugate.errors import TauGateError
from taugate.reproduce_lm.config import LMStudyConfig
from taugate.sweep.config import cell_key_of, flat_dict

DEFAULT_LM_LAMBDAS = (0.0, 3e-3, 1e-2, 3e-2, 1e-1)
PER_CELL = ("d_ffn", "sparsity", "methods", "overlap", "save_models", "seeds", "seed0")


def _default_study() -> LMStudyConfig:
    return LMStudyConfig(methods=("taugate",), overlap=False, save_models=False)


@dataclass
class LMSweepConfig:
    """Every argument that changes a language-model sweep's results (``sweep_config.json``)."""

    study: LMStudyConfig = field(default_factory=_default_study)  # model, data, steps, lrs
    lambdas: tuple[float, ...] = DEFAULT_LM_LAMBDAS  # sparsity weights to train TauGate at
    widths: tuple[int, ...] = (512,)  # FFN hidden units per block
    seeds: int = 1  # seeds seed0 .. seed0 + seeds - 1
    seed0: int = 0  # first seed
    batch_sizes: tuple[int, ...] = (1, 8)  # decode batch sizes to time
    prompt_len: int = 64  # tokens of the prompt on whose KV cache each decode step runs
    threads: int | None = 1  # torch / BLAS / Numba threads while timing (None: all cores)
    rounds: int = 15  # timing samples per path and batch size
    sample_seconds: float = 0.004  # target duration of one timing sample
    kind: str = "lm"  # marks the config in sweep_config.json

    def __post_init__(self) -> None:
        if not isinstance(self.study, LMStudyConfig):
            raise TauGateError(f"study must be an LMStudyConfig, got {type(self.study).__name__}")
        self.study = replace(self.study, methods=("taugate",), overlap=False, save_models=False)
        self.lambdas = tuple(float(v) for v in self.lambdas)
        if not self.lambdas or any(not math.isfinite(v) or v < 0 for v in self.lambdas):
            raise TauGateError(
                f"every lambda must be a finite number >= 0, got {list(self.lambdas)}"
            )
        if len(set(self.lambdas)) != len(self.lambdas):
            raise TauGateError(f"the lambda list repeats a value: {list(self.lambdas)}")
        self.widths, self.batch_sizes = tuple(self.widths), tuple(self.batch_sizes)
        for name, vals in (("width", self.widths), ("batch size", self.batch_sizes)):
            if not vals or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals
            ):
                raise TauGateError(f"every {name} must be an integer >= 1, got {list(vals)}")
        if self.seeds < 1 or self.seed0 < 0 or self.rounds < 3:
            raise TauGateError("seeds must be >= 1, seed0 >= 0 and rounds >= 3")
        if not 1 <= self.prompt_len < self.study.seq_len:
            raise TauGateError(f"prompt_len must be in [1, seq_len = {self.study.seq_len}), "
                               f"got {self.prompt_len}")  # fmt: skip
        if self.threads is not None and self.threads < 1:
            raise TauGateError(f"threads must be >= 1, got {self.threads}")
        if self.kind != "lm":
            raise TauGateError(f"LMSweepConfig.kind must be 'lm', got {self.kind!r}")

    @classmethod
    def from_flat(cls, **kw) -> LMSweepConfig:
        """From one flat dict (``sweep_config.json``): the study's fields go to ``study``."""
        names = {f.name for f in fields(LMStudyConfig)}
        study = {k: kw.pop(k) for k in list(kw) if k in names and k not in PER_CELL}
        for k in PER_CELL:
            if k not in {f.name for f in fields(cls)}:
                kw.pop(k, None)
        unknown = sorted(set(kw) - {f.name for f in fields(cls)})
        if unknown:
            raise TauGateError(f"unknown language-model sweep setting {unknown[0]!r}")
        return cls(study=LMStudyConfig(**study), **kw)

    def to_dict(self) -> dict:
        return flat_dict(self, PER_CELL)

    def cell_config(self, width: int, lam: float, seed: int) -> LMStudyConfig:
        return replace(self.study, d_ffn=width, sparsity=lam, seed0=seed, seeds=1)

    def cell_key(self, width: int, seed: int, lam: float) -> str:
        return cell_key_of(self.to_dict(), width, seed, lam)

    def cells(self) -> list[tuple[int, int, float]]:
        return [(w, s, lam) for w in self.widths for s in range(self.seed0, self.seed0 + self.seeds)
                for lam in self.lambdas]  # fmt: skip

    def runner(self, out: Path, data_dir=None, quiet: bool = False) -> LMCellRunner:
        return LMCellRunner(self, out, data_dir, quiet)

    def write_outputs(self, out: Path, rows: list[dict], meta: dict) -> None:
        from taugate.sweep.lm_report import write_lm_outputs

        write_lm_outputs(out, rows, meta)


class LMCellRunner:
    """Holds the text (loaded once) and runs the cells of one language-model sweep."""

    def __init__(self, cfg: LMSweepConfig, out: Path, data_dir=None, quiet: bool = False) -> None:
        from taugate.reproduce_lm.study import load_lm_study_data

        self.cfg, self.out, self.quiet = cfg, Path(out), quiet
        self.data = load_lm_study_data(cfg.study, data_dir)

    def provenance(self) -> dict:
        return self.data.record()

    def foundation(self, width: int, seed: int):
        """The frozen foundation of this FFN width and seed: loaded if trained before with the
        same settings, else trained and saved under ``foundations/``."""
        from taugate.io import atomic_write_json
        from taugate.lm.checkpoint import load_lm, save_gpt
        from taugate.reproduce_lm.study import train_foundation

        sc = self.cfg.cell_config(width, 0.0, seed)
        key = {k: v for k, v in sc.to_dict().items()
               if k.startswith(("n_", "d_", "activation", "max_bytes", "valid", "test", "seq_len",
                                "batch_size", "foundation_", "modes"))}  # fmt: skip
        key |= {"seed": seed, "data": self.provenance()}
        d = self.out / "foundations" / f"w{width}-s{seed}"
        kpath = d.with_suffix(".json")
        if kpath.exists() and (d / "model.safetensors").exists():
            try:
                if json.loads(kpath.read_text()) == json.loads(json.dumps(key)):
                    return load_lm(d).requires_grad_(False).eval()
            except (OSError, ValueError, TauGateError):
                pass  # unreadable (e.g. from an older run): train again
        model, _ = train_foundation(sc, seed, self.data, self.quiet)
        save_gpt(model, d)
        atomic_write_json(kpath, key)
        return model

    def run(self, width: int, seed: int, lam: float) -> list[dict]:
        from taugate.bench.timing import TimingConfig
        from taugate.lm.bench import bench_lm
        from taugate.lm.methods import build_lm_method
        from taugate.lm.train import LMTrainConfig, train_lm
        from taugate.nn.methods import method_gate_config
        from taugate.reproduce_lm.study import evaluate_method

        cfg, d = self.cfg, self.data
        sc = self.cfg.cell_config(width, lam, seed)
        base = self.foundation(width, seed)
        model = build_lm_method(base, "taugate", method_gate_config("taugate", sc.gate_config()))
        tc = LMTrainConfig(steps=sc.adapt_steps, batch_size=sc.batch_size, seq_len=sc.seq_len,
                           lr=sc.gate_lr, seed=seed + 1, sparsity=lam)  # fmt: skip
        train_lm(model, d.splits[sc.target].train, tc, desc=f"w{width} s{seed} lambda {lam:g}",
                 quiet=self.quiet)  # fmt: skip
        row = evaluate_method(model, "taugate", sc, d)
        layers = [k for k in row if k.startswith("hard_active_L")]
        cell = {"width": width, "seed": seed, "lambda": lam, "target": sc.target, "other": sc.other,
                **{k: row[k] for k in row if k.startswith(("bpb", "hard_", "compiled_", "high_act"))},
                "active_mean": sum(row[k] for k in layers) / max(1, len(layers))}  # fmt: skip
        timing = TimingConfig(rounds=cfg.rounds, sample_seconds=cfg.sample_seconds)
        calib = d.splits[sc.target].train[: sc.calib_tokens]
        rows, info = bench_lm(base, copy.deepcopy(model), calib, batch_sizes=cfg.batch_sizes,
                              prompt_len=cfg.prompt_len, threads=cfg.threads, timing=timing,
                              seed=seed, prompt_tokens=d.splits[sc.target].test)  # fmt: skip
        out = []
        for r in rows:
            b = info["batches"][r["batch"]]
            out.append({**cell, **r, "agreement": b["reference"],
                        "ffn_share": b["ffn_share"], "ffn_work_cap": b["ffn_work_cap"],
                        "e2e_cap": b["e2e_cap"], "decode_active_mean":
                        sum(b["active_share"]) / max(1, len(b["active_share"]))})  # fmt: skip
        return out
