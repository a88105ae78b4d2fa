"""What a language-model mode bank saves, measured (:func:`lm_switch_cost`): a mode switch against
loading the mode's adapter from disk, and one mixed-mode decode step against one call per row."""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from taugate.errors import TauGateError
from taugate.lm.train import as_ids

SWITCHES_PER_SAMPLE = 10  # a switch is sub-microsecond: each sample times this many


def _median_us(samples: list[int], per: int = 1) -> float:
    return float(np.median(samples)) / 1e3 / per


def _steps(bank, prompt: torch.Tensor, step: torch.Tensor, row_modes: list[str]):
    """(mixed, groups, singles): one decode step of every row on the KV cache of ``prompt``
    (B, T0), as one mixed-mode call, as one call per mode (that mode's rows, on their own cache)
    and as B one-row calls, each in its row's mode."""
    B = len(row_modes)
    _, past = bank.forward(prompt, modes=row_modes)  # the mixed batch's cache
    pasts = [bank.forward(prompt[b : b + 1], mode=row_modes[b])[1] for b in range(B)]
    rows = {m: [b for b in range(B) if row_modes[b] == m] for m in dict.fromkeys(row_modes)}
    group_pasts = {m: bank.forward(prompt[r], mode=m)[1] for m, r in rows.items()}

    def groups() -> torch.Tensor:
        parts = {}
        for m, r in rows.items():
            bank.set_mode(m)
            parts[m] = bank.forward(step[r], group_pasts[m])[0]  # (B_m, 1, vocab)
        out = torch.empty((B, *parts[row_modes[0]].shape[1:]))  # (B, 1, vocab)
        for m, r in rows.items():
            out[r] = parts[m]
        return out

    def mixed() -> torch.Tensor:
        return bank.forward(step, past, modes=row_modes)[0]  # (B, 1, vocab)

    def singles() -> torch.Tensor:
        out = []
        for b in range(B):
            bank.set_mode(row_modes[b])
            out.append(bank.forward(step[b : b + 1], pasts[b])[0])  # (1, 1, vocab)
        return torch.cat(out)  # (B, 1, vocab)

    return mixed, groups, singles


def _prompts(texts, row_modes, prompt_len: int, vocab: int, gen) -> torch.Tensor:
    """(B, prompt_len + 1) token ids: row b a window of its mode's text (``texts``: one token
    sequence, or {mode: tokens}) at a seeded offset, or random ids without ``texts``."""
    B = len(row_modes)
    if texts is None:
        return torch.randint(0, vocab, (B, prompt_len + 1), generator=gen)
    rows = []
    for m in row_modes:
        ids = as_ids(texts[m] if isinstance(texts, Mapping) else texts)
        if len(ids) < prompt_len + 1:
            raise TauGateError(f"lm_switch_cost: mode {m!r}'s prompt text has {len(ids)} tokens, "
                               f"need {prompt_len + 1}")  # fmt: skip
        o = int(torch.randint(0, len(ids) - prompt_len, (1,), generator=gen))
        rows.append(ids[o : o + prompt_len + 1])
    return torch.stack(rows)  # (B, prompt_len + 1)


@torch.no_grad()
def lm_switch_cost(bank, prompt_len: int = 64, repeats: int = 20, threads: int = 1,
                   batch: int | None = None, seed: int = 0, calib_tokens=None,
                   prompt_tokens=None) -> dict:  # fmt: skip
    """Time, on ``bank`` (an own-GPT :class:`~taugate.lm.bank.LMBank`; medians in µs, samples
    interleaved after one warm-up round, torch and Numba on ``threads`` threads, restored
    afterwards):

    - ``switch_us``: one ``set_mode`` to another mode;
    - ``load_adapter_us``: what a server without a bank does instead: ``load_adapter_`` of the
      mode's adapter (written once beforehand into a temp dir, so read from the page cache: a
      lower bound) onto a gated copy of the base made beforehand;
    - ``mixed_step_us``: one decode step (one new token per row on the KV cache of a
      ``prompt_len``-token prompt) of ``batch`` rows (default: one per mode, modes round-robin)
      with ``modes=[...]``; ``mode_groups_us``: the same step as one call per mode on that
      mode's rows (``set_mode`` + the call); ``single_steps_us``: as ``batch`` calls of one row,
      each in its own mode.

    Prompts are random ids, or windows of ``prompt_tokens`` (token ids, or {mode: ids}: each
    row from its mode's text). With ``calib_tokens`` (as
    :func:`taugate.lm.bank_compile.compile_bank_` takes them), a copy of the bank is compiled
    (hard gates, the Numba FFN kernel) and ``compiled`` holds the same two steps timed on it in
    the same rounds, the ratios against the torch bank, the compiled blocks' active share and
    the largest difference from the compiled arrays in torch math (the kernel's rounding); also
    what the bank's mode table costs: the compiled bank's step with every row in the first mode
    (``one_mode_step_us``) against that mode compiled alone, gains folded
    (``single_mode_model_step_us``), and their ratio ``bank_vs_single_mode_model``.

    Also the ratios ``load_vs_switch`` and ``single_vs_mixed`` (> 1: the bank is faster) and
    ``max_abs_diff_mixed_vs_single`` (float rounding). Nothing is asserted about speed."""
    from taugate.kernels.threads import numba_threads
    from taugate.lm.adapters import load_adapter_, save_adapter
    from taugate.lm.bank import LMBank
    from taugate.lm.bank_compile import compile_bank_
    from taugate.lm.compile import compile_lm_
    from taugate.nn.model import harden_

    if not isinstance(bank, LMBank):
        raise TauGateError(f"lm_switch_cost needs an LMBank, got {type(bank).__name__}")
    bank.require_own_gpt("lm_switch_cost (a KV-cache decode step)")
    if bank.compiled is not None:
        raise TauGateError("lm_switch_cost needs the uncompiled bank (give calib_tokens to time "
                           "a compiled copy beside it)")  # fmt: skip
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
    row_modes = [modes[b % M] for b in range(batch)]
    ids = _prompts(prompt_tokens, row_modes, prompt_len, cfg.vocab_size, gen)  # (B, T0 + 1)
    prompt, step = ids[:, :prompt_len], ids[:, prompt_len:]  # (B, T0), (B, 1)
    comp = None
    if calib_tokens is not None:
        comp = copy.deepcopy(bank)
        report = compile_bank_(comp, calib_tokens)
        one = harden_(bank.mode_model(modes[0]), True)  # mode 0 alone, compiled: gains folded
        first = calib_tokens[modes[0]] if isinstance(calib_tokens, Mapping) else calib_tokens
        compile_lm_(one, first)
    clock, old_threads, old_mode = time.perf_counter_ns, torch.get_num_threads(), bank.mode
    torch.set_num_threads(threads)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="taugate-lm-switch-") as tmp,
            numba_threads(threads, "lm_switch_cost: "),
        ):
            paths = [save_adapter(bank.mode_model(n), Path(tmp) / n) for n in modes]
            fresh = bank.mode_model(modes[0])  # gated copy: load_adapter_ reuses its gates
            mixed, groups, singles = _steps(bank, prompt, step, row_modes)
            diff = float((mixed() - singles()).abs().max())
            diff_groups = float((mixed() - groups()).abs().max())
            fns = {"mixed": mixed, "groups": groups, "single": singles}
            if comp is not None:
                fns["c_mixed"], fns["c_groups"], fns["c_single"] = _steps(comp, prompt, step,
                                                                          row_modes)  # fmt: skip
                fns["c_mode0"] = _steps(comp, prompt, step, [modes[0]] * batch)[0]
                _, past0 = one(prompt)  # the single-mode model's own cache

                def one_model() -> torch.Tensor:
                    return one(step, past0)[0]  # (B, 1, vocab)

                fns["one_model"] = one_model
            t = {k: [] for k in ("switch", "load", *fns)}
            for r in range(repeats + 1):  # round 0 is the warm-up, not kept
                t0 = clock()
                for k in range(SWITCHES_PER_SAMPLE):
                    bank.set_mode(modes[(r + k + 1) % M])
                t1 = clock()
                load_adapter_(fresh, paths[(r + 1) % M])
                t2 = clock()
                if r:
                    t["switch"].append(t1 - t0)
                    t["load"].append(t2 - t1)
                for k, fn in fns.items():
                    a = clock()
                    fn()
                    if r:
                        t[k].append(clock() - a)
            if comp is not None:
                res_c = _compiled_figures(comp, report, fns, t)
    finally:
        torch.set_num_threads(old_threads)
        bank.set_mode(old_mode)
    res = {
        "modes": modes,
        "batch": batch,
        "prompt_len": prompt_len,
        "prompts": "random ids" if prompt_tokens is None else "text",
        "repeats": repeats,
        "threads": threads,
        "switch_us": _median_us(t["switch"], SWITCHES_PER_SAMPLE),
        "load_adapter_us": _median_us(t["load"]),
        "mixed_step_us": _median_us(t["mixed"]),
        "single_steps_us": _median_us(t["single"]),
        "mode_groups_us": _median_us(t["groups"]),
        "max_abs_diff_mixed_vs_single": diff,
        "max_abs_diff_mixed_vs_groups": diff_groups,
    }
    res["load_vs_switch"] = res["load_adapter_us"] / res["switch_us"]
    res["single_vs_mixed"] = res["single_steps_us"] / res["mixed_step_us"]
    res["groups_vs_mixed"] = res["mode_groups_us"] / res["mixed_step_us"]
    if comp is not None:
        res_c["torch_vs_compiled_mixed"] = res["mixed_step_us"] / res_c["mixed_step_us"]
        res_c["torch_vs_compiled_single"] = res["single_steps_us"] / res_c["single_steps_us"]
        res["compiled"] = res_c
    return res


def _compiled_figures(comp, report: dict, fns: dict, t: dict) -> dict:
    """The compiled bank's figures: its steps' medians and ratios, the active share of its FFN
    units on the mixed step, and the kernel's largest difference from torch math."""
    from taugate.lm.compile import compiled_blocks

    blocks = compiled_blocks(comp.model)
    got = fns["c_mixed"]()  # (B, 1, vocab)
    active = [float(b.last_counts.mean()) / b.original_width for b in blocks]
    for b in blocks:
        b.use_kernel = False
    ref = fns["c_mixed"]()  # the compiled arrays in torch math
    for b in blocks:
        b.use_kernel = True
    res = {
        "mixed_step_us": _median_us(t["c_mixed"]),
        "single_steps_us": _median_us(t["c_single"]),
        "mode_groups_us": _median_us(t["c_groups"]),
        "one_mode_step_us": _median_us(t["c_mode0"]),
        "single_mode_model_step_us": _median_us(t["one_model"]),
        "active_share": float(np.mean(active)),
        "units_kept": sum(r["units_kept"] for r in report["blocks"]),
        "units_original": sum(r["units_original"] for r in report["blocks"]),
        "max_abs_diff_kernel_vs_torch_math": float((got - ref).abs().max()),
    }
    res["single_vs_mixed"] = res["single_steps_us"] / res["mixed_step_us"]
    res["groups_vs_mixed"] = res["mode_groups_us"] / res["mixed_step_us"]
    res["bank_vs_single_mode_model"] = res["one_mode_step_us"] / res["single_mode_model_step_us"]
    return res
