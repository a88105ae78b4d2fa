"""Side-by-side timing: every backend runs on the same inputs, interleaved round by round, after
warm-up, so that machine noise hits all of them alike; results are ratios of medians.

A *sample* is the mean time of ``inner`` back-to-back calls (``inner`` chosen per backend so that a
sample lasts about ``sample_seconds``, and is at least ``min_calls``); each round takes one sample of
every backend, in an order rotated from round to round.

Before each sample the harness sleeps ``cooldown_seconds`` and then makes untimed *lead* calls, a
``lead_share`` of the sample's calls (at least one). The pause lets the previous backend's idle
worker threads (OpenMP, OpenBLAS, Numba) stop spinning and go to sleep, so they do not steal a core
from the backend being timed; the lead calls wake this backend's own workers (a first wake-up on a
virtual machine can take a millisecond) and bring its weights back into the caches that the other
backends flushed. Each backend is thus timed in the steady state of back-to-back calls, as a server
answering a stream of requests would run it, undisturbed by the others.

Why not pytest-benchmark or ``timeit`` alone: they time one callable after another, so on a noisy
2-core machine a slow minute lands on whichever backend ran then, and they do not pause for other
thread pools to fall asleep. Ratios need the backends interleaved in one process (pytest-benchmark
still runs the kernel suite in ``bench/``, one group per shape).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from taugate.errors import TauGateError


@dataclass
class TimingConfig:
    """How long and how often to time."""

    rounds: int = 21  # samples per backend (odd, so the median is a sample)
    sample_seconds: float = 0.004  # target duration of one sample
    warmup_calls: int = 3  # untimed calls per backend before timing (after compilation)
    max_inner: int = 10_000  # cap on calls per sample
    min_calls: int = 8  # floor on calls per sample: slow calls are timed in a steady state too
    cooldown_seconds: float = 0.003  # pause before each sample: other backends' workers fall asleep
    lead_share: float = 0.5  # untimed calls before each sample, as a share of its calls (>= 1)

    def __post_init__(self) -> None:
        if self.rounds < 3:
            raise TauGateError(f"timing rounds must be >= 3, got {self.rounds}")
        if not self.sample_seconds > 0:
            raise TauGateError(f"sample_seconds must be > 0, got {self.sample_seconds}")
        if self.warmup_calls < 1:
            raise TauGateError(f"warmup_calls must be >= 1, got {self.warmup_calls}")
        if not 1 <= self.min_calls <= self.max_inner:
            raise TauGateError(f"min_calls must be from 1 to max_inner, got {self.min_calls}")
        if self.cooldown_seconds < 0 or self.lead_share < 0:
            raise TauGateError("cooldown_seconds and lead_share must be >= 0")


@dataclass
class Timing:
    """Per-call latencies (seconds) of one backend."""

    samples: np.ndarray  # (rounds,)
    inner: int  # calls per sample

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def p25(self) -> float:
        return float(np.percentile(self.samples, 25))

    @property
    def p75(self) -> float:
        return float(np.percentile(self.samples, 75))


def _calibrate(fn: Callable[[], object], target: float, max_inner: int) -> int:
    """Calls per sample so that one sample lasts about ``target`` seconds."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= target / 4 or n >= max_inner:
            return int(min(max_inner, max(1, round(n * target / max(dt, 1e-9)))))
        n *= 4


def time_interleaved(
    fns: dict[str, Callable[[], object]], cfg: TimingConfig | None = None
) -> dict[str, Timing]:
    """Time every callable side by side; returns per-call latency samples per name."""
    cfg = cfg or TimingConfig()
    names = list(fns)
    for name in names:  # warm-up (Numba is compiled before this, by the caller)
        for _ in range(cfg.warmup_calls):
            fns[name]()
    inner = {
        n: max(cfg.min_calls, _calibrate(fns[n], cfg.sample_seconds, cfg.max_inner)) for n in names
    }
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(cfg.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate
        for name in order:
            fn, k = fns[name], inner[name]
            if cfg.cooldown_seconds:
                time.sleep(cfg.cooldown_seconds)
            for _ in range(max(1, int(k * cfg.lead_share))):
                fn()
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            samples[name].append((time.perf_counter() - t0) / k)
    return {n: Timing(np.asarray(samples[n]), inner[n]) for n in names}
