"""``taugate bench-lm``: decode speed of a language model with its FFN blocks dense, hard-gated and
compiled, side by side, with the FFN's share of decode time and the caps that bound the speedup.

Paths, each timed as one decode step (``B`` new tokens on the KV cache of a ``prompt_len``-token
prompt, the same step on every call) with the interleaved harness of :mod:`taugate.bench.timing`:

- ``torch``: the base model, dense, in eager torch (what a user runs today);
- ``torch-hard``: the gated model with hard gates, eager torch (computes every unit, then masks);
- ``compiled``: every gated FFN block replaced by the Numba kernel (:mod:`taugate.lm.compile`);
- ``torch-no-ffn``: the base model with every FFN block returning zeros: the rest of the step.
  The FFN's share of decode time is ``f = 1 - t(no-ffn) / t(torch)``.

Caps: the FFN work cap is dense FFN multiply-adds / the multiply-adds the kernel still needs (the
``z`` pass counted dense: the exact kernel computes every unit's z); the end-to-end cap is Amdahl's
``1 / ((1 - f) + f / ffn_cap)``. Each is reported with the share of it reached. The FFN kernel is
also timed alone, on the step's own FFN inputs, against the project's own dense FFN kernel.

With ``predictor`` (a rank), a low-rank gate predictor is then fitted to every compiled block on
the calibration text (:mod:`taugate.lm.predicted`) and, per margin, the predicted path
(``rowskip-predicted``, **approximate**) is timed side by side with the exact one: the FFN kernels
alone on the step's FFN inputs, and the compiled model's decode step; with recall (truth from the
exact kernel on the same inputs) and, on held-out text, the bits-per-byte change (trained models)
or the top-1 agreement and largest logit difference (random models: no meaningful bpb).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from taugate.bench.machine import thread_limit
from taugate.bench.timing import TimingConfig, time_interleaved
from taugate.errors import TauGateError
from taugate.kernels.ffn import ffn_forward, warmup
from taugate.lm.apply import gated_blocks
from taugate.lm.bank_generate import cache_keyword
from taugate.lm.compile import _swap, compile_lm_, compiled_blocks
from taugate.lm.families import ffn_blocks
from taugate.nn.model import harden_

PATHS = ("torch", "torch-hard", "compiled", "torch-no-ffn")


class _ZeroFFN(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def without_ffn(base: nn.Module) -> nn.Module:
    """A copy of ``base`` whose FFN blocks return zeros (times everything but the FFN)."""
    model = copy.deepcopy(base)
    for b in ffn_blocks(model):
        _swap(model, b, _ZeroFFN())
    return model


def decode_step(model: nn.Module, prompt: torch.Tensor):
    """A callable running one decode step of ``model`` after ``prompt`` (B, P): the prompt's cache
    is built once, and each call feeds the same next tokens (B, 1) on it and returns the logits
    (B, vocab). Hugging Face caches grow in place, so they are cropped back after each step."""
    with torch.inference_mode():
        if hasattr(model, "blocks"):  # the own GPT: forward(idx, past) -> (logits, present)
            logits, cache = model(prompt)
            nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)

            def step():
                with torch.inference_mode():
                    return model(nxt, past=cache)[0][:, -1]

            return step
        out = model(input_ids=prompt, use_cache=True)
        key = cache_keyword(model)  # transformers >= 5.2 says "cache", older "past_key_values"
        cache, n = out[key], prompt.shape[1]
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)

    def hf_step():
        with torch.inference_mode():
            logits = model(input_ids=nxt, use_cache=True, **{key: cache}).logits[:, -1]
            extra = cache.get_seq_length() - n
            if extra > 0:
                cache.crop(-extra)  # negative: drop that many tokens (every transformers version)
            return logits

    return hf_step


def _ffn_inputs(model: nn.Module, step) -> list[np.ndarray]:
    """The input (B, d_model) of every compiled FFN block during one call of ``step``."""
    seen: list[np.ndarray] = []
    hooks = [m.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].reshape(-1, inp[0].shape[-1])
                                                                     .contiguous().numpy().copy()))
             for m in compiled_blocks(model)]  # fmt: skip
    try:
        step()
    finally:
        for h in hooks:
            h.remove()
    return seen


def _near_tie_rows(gated: nn.Module, step, rel: float = 1e-4) -> torch.Tensor:
    """(B,) bool: rows of the step where some gated unit's z lies within ``rel`` of its threshold
    (float32 rounding may then open the gate in one path and not in the other)."""
    from taugate.lm.compile import effective_threshold

    near: list[torch.Tensor] = []

    def hook(gate, inputs, _out):
        z = inputs[0].detach()
        thr = torch.from_numpy(effective_threshold(gate))  # (width,)
        with np.errstate(invalid="ignore"):
            close = (z - thr).abs() <= rel * thr.abs().clamp(min=1.0)  # (..., width)
        near.append(close.reshape(close.shape[0], -1).any(-1))

    handles = [getattr(b.owner, b.act).register_forward_hook(hook) for b in gated_blocks(gated)]
    try:
        step()
    finally:
        for h in handles:
            h.remove()
    return torch.stack(near).any(0) if near else torch.zeros(0, dtype=torch.bool)


def _check(gated: nn.Module, compiled: nn.Module, hard_step, compiled_step, what: str) -> dict:
    """The compiled step's logits must equal the hard-gated torch step's, but on rows where a gate
    ties with its threshold. Where they differ because compile dropped units that never fired on
    the calibration text but fire on this prompt, they must equal the compiled model's own arrays
    run in torch math instead (the kernel against the very function it was given). Returns
    ``{"max_abs_diff", "reference"}`` (``"hard-gated"`` or ``"compiled arrays in torch"``)."""
    hard, comp = hard_step(), compiled_step()  # (B, vocab)
    scale = max(1.0, float(hard.abs().max()))
    diff = (hard - comp).abs().amax(-1)  # (B,)
    close = diff <= 1e-3 * scale
    if bool(close.all()) or not bool((~close & ~_near_tie_rows(gated, hard_step)).any()):
        return {"max_abs_diff": float(diff[close].max()) if bool(close.any()) else 0.0,
                "reference": "hard-gated"}  # fmt: skip
    blocks = compiled_blocks(compiled)
    for m in blocks:
        m.use_kernel = False
    try:
        ref = compiled_step()  # (B, vocab): the same arrays, torch math
    finally:
        for m in blocks:
            m.use_kernel = True
    d2 = (ref - comp).abs().amax(-1)  # (B,)
    if bool((d2 > 1e-3 * scale).any()):
        raise TauGateError(f"{what}: the compiled model's logits differ from the hard-gated torch "
                           f"model's by {float(diff.max()):.3g} and from its own arrays in torch "
                           f"math by {float(d2.max()):.3g} (scale {scale:.3g})")  # fmt: skip
    return {"max_abs_diff": float(d2.max()), "reference": "compiled arrays in torch",
            "max_abs_diff_vs_hard": float(diff.max())}  # fmt: skip


def bench_lm(base: nn.Module, gated: nn.Module, calib_tokens, *, batch_sizes=(1, 8), prompt_len: int = 64,
             threads: int | None = None, timing: TimingConfig | None = None, seed: int = 0,
             prompt_tokens=None, predictor: int | None = None,
             margins=(1.0, 2.0, 3.0)) -> tuple[list[dict], dict]:  # fmt: skip
    """Time every path at each batch size; returns (rows, info). ``gated`` is a gated copy of
    ``base``; it is hardened, and a further copy of it compiled on ``calib_tokens``. The prompts
    are random token ids, or windows at seeded offsets of ``prompt_tokens`` (text: what a trained
    model is meant for). ``predictor``: also the predicted path at each of ``margins`` (rows in
    ``info["predicted"]``, every one labelled approximate)."""
    if not gated_blocks(gated):
        raise TauGateError("the gated model has no gated FFN block")
    harden_(gated.eval(), True)
    compiled = copy.deepcopy(gated)
    report = compile_lm_(compiled, calib_tokens)
    models = {"torch": base.eval(), "torch-hard": gated, "compiled": compiled.eval(),
              "torch-no-ffn": without_ffn(base).eval()}  # fmt: skip
    vocab = int(base.config.vocab_size)
    rows, info = [], {"compile": report, "batches": {}}
    with thread_limit(threads):
        for m in compiled_blocks(compiled):
            warmup(m.packed)  # Numba compile / cache load, never timed
        for batch in batch_sizes:
            gen = torch.Generator().manual_seed(seed + batch)
            prompt = _prompts(prompt_tokens, vocab, batch, prompt_len, gen)  # (B, P)
            steps = {name: decode_step(m, prompt) for name, m in models.items()}
            agree = _check(
                gated, compiled, steps["torch-hard"], steps["compiled"], f"batch {batch}"
            )
            dense = needed = 0.0
            for m in compiled_blocks(compiled):
                d, n = m.macs()  # of the step just run
                dense, needed = dense + d, needed + n
            t = {k: v.median for k, v in time_interleaved(steps, timing).items()}
            kern = _kernel_timing(compiled, steps["compiled"], timing)
            ffn = max(t["torch"] - t["torch-no-ffn"], 1e-12)
            f = ffn / t["torch"]
            ffn_cap = dense / needed
            e2e_cap = 1.0 / ((1.0 - f) + f / ffn_cap)
            speed = t["torch"] / t["compiled"]
            b = {**agree, "ffn_share": f, "ffn_work_cap": ffn_cap, "e2e_cap": e2e_cap,
                 "speedup": speed, "e2e_cap_share": speed / e2e_cap,
                 "ffn_speedup": ffn / max(t["compiled"] - t["torch-no-ffn"], 1e-12),
                 "kernel_speedup": kern["dense"] / kern["skip"],
                 "kernel_cap_share": kern["dense"] / kern["skip"] / ffn_cap,
                 "active_share": _active(compiled)}  # fmt: skip
            b["ffn_cap_share"] = b["ffn_speedup"] / ffn_cap
            info["batches"][batch] = b
            for name in PATHS:
                rows.append({"batch": batch, "path": name, "median_ms": 1e3 * t[name],
                             "tokens_per_s": batch / t[name], "speedup_vs_torch": t["torch"] / t[name]})  # fmt: skip
            for name in ("dense", "skip"):
                rows.append({"batch": batch, "path": f"ffn-kernel-{name}", "median_ms": 1e3 * kern[name],
                             "tokens_per_s": float("nan"), "speedup_vs_torch": float("nan")})  # fmt: skip
        if predictor is not None:
            prompts = {b: _prompts(prompt_tokens, vocab, b, prompt_len,
                                   torch.Generator().manual_seed(seed + b)) for b in batch_sizes}  # fmt: skip
            info["predicted"] = _bench_predicted(compiled, calib_tokens, prompts, prompt_tokens,
                                                 predictor, margins, timing, seed)  # fmt: skip
    return rows, info


APPROX = "rowskip-predicted (approximate)"


def _bench_predicted(compiled: nn.Module, calib, prompts: dict, text, rank: int, margins, timing,
                     seed: int) -> dict:  # fmt: skip
    """The predicted path against the exact compiled one, per margin and batch (see the module
    docstring); held-out text for the quality figures: ``text``, or random ids for a random
    model."""
    from taugate.kernels.ffn_predicted import warmup as warmup_predicted
    from taugate.lm.predicted import fit_predictors_, predicted_quality, set_predicted_

    fit = fit_predictors_(compiled, calib, rank=rank, margin=margins[0], score_margins=margins)
    blocks = compiled_blocks(compiled)
    for m in blocks:
        warmup_predicted(m.predicted)
    vocab = int(compiled.config.vocab_size)
    held = text if text is not None else torch.randint(0, vocab, (4 * 128 + 1,),
                                                       generator=torch.Generator().manual_seed(seed + 7919))  # fmt: skip
    rows, quality = [], []
    for margin in margins:
        set_predicted_(compiled, on=False, margin=margin)
        q = predicted_quality(compiled, held, max_windows=8 if text is not None else 4)
        if text is None:  # random ids: bits per byte mean nothing, left out
            q = {k: v for k, v in q.items() if not k.startswith("bpb")}
        quality.append({"path": APPROX, "rank": rank, "margin": margin, "margin_text": f"{margin:g}",
                        "metric": "bits per byte" if text is not None else "top-1 agreement", **q})  # fmt: skip
        for batch, prompt in prompts.items():
            rows.append({"batch": batch, "path": APPROX, "rank": rank, "margin": margin,
                         "margin_text": f"{margin:g}",
                         **_predicted_timing(compiled, decode_step(compiled, prompt), timing)})  # fmt: skip
    return {"fit": fit, "rows": rows, "quality": quality, "random_text": text is None}


def _prompts(tokens, vocab: int, batch: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """(batch, n) prompt token ids: random, or windows of ``tokens`` at seeded offsets."""
    if tokens is None:
        return torch.randint(0, vocab, (batch, n), generator=gen)  # (B, P)
    from taugate.lm.train import as_ids

    ids = as_ids(tokens)
    if len(ids) < n + 1:
        raise TauGateError(f"prompt text has {len(ids)} tokens; a prompt needs {n}")
    start = torch.randint(0, len(ids) - n, (batch,), generator=gen).tolist()  # (B,)
    return torch.stack([ids[s : s + n] for s in start])  # (B, P)


def _kernel_timing(compiled: nn.Module, step, timing) -> dict[str, float]:
    """The FFN kernels alone on the step's inputs: skipping vs the project's own dense twin."""
    blocks = compiled_blocks(compiled)
    xs = _ffn_inputs(compiled, step)
    outs = [np.empty((len(x), m.packed.d_out), np.float32) for x, m in zip(xs, blocks, strict=True)]

    def run(dense: bool):
        def f():
            for x, m, o in zip(xs, blocks, outs, strict=True):
                ffn_forward(m.packed, x, out=o, dense=dense, check_finite=False)

        return f

    t = time_interleaved({"skip": run(False), "dense": run(True)}, timing)
    return {k: v.median for k, v in t.items()}


def _active(compiled: nn.Module) -> list[float]:
    out = []
    for m in compiled_blocks(compiled):
        c = m.last_counts
        out.append(float(np.mean(c)) / m.original_width if c is not None else float("nan"))
    return out


def _predicted_timing(compiled: nn.Module, step, timing) -> dict:
    """Exact vs predicted on one decode step: the FFN kernels alone on the exact step's FFN inputs
    (recall and computed share over those (token, unit) pairs, truth from the exact kernel), and
    the whole step."""
    from taugate.kernels.ffn_predicted import ffn_forward_predicted

    blocks = compiled_blocks(compiled)
    xs = _ffn_inputs(compiled, step)  # exact gates: the exact path's FFN inputs
    outs = [np.empty((len(x), m.packed.d_out), np.float32) for x, m in zip(xs, blocks, strict=True)]
    job = list(zip(xs, blocks, outs, strict=True))
    truth = sum(int(ffn_forward(m.packed, x)[1].sum()) for x, m, _ in job)
    got = [ffn_forward_predicted(m.predicted, x)[1:] for x, m, _ in job]
    hit, comp = sum(int(k.sum()) for k, _ in got), sum(int(c.sum()) for _, c in got)

    def exact():
        for x, m, o in job:
            ffn_forward(m.packed, x, out=o, check_finite=False)

    def predicted():
        for x, m, o in job:
            ffn_forward_predicted(m.predicted, x, out=o, check_finite=False)

    def decode(on: bool):
        def f():
            for m in blocks:
                m.use_predicted = on
            return step()

        return f

    k = time_interleaved({"exact": exact, "predicted": predicted}, timing)
    d = time_interleaved({"exact": decode(False), "predicted": decode(True)}, timing)
    for m in blocks:
        m.use_predicted = False
    units, n = len(xs[0]) * sum(m.width for m in blocks), len(xs[0])
    return {"kernel_exact_ms": 1e3 * k["exact"].median,
            "kernel_predicted_ms": 1e3 * k["predicted"].median,
            "kernel_speedup": k["exact"].median / k["predicted"].median,
            "recall": hit / truth if truth else 1.0, "computed_share": comp / units,
            "active_share": truth / units,
            "decode_exact_tokens_per_s": n / d["exact"].median,
            "decode_predicted_tokens_per_s": n / d["predicted"].median,
            "decode_speedup": d["exact"].median / d["predicted"].median}  # fmt: skip
