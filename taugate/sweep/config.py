"""What a sweep runs: :class:`SweepConfig`, the per-seed study (a :class:`ReproduceConfig`) plus
the grid (lambdas x widths) and how each cell is compiled and timed."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields, replace

from taugate import backends as registry
from taugate.configs import ReproduceConfig
from taugate.errors import TauGateError

DEFAULT_LAMBDAS = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
# fields of the study that each cell sets itself (hidden widths, lambda, TauGate alone)
PER_CELL = ("hidden", "sparsity", "methods", "overlap", "save_models")


def _default_study() -> ReproduceConfig:
    return ReproduceConfig(methods=("taugate",), overlap=False, save_models=False, device="cpu")


@dataclass
class SweepConfig:
    """Every argument that changes a sweep's results (saved as ``sweep_config.json``)."""

    study: ReproduceConfig = field(default_factory=_default_study)  # data, seeds, epochs, lrs, s
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS  # sparsity weights to train TauGate at
    widths: tuple[int, ...] = (128,)  # hidden width(s); every hidden layer this wide
    depth: int = 2  # number of hidden layers
    batch_sizes: tuple[int, ...] = (1, 8, 64, 256)  # batch sizes to time
    backends: tuple[str, ...] = ()  # inference paths to time (empty: every available one)
    threads: int | None = None  # Numba / torch / BLAS / onnxruntime threads (None: all cores)
    calib_size: int = 2000  # calibration inputs for compaction
    rounds: int = 15  # timing samples per backend and batch size
    sample_seconds: float = 0.004  # target duration of one timing sample
    predictor_rank: int = 0  # rank of the low-rank predictor fitted per cell (0: none, exact only)
    margins: tuple[float, ...] = (1.0, 2.0, 3.0)  # predictor margins timed (with predictor_rank)

    def __post_init__(self) -> None:
        if not isinstance(self.study, ReproduceConfig):
            raise TauGateError(f"study must be a ReproduceConfig, got {type(self.study).__name__}")
        self.study = replace(self.study, methods=("taugate",), overlap=False, save_models=False)
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
        self.backends = registry.select(self.backends or None, defaults_only=False)[0]
        self.margins = tuple(float(m) for m in self.margins)
        if isinstance(self.predictor_rank, bool) or not isinstance(self.predictor_rank, int) \
                or self.predictor_rank < 0:  # fmt: skip
            raise TauGateError(
                f"predictor rank must be an integer >= 0, got {self.predictor_rank!r}"
            )
        if self.predictor_rank and (not self.margins or not all(map(math.isfinite, self.margins))):
            raise TauGateError(
                f"predictor margins must be finite numbers, got {list(self.margins)}"
            )
        approx = [b for b in self.backends if registry.get(b).approximate]
        if self.predictor_rank:  # the approximate backend is timed at every margin
            self.backends = (*self.backends, *(() if approx else ("rowskip-predicted",)))
        elif approx:
            raise TauGateError(f"backend {approx[0]} needs --predictor RANK (a predictor per cell)")
        for name, vals in (("width", self.widths), ("batch size", self.batch_sizes)):
            if not vals or min(vals) < 1:
                raise TauGateError(f"every {name} must be >= 1, got {list(vals)}")
        if self.depth < 1 or self.calib_size < 1 or self.rounds < 3:
            raise TauGateError("depth and calib size must be >= 1 and rounds >= 3")
        if self.threads is not None and self.threads < 1:
            raise TauGateError(f"threads must be >= 1, got {self.threads}")

    @classmethod
    def from_flat(cls, **kw) -> SweepConfig:
        """From one flat dict (``sweep_config.json``, keyword arguments): the study's fields go
        to ``study``, the others to the sweep."""
        study_names = {f.name for f in fields(ReproduceConfig)}
        study = {k: kw.pop(k) for k in list(kw) if k in study_names and k not in PER_CELL}
        unknown = sorted(set(kw) - {f.name for f in fields(cls)} - set(PER_CELL))
        if unknown:
            raise TauGateError(f"unknown sweep setting {unknown[0]!r}")
        for k in PER_CELL:
            kw.pop(k, None)
        study.setdefault("device", "cpu")
        for k in ("hidden", "methods"):
            if k in study:
                study[k] = tuple(study[k])
        return cls(study=ReproduceConfig(**study), **kw)  # __post_init__ sets TauGate alone

    def to_dict(self) -> dict:
        """Flat and JSON-able: the study's fields (but those each cell sets) and the sweep's; the
        predictor's only when it has one (so sweeps without stay resumable from older versions)."""
        d = flat_dict(self, PER_CELL)
        if not self.predictor_rank:
            del d["predictor_rank"], d["margins"]
        return d

    def cell_config(self, width: int, lam: float) -> ReproduceConfig:
        """The study of one cell: TauGate alone at ``lam``, hidden layers ``width`` wide."""
        return replace(self.study, hidden=(width,) * self.depth, sparsity=lam)

    def cell_key(self, width: int, seed: int, lam: float) -> str:
        """Hash of everything one cell's result depends on (the other lambdas / seeds do not)."""
        return cell_key_of(self.to_dict(), width, seed, lam)

    def runner(self, out, data_dir=None, quiet: bool = False):
        """The object that runs this sweep's cells (:func:`taugate.sweep.run.run_sweep`'s seam)."""
        from taugate.sweep.cells import CellRunner

        return CellRunner(self, out, data_dir, quiet)

    def write_outputs(self, out, rows: list[dict], meta: dict) -> None:
        from taugate.sweep.run import write_outputs

        write_outputs(out, rows, meta)

    def cells(self) -> list[tuple[int, int, float]]:
        """(width, seed, lambda) of every cell, in the order they run."""
        s = self.study
        return [(w, seed, lam) for w in self.widths for seed in range(s.seed0, s.seed0 + s.seeds)
                for lam in self.lambdas]  # fmt: skip


def flat_dict(cfg, per_cell) -> dict:
    """A sweep config as one flat JSON-able dict: its study's fields but ``per_cell`` (the ones
    each cell sets), then the sweep's own."""
    d = {k: v for k, v in cfg.study.to_dict().items() if k not in per_cell}
    for f in fields(cfg):
        if f.name != "study":
            v = getattr(cfg, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
    return d


def cell_key_of(flat: dict, width: int, seed: int, lam: float) -> str:
    """Hash of everything one cell's result depends on: the flat config without the grid's other
    points, and the cell's own (width, seed, lambda)."""
    d = {k: v for k, v in flat.items() if k not in ("lambdas", "seeds", "seed0", "widths")}
    d.update(width=width, seed=seed, lam=lam)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def differing_fields(a: dict, b: dict) -> list[str]:
    keys = list(dict.fromkeys([*a, *b]))
    return [k for k in keys if a.get(k) != b.get(k)]
