"""Benchmark one compiled model: every backend side by side at each batch size.

One row per (backend, batch): median latency and spread, speedup vs ``torch`` and vs ``dense``, the
work cap (dense multiply-adds / row-skip multiply-adds needed for these inputs) and the share of the
cap that row skipping reached. Outputs of all backends are checked to agree before anything is timed.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from taugate import backends as registry
from taugate.agreement import check_agreement
from taugate.bench.backends import make_fns, to_numpy
from taugate.bench.machine import thread_limit
from taugate.bench.timing import TimingConfig, time_interleaved
from taugate.errors import TauGateError


def batch_inputs(pool: np.ndarray, batch: int) -> np.ndarray:
    """The first ``batch`` rows of ``pool``, cycled if the pool is smaller."""
    if len(pool) == 0:
        raise TauGateError("no inputs to benchmark with")
    idx = np.arange(batch) % len(pool)
    return np.ascontiguousarray(pool[idx], np.float32)  # (batch, n_in)


BATCH1_POOL = 64  # batch-1 timings cycle through this many different inputs


def _cycling_fns(model, inputs, batch, backends, module, threads, approx=None):
    """Callables per backend; at batch 1 each call takes the next of ``BATCH1_POOL`` inputs, so
    latency and work cap are averages over inputs, not one input's luck. ``approx``: {label:
    model} of the approximate predicted variants, timed too but left out of the agreement check.
    Returns (fns, all inputs)."""
    n_variants = min(BATCH1_POOL, len(inputs)) if batch == 1 else 1
    x_all = batch_inputs(inputs, batch * n_variants)  # (n_variants * batch, n_in)
    xs = [x_all[k * batch : (k + 1) * batch] for k in range(n_variants)]
    exact = [b for b in backends if not registry.get(b).approximate]
    fns = make_fns(model, xs, exact, module, threads)
    for name, variant in (approx or {}).items():
        fns[name] = make_fns(variant, xs, ["rowskip-predicted"], None, threads)["rowskip-predicted"]
    outs: dict[str, list] = {n: [] for n in fns}
    for _ in range(n_variants):  # the backends cycle in lockstep: call k of each is input k
        for n, f in fns.items():
            outs[n].append(to_numpy(f()))
    # the trained module (torch-soft / torch-hard) is not the compiled function: compaction may
    # drop a unit that never fired on the calibration set; its accuracy is reported instead
    same = {n: np.concatenate(o) for n, o in outs.items()
            if n in exact and not registry.get(n).needs_module}  # fmt: skip
    check_agreement(model.spec, x_all, same)
    return fns, x_all


def bench_model(
    model,
    inputs: np.ndarray,
    batch_sizes=(1, 8, 64, 256),
    backends=("torch", "dense", "compact", "rowskip"),
    threads: int | None = None,
    timing: TimingConfig | None = None,
    module=None,
    progress=None,
    margins=None,
    labels=None,
) -> tuple[list[dict], dict]:
    """Time ``backends`` at every batch size; returns (rows, info with compile seconds).

    ``rowskip-predicted`` (approximate) is timed once per margin of ``margins`` (default: the
    predictor's own), as ``rowskip-predicted m=M`` rows that also carry ``quality`` (recall,
    agreement and, with ``labels`` for ``inputs``, the accuracy change: see
    :mod:`taugate.bench.predicted`)."""
    from taugate.bench import predicted

    approx, quality = {}, {}
    if "rowskip-predicted" in backends:
        approx = predicted.variants(model, margins)
        quality = {n: predicted.quality(v, inputs, labels) for n, v in approx.items()}
    if any(b < 1 for b in batch_sizes):
        raise TauGateError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    if threads is not None and threads > 1 and (timing is None or timing.cooldown_seconds < 0.015):
        # idle torch (OpenMP) workers spin ~10 ms after a call: let them fall asleep before the
        # next backend's sample, or they hold the core its own workers need
        timing = dataclasses.replace(timing or TimingConfig(), cooldown_seconds=0.015)
    rows = []
    with thread_limit(threads):
        compile_s = model.warmup()  # Numba compile or cache load, reported, never timed
        for v in approx.values():
            v.kernel("rowskip-predicted").warmup()
        for batch in batch_sizes:
            fns, x = _cycling_fns(model, inputs, batch, backends, module, threads, approx)
            model.predict(x, backend="compact")  # statistics over every input the timing uses
            stats = model.last_stats
            timings = time_interleaved(fns, timing)
            med = {n: t.median for n, t in timings.items()}
            for name, t in timings.items():
                row = {
                    "backend": name,
                    "batch": batch,
                    "median_ms": 1e3 * t.median,
                    "p25_ms": 1e3 * t.p25,
                    "p75_ms": 1e3 * t.p75,
                    "calls_per_sample": t.inner,
                    "speedup_vs_torch": med["torch"] / t.median if "torch" in med else float("nan"),
                    "speedup_vs_dense": med["dense"] / t.median if "dense" in med else float("nan"),
                    "work_cap": stats["work_cap"],
                }
                row["cap_share"] = row["speedup_vs_dense"] / row["work_cap"]
                if name in quality:
                    row["quality"] = quality[name]
                for i, a in enumerate(stats["active_share"], 1):
                    row[f"active_L{i}"] = a
                row["active_mean"] = (
                    float(np.mean(stats["active_share"])) if stats["active_share"] else 1.0
                )
                rows.append(row)
            if progress is not None:
                progress(batch)
    return rows, {"compile_seconds": compile_s, "timed_at": time.strftime("%Y-%m-%d %H:%M:%S")}
