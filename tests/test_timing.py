"""The timing harness: interleaved rounds, untimed lead calls, cool-down, config checks."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from taugate.bench import run as bench_run
from taugate.bench.timing import Timing, TimingConfig, time_interleaved
from taugate.errors import TauGateError
from taugate.runtime import random_model


def test_config_is_checked():
    for bad in ({"rounds": 2}, {"sample_seconds": 0}, {"warmup_calls": 0},
                {"cooldown_seconds": -1}, {"lead_share": -0.1}, {"min_calls": 0},
                {"min_calls": 5, "max_inner": 4}):  # fmt: skip
        with pytest.raises(TauGateError):
            TimingConfig(**bad)


def test_every_sample_follows_untimed_lead_calls_and_rounds_interleave():
    calls: dict[str, list[int]] = {"a": [], "b": []}
    order: list[str] = []

    def make(name):
        def fn():
            calls[name].append(len(order))
            order.append(name)

        return fn

    cfg = TimingConfig(rounds=5, sample_seconds=0.0002, warmup_calls=2, cooldown_seconds=0.0,
                       lead_share=0.5, max_inner=4, min_calls=3)  # fmt: skip
    out = time_interleaved({"a": make("a"), "b": make("b")}, cfg)
    per_round = {n: t.inner + max(1, int(t.inner * cfg.lead_share)) for n, t in out.items()}
    for name, t in out.items():
        assert t.samples.shape == (5,) and (t.samples > 0).all()
        assert 3 <= t.inner <= 4  # at least min_calls, at most max_inner
        assert len(calls[name]) >= 5 * per_round[name] + cfg.warmup_calls  # + calibration calls
    # the 5 rounds: a block (lead + timed calls) of each backend, the order rotating each round
    expected = []
    for r in range(5):
        for name in ["a", "b"] if r % 2 == 0 else ["b", "a"]:
            expected += [name] * per_round[name]
    assert order[-len(expected) :] == expected


def test_several_threads_lengthen_the_cool_down(monkeypatch):
    seen = []

    def fake(fns, cfg=None):
        seen.append(cfg)
        return {n: Timing(np.array([1e-3, 1e-3, 1e-3]), 1) for n in fns}

    monkeypatch.setattr(bench_run, "time_interleaved", fake)
    model = random_model([6, 8, 3], 0.5)
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    bench_run.bench_model(model, x, (1,), ("dense", "rowskip"), threads=1)
    assert seen[-1] is None or seen[-1].cooldown_seconds < 0.015
    if numba.config.NUMBA_NUM_THREADS >= 2:
        bench_run.bench_model(model, x, (1,), ("dense", "rowskip"), threads=2)
        assert seen[-1].cooldown_seconds == pytest.approx(0.015)
