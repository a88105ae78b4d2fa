"""What a mode bank saves, measured (:func:`switch_cost`): switching modes against loading a
separate single-mode artifact, and a mixed-mode batch against one call per mode."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taugate.errors import TauGateError
from taugate.kernels.threads import check_threads, numba_threads


@dataclass
class SwitchCostConfig:
    """How :func:`switch_cost` measures."""

    repeats: int = 50  # timed samples per quantity (the median is reported)
    batch: int = 64  # rows of the mixed-mode batch (modes assigned round-robin)
    threads: int = 1  # Numba threads for every call
    seed: int = 0  # seed of the random inputs

    def __post_init__(self) -> None:
        for name, lo in (("repeats", 1), ("batch", 1), ("seed", 0)):
            v = getattr(self, name)
            if type(v) is not int or v < lo:
                raise TauGateError(f"SwitchCostConfig.{name} must be an integer >= {lo}, got {v!r}")
        check_threads(self.threads, "SwitchCostConfig.")


def _median_us(samples: list[int]) -> float:
    return float(np.median(samples)) / 1e3


def switch_cost(bank_path, cfg: SwitchCostConfig | None = None) -> dict:
    """Time, on the bank at ``bank_path`` (after warm-up, samples interleaved; medians in µs):

    - ``switch_us``: one batch-1 ``predict`` in a mode other than the previous call's (the switch
      and the call); ``same_mode_us``: the same call in the previous call's mode;
      ``reload_us``: what a server without a bank does to switch: load the mode's separate
      single-mode artifact (written once beforehand into a temp dir, so read from the page
      cache: a lower bound) and run the same call;
    - ``mixed_batch_us``: one ``predict(x, modes=[...])`` of ``cfg.batch`` rows, modes assigned
      round-robin; ``separate_calls_us``: one call per mode on its rows, each on its own loaded
      single-mode artifact (row skipping), results put back in row order.

    The ratios ``reload_vs_switch`` and ``separate_vs_mixed`` (> 1: the bank is faster) are
    included, and ``max_abs_diff_mixed_vs_separate``, the largest logit difference between the
    two ways (float rounding; a gate that ties with its threshold may flip). Nothing is asserted
    about speed; the numbers depend on the machine.
    """
    from taugate.artifact import write_artifact
    from taugate.bank.model import load_bank
    from taugate.runtime import load

    cfg = cfg or SwitchCostConfig()
    model = load_bank(bank_path)
    modes, M = list(model.modes), len(model.modes)
    rng = np.random.default_rng(cfg.seed)
    x1 = rng.random((1, model.n_in), dtype=np.float32)  # (1, n_in)
    xb = rng.random((cfg.batch, model.n_in), dtype=np.float32)  # (B, n_in)
    row_modes = [modes[b % M] for b in range(cfg.batch)]
    groups = [np.flatnonzero(np.arange(cfg.batch) % M == m) for m in range(M)]  # rows per mode
    clock = time.perf_counter_ns
    with tempfile.TemporaryDirectory(prefix="taugate-switch-") as tmp, numba_threads(cfg.threads):
        paths = [Path(tmp) / f"{n}.taugate" for n in modes]
        for n, p in zip(modes, paths, strict=True):
            write_artifact(p, model.spec.mode_spec(n))
        singles = [load(p) for p in paths]
        model.warmup()
        for s in singles:
            s.warmup()

        def separate() -> np.ndarray:
            out = np.empty((cfg.batch, model.n_out), np.float32)  # (B, n_out)
            for s, rows in zip(singles, groups, strict=True):
                if len(rows):
                    out[rows] = s.predict(xb[rows], backend="rowskip")
            return out

        diff = float(np.abs(separate() - model.predict(xb, modes=row_modes)).max())
        t = {k: [] for k in ("switch", "same", "reload", "mixed", "separate")}
        for r in range(cfg.repeats):
            a, b = modes[r % M], modes[(r + 1) % M]
            model.predict(x1, a)
            t0 = clock()
            model.predict(x1, b)  # a switch when the bank has two modes or more
            t1 = clock()
            model.predict(x1, b)
            t2 = clock()
            single = load(paths[(r + 1) % M])
            single.predict(x1, backend="rowskip")
            t3 = clock()
            model.predict(xb, modes=row_modes)
            t4 = clock()
            separate()
            t5 = clock()
            for k, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                t[k].append(dt)
    res = {
        "modes": modes,
        "batch": cfg.batch,
        "repeats": cfg.repeats,
        "threads": cfg.threads,
        "switch_us": _median_us(t["switch"]),
        "same_mode_us": _median_us(t["same"]),
        "reload_us": _median_us(t["reload"]),
        "mixed_batch_us": _median_us(t["mixed"]),
        "separate_calls_us": _median_us(t["separate"]),
        "max_abs_diff_mixed_vs_separate": diff,
    }
    res["reload_vs_switch"] = res["reload_us"] / res["switch_us"]
    res["separate_vs_mixed"] = res["separate_calls_us"] / res["mixed_batch_us"]
    return res
