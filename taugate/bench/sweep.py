"""``taugate sweep``: TauGate trained at several lambdas (x seeds x widths), hardened, compiled, and
every inference backend timed at several batch sizes, with accuracy next to speed.

Layout of ``out``: ``sweep_config.json`` (the arguments), ``foundations/`` (one per width x seed,
reused across lambdas and reruns), ``cells/`` (one JSON per width x seed x lambda, written atomically
when the cell is finished: a rerun skips it), ``artifacts/`` (the compiled models), then
``sweep.csv``, ``sweep.json``, ``summary.md`` and ``figures/`` rebuilt from all finished cells.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from taugate.bench.backends import ALL_BACKENDS, parse_backends
from taugate.errors import TauGateError
from taugate.io import atomic_write_json, atomic_write_text, ensure_writable_dir

DEFAULT_LAMBDAS = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


@dataclass
class SweepConfig:
    """Every argument that changes a sweep's results (saved as ``sweep_config.json``)."""

    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS  # sparsity weights to train TauGate at
    seeds: int = 3  # seeds seed0 .. seed0 + seeds - 1
    seed0: int = 0  # first seed
    dataset: str = "mnist"  # data set name
    angle: float = 45.0  # the target mode (degrees)
    widths: tuple[int, ...] = (128,)  # hidden width(s); every hidden layer this wide
    depth: int = 2  # number of hidden layers
    batch_sizes: tuple[int, ...] = (1, 8, 64, 256)  # batch sizes to time
    backends: tuple[str, ...] = ALL_BACKENDS  # inference paths to time
    threads: int | None = None  # Numba / torch / BLAS threads (None: all cores)
    foundation_epochs: int = 2  # foundation epochs on the 50/50 mix
    adapt_epochs: int = 1  # TauGate epochs on the target mode
    batch_size: int = 256  # SGD batch
    foundation_lr: float = 0.05  # foundation learning rate
    gate_lr: float = 2.0  # TauGate learning rate
    momentum: float = 0.9  # SGD momentum
    sharpness: float = 10.0  # gate sharpness s
    calib_size: int = 2000  # calibration inputs for compaction
    limit_train: int | None = None  # first N training images only
    limit_test: int | None = None  # first N test images only
    rounds: int = 15  # timing samples per backend and batch size
    sample_seconds: float = 0.004  # target duration of one timing sample

    def __post_init__(self) -> None:
        self.lambdas = tuple(float(v) for v in self.lambdas)
        if not self.lambdas:
            raise TauGateError("the lambda list is empty")
        bad = [v for v in self.lambdas if not math.isfinite(v) or v < 0]
        if bad:
            raise TauGateError(f"lambda must be a finite number >= 0, got {bad[0]}")
        if len(set(self.lambdas)) != len(self.lambdas):
            raise TauGateError(f"the lambda list repeats a value: {list(self.lambdas)}")
        self.widths = tuple(int(w) for w in self.widths)
        self.batch_sizes = tuple(int(b) for b in self.batch_sizes)
        self.backends = parse_backends(self.backends)
        for name, vals in (("width", self.widths), ("batch size", self.batch_sizes)):
            if not vals or min(vals) < 1:
                raise TauGateError(f"every {name} must be >= 1, got {list(vals)}")
        if self.seeds < 1 or self.depth < 1 or self.calib_size < 1 or self.rounds < 3:
            raise TauGateError("seeds, depth and calib size must be >= 1 and rounds >= 3")
        if self.threads is not None and self.threads < 1:
            raise TauGateError(f"threads must be >= 1, got {self.threads}")
        if not math.isfinite(self.angle):
            raise TauGateError(f"angle must be a finite number, got {self.angle}")

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def cell_key(self, width: int, seed: int, lam: float) -> str:
        """Hash of everything one cell's result depends on (the other lambdas / seeds do not)."""
        d = self.to_dict()
        for k in ("lambdas", "seeds", "seed0", "widths"):
            d.pop(k)
        d.update(width=width, seed=seed, lam=lam)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def differing_fields(a: dict, b: dict) -> list[str]:
    return [f.name for f in fields(SweepConfig) if a.get(f.name) != b.get(f.name)]


def prepare_out(cfg: SweepConfig, out: Path, resume: bool, force: bool) -> None:
    """Check ``out`` against a sweep already there: same arguments resume; different ones need
    ``resume`` (reuse cells whose key still matches). ``force`` always starts over."""
    ensure_writable_dir(out)
    cfg_path = out / "sweep_config.json"
    if cfg_path.exists():
        try:
            prev = json.loads(cfg_path.read_text())["config"]
        except (ValueError, KeyError, TypeError):
            prev = None
        diff = differing_fields(prev, cfg.to_dict()) if isinstance(prev, dict) else ["(unreadable)"]
        if force:  # start over, whatever the previous arguments were
            for sub in ("cells", "foundations", "artifacts", "figures"):
                shutil.rmtree(out / sub, ignore_errors=True)
        elif diff and not resume:
            raise TauGateError(
                f"{out} holds a sweep with different arguments ({', '.join(diff)}); pass --resume "
                "to reuse its finished cells that still match, or --force to start over"
            )
    atomic_write_json(cfg_path, {"config": cfg.to_dict()})


def cell_path(out: Path, width: int, seed: int, lam: float) -> Path:
    return out / "cells" / f"w{width}-s{seed}-l{lam:g}.json"


def load_cell(path: Path, key: str) -> list[dict] | None:
    """A finished cell's rows, or None if missing, unreadable or computed with other arguments."""
    try:
        cell = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cell["rows"] if isinstance(cell, dict) and cell.get("key") == key else None


def run_sweep(
    cfg: SweepConfig, out, data_dir=None, resume=False, force=False, quiet=False
) -> list[dict]:
    """Run (or finish) the sweep; returns all rows and writes every output file."""
    from tqdm.auto import tqdm

    from taugate.bench.cell import CellRunner
    from taugate.bench.run import machine_info

    out = Path(out)
    prepare_out(cfg, out, resume, force)
    runner = CellRunner(cfg, out, data_dir, quiet)
    cells = [
        (w, s, lam)
        for w in cfg.widths
        for s in range(cfg.seed0, cfg.seed0 + cfg.seeds)
        for lam in cfg.lambdas
    ]
    rows: list[dict] = []
    bar = tqdm(cells, desc="sweep", unit="cell", disable=quiet)
    for width, seed, lam in bar:
        bar.set_postfix(width=width, seed=seed, lam=f"{lam:g}")
        key = cfg.cell_key(width, seed, lam)
        path = cell_path(out, width, seed, lam)
        cell_rows = load_cell(path, key)
        if cell_rows is None:
            cell_rows = runner.run(width, seed, lam)
            atomic_write_json(
                path, {"key": key, "width": width, "seed": seed, "lambda": lam, "rows": cell_rows}
            )
        rows += cell_rows
    bar.close()
    meta = {**machine_info(cfg.threads), "dataset": runner.provenance(), "config": cfg.to_dict()}
    write_outputs(out, rows, meta)
    return rows


def write_outputs(out: Path, rows: list[dict], meta: dict) -> None:
    """sweep.csv, sweep.json, summary.md and figures, each replaced atomically."""
    from taugate.bench.report import write_figures, write_summary
    from taugate.configs import ReproduceConfig
    from taugate.report.results import to_csv

    first = ["width", "lambda", "seed", "backend", "batch", "acc_0_soft", "acc_angle_soft", "acc_0_hard",
             "acc_angle_hard", "acc_0_compiled", "acc_angle_compiled", "active_mean", "median_ms", "p25_ms",
             "p75_ms", "speedup_vs_torch", "speedup_vs_dense", "work_cap", "cap_share"]  # fmt: skip
    atomic_write_text(out / "sweep.csv", to_csv(rows, first))
    atomic_write_json(out / "sweep.json", {"machine": meta, "rows": _json_safe(rows)})
    write_summary(out, rows, meta)
    write_figures(out, rows, paper_lambda=ReproduceConfig().sparsity)


def _json_safe(rows: list[dict]) -> list[dict]:
    def fix(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return [{k: fix(v) for k, v in r.items()} for r in rows]
