"""What a language-model mode bank saves, measured (:func:`lm_switch_cost`): a mode switch against
loading the mode's adapter from disk, and one mixed-mode decode step against one call per row."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from taugate.errors import TauGateError

SWITCHES_PER_SAMPLE = 10  # a switch is sub-microsecond: each sample times this many


def _median_us(samples: list[int], per: int = 1) -> float:
    return float(np.median(samples)) / 1e3 / per


@torch.no_grad()
def lm_switch_cost(bank, prompt_len: int = 64, repeats: int = 20, threads: int = 1,
                   batch: int | None = None, seed: int = 0) -> dict:  # fmt: skip
    """Time, on ``bank`` (an own-GPT :class:`~taugate.lm.bank.LMBank`; medians in µs, samples
    interleaved after one warm-up round, torch on ``threads`` threads, restored afterwards):

    - ``switch_us``: one ``set_mode`` to another mode;
    - ``load_adapter_us``: what a server without a bank does instead: ``load_adapter_`` of the
      mode's adapter (written once beforehand into a temp dir, so read from the page cache: a
      lower bound) onto a gated copy of the base made beforehand;
    - ``mixed_step_us``: one decode step (one new token per row on the KV cache of a
      ``prompt_len``-token random prompt) of ``batch`` rows (default: one per mode, modes
      round-robin) with ``modes=[...]``; ``single_steps_us``: the same step as ``batch`` calls of
      one row, each in its own mode (``set_mode`` + the call).

    Also the ratios ``load_vs_switch`` and ``single_vs_mixed`` (> 1: the bank is faster) and
    ``max_abs_diff_mixed_vs_single`` (float rounding). Nothing is asserted about speed."""
    from taugate.lm.adapters import load_adapter_, save_adapter
    from taugate.lm.bank import LMBank

    if not isinstance(bank, LMBank):
        raise TauGateError(f"lm_switch_cost needs an LMBank, got {type(bank).__name__}")
    bank.require_own_gpt("lm_switch_cost (a KV-cache decode step)")
    modes, M = list(bank.modes), len(bank.modes)
    batch = M if batch is None else batch
    for name, v, lo in (("prompt_len", prompt_len, 1), ("repeats", repeats, 1),
                        ("threads", threads, 1), ("batch", batch, 1), ("seed", seed, 0)):  # fmt: skip
        if type(v) is not int or v < lo:
            raise TauGateError(f"lm_switch_cost: {name} must be an integer >= {lo}, got {v!r}")
    cfg = bank.model.config
    if prompt_len + 1 > cfg.block_size:
        raise TauGateError(
            f"lm_switch_cost: prompt_len {prompt_len} + 1 decode token is longer than block_size "
            f"{cfg.block_size}"
        )
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, cfg.vocab_size, (batch, prompt_len), generator=gen)  # (B, T0)
    step = torch.randint(0, cfg.vocab_size, (batch, 1), generator=gen)  # (B, 1)
    row_modes = [modes[b % M] for b in range(batch)]
    clock, old_threads, old_mode = time.perf_counter_ns, torch.get_num_threads(), bank.mode
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="taugate-lm-switch-") as tmp:
            paths = [save_adapter(bank.mode_model(n), Path(tmp) / n) for n in modes]
            fresh = bank.mode_model(modes[0])  # gated copy: load_adapter_ reuses its gates
            _, past = bank.forward(prompt, modes=row_modes)  # the mixed batch's cache
            pasts = [bank.forward(prompt[b : b + 1], mode=row_modes[b])[1] for b in range(batch)]

            def singles() -> torch.Tensor:
                out = []
                for b in range(batch):
                    bank.set_mode(row_modes[b])
                    out.append(bank.forward(step[b : b + 1], pasts[b])[0])  # (1, 1, vocab)
                return torch.cat(out)  # (B, 1, vocab)

            mixed = bank.forward(step, past, modes=row_modes)[0]  # (B, 1, vocab)
            diff = float((mixed - singles()).abs().max())
            t = {k: [] for k in ("switch", "load", "mixed", "single")}
            for r in range(repeats + 1):  # round 0 is the warm-up, not kept
                t0 = clock()
                for k in range(SWITCHES_PER_SAMPLE):
                    bank.set_mode(modes[(r + k + 1) % M])
                t1 = clock()
                load_adapter_(fresh, paths[(r + 1) % M])
                t2 = clock()
                bank.forward(step, past, modes=row_modes)
                t3 = clock()
                singles()
                t4 = clock()
                if r:
                    for k, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                        t[k].append(dt)
    finally:
        torch.set_num_threads(old_threads)
        bank.set_mode(old_mode)
    res = {
        "modes": modes,
        "batch": batch,
        "prompt_len": prompt_len,
        "repeats": repeats,
        "threads": threads,
        "switch_us": _median_us(t["switch"], SWITCHES_PER_SAMPLE),
        "load_adapter_us": _median_us(t["load"]),
        "mixed_step_us": _median_us(t["mixed"]),
        "single_steps_us": _median_us(t["single"]),
        "max_abs_diff_mixed_vs_single": diff,
    }
    res["load_vs_switch"] = res["load_adapter_us"] / res["switch_us"]
    res["single_vs_mixed"] = res["single_steps_us"] / res["mixed_step_us"]
    return res
