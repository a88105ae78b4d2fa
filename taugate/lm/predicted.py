"""Predicted gates for a compiled language model (approximate): fit a low-rank gate predictor to
every compiled FFN block on calibration text, switch the blocks between exact and predicted
kernels, and measure what the approximation costs.

:func:`fit_predictors_` runs the compiled model (exact gates) on calibration windows, collects
each :class:`~taugate.lm.ffn_module.CompiledFFN`'s input rows, fits
:func:`taugate.predictor.fit_lowrank` to the first part of them (``1 - holdout`` of the rows, in
text order) and scores it on the rest: recall (the share of truly open (token, unit) pairs the
predictor marks for computing) and the computed share. The predictor fitted on the first part is
attached to the block (``block.predicted``), switched off; :func:`set_predicted_` switches every
block on or off and changes the margin. :func:`predicted_quality` compares the predicted model's
logits with the exact one's on held-out text (bits per byte, top-1 agreement, recall on the very
inputs each block saw).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from taugate.errors import TauGateError
from taugate.kernels.ffn import ffn_forward
from taugate.kernels.ffn_predicted import pack_predictor
from taugate.lm.compile import compiled_blocks
from taugate.lm.ffn_module import CompiledFFN
from taugate.lm.train import as_ids, lm_logits, max_context
from taugate.predictor import check_margin, fit_lowrank, recall


def _blocks(model: nn.Module, who: str) -> list[CompiledFFN]:
    blocks = compiled_blocks(model)
    if not blocks:
        raise TauGateError(
            f"{who}: {type(model).__name__} has no compiled FFN block (compile_lm_ first)"
        )
    return blocks


def _windows(model: nn.Module, tokens, seq_len: int, max_windows: int) -> torch.Tensor:
    """(n, T) consecutive windows of ``tokens``, plus one token (n * T + 1,) for the targets."""
    ids = as_ids(tokens)
    seq_len = min(seq_len, max_context(model) or seq_len)
    n = min(max_windows, (len(ids) - 1) // seq_len)
    if n < 1:
        raise TauGateError(f"text too short: need more than {seq_len} tokens, got {len(ids)}")
    return ids[: n * seq_len + 1], n, seq_len


@torch.no_grad()
def _block_inputs(model: nn.Module, blocks: list[CompiledFFN], inp: torch.Tensor) -> list:
    """The input rows (N, d_in) float32 of every block on windows ``inp`` (n, T), exact gates."""
    seen: list[list[np.ndarray]] = [[] for _ in blocks]
    was = [b.use_predicted for b in blocks]

    def hook(k):
        def keep(_m, inputs):
            x = inputs[0].detach()
            seen[k].append(x.reshape(-1, x.shape[-1]).float().cpu().numpy().copy())  # (N, d)

        return keep

    handles = [b.register_forward_pre_hook(hook(k)) for k, b in enumerate(blocks)]
    try:
        for b in blocks:
            b.use_predicted = False
        lm_logits(model.eval(), inp)
    finally:
        for h in handles:
            h.remove()
        for b, w in zip(blocks, was, strict=True):
            b.use_predicted = w
    return [np.concatenate(s) for s in seen]


def _score(block: CompiledFFN, pred, x: np.ndarray) -> dict:
    """Computed share and recall of ``pred`` on rows x (N, d_in), truth from the exact gates."""
    p = block.packed
    z = x @ p.view("wz").T + p.bz  # (N, F)
    active = z > p.thr[0]  # (N, F)
    computed = pred.lowrank.computed(x, p.bz, p.thr[0], pred.margin)  # (N, F)
    return {"margin": pred.margin, "computed_share": float(computed.mean()),
            "active_share": float(active.mean()), "recall": recall(computed, active)}  # fmt: skip


def fit_predictors_(model: nn.Module, calib_tokens, *, rank: int, margin: float = 2.0,
                    seq_len: int = 128, max_windows: int = 32, holdout: float = 0.25,
                    score_margins=()) -> dict:  # fmt: skip
    """Fit a rank-``rank`` gate predictor to every compiled block of ``model`` (compiled by
    :func:`taugate.lm.compile.compile_lm_`) on ``calib_tokens`` and attach it at ``margin``,
    switched off (:func:`set_predicted_` switches it on). Returns a report: per block the rank,
    the predictor's and the exact kernel's multiply-adds per token, and on the held-out rows (the
    last ``holdout`` of them) the computed share and recall at ``margin`` (and at each of
    ``score_margins``)."""
    blocks = _blocks(model, "fit_predictors_")
    m = check_margin(margin)
    extra = [check_margin(v) for v in score_margins]
    if not 0 < holdout < 1:
        raise TauGateError(f"fit_predictors_: holdout must be a share in (0, 1), got {holdout!r}")
    for b in blocks:
        if b.packed.n_modes > 1:
            raise TauGateError(
                f"fit_predictors_: {b.name} is a block of a mode bank ({b.packed.n_modes} "
                "modes); predicted gates need a one-mode block"
            )
    ids, n, T = _windows(model, calib_tokens, seq_len, max_windows)
    xs = _block_inputs(model, blocks, ids[: n * T].reshape(n, T))  # per block (n * T, d_in)
    report = {"rank": rank, "margin": m, "holdout": holdout, "blocks": []}
    for b, x in zip(blocks, xs, strict=True):
        cut = max(1, min(len(x) - 1, round(len(x) * (1 - holdout))))  # rows to fit on
        fit, test = x[:cut], x[cut:] if len(x) > 1 else x
        p = b.packed
        lr = fit_lowrank(fit, p.view("wz"), p.bz, rank, where=b.name)
        b.predicted = pack_predictor(p, lr, margin=m)
        scores = [_score(b, b.predicted.with_margin(v), test) for v in dict.fromkeys([m, *extra])]
        d_in, F, d_out = p.sizes
        exact = F * d_in + scores[0]["active_share"] * F * ((d_in if p.glu else 0) + d_out)
        report["blocks"].append({"name": b.name, "rank": lr.rank, "units": F,
                                 "fit_tokens": len(fit), "test_tokens": len(test),
                                 "predictor_macs": lr.macs(), "exact_kernel_macs": exact,
                                 **scores[0], "scores": scores})  # fmt: skip
    return report


def set_predicted_(model: nn.Module, *, on: bool, margin: float | None = None) -> nn.Module:
    """Switch every compiled block of ``model`` to predicted (``on``) or exact gates, and set the
    predictors' margin when ``margin`` is given; returns ``model``."""
    if not isinstance(on, bool):
        raise TauGateError(f"set_predicted_: on must be True or False, got {on!r}")
    blocks = _blocks(model, "set_predicted_")
    m = None if margin is None else check_margin(margin)
    for b in blocks:
        if b.predicted is None and (on or m is not None):
            raise TauGateError(f"set_predicted_: {b.name} has no predictor (fit_predictors_ first)")
        if m is not None:
            b.predicted = b.predicted.with_margin(m)
        b.use_predicted = on
    return model


def _bits(logits: torch.Tensor, tgt: torch.Tensor) -> float:
    """Bits per token (= per byte for byte-level models) of logits (n, T, V) on targets (n, T)."""
    nll = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
    return float(nll) / math.log(2)


@torch.no_grad()
def predicted_quality(
    model: nn.Module, tokens, *, seq_len: int = 128, max_windows: int = 8
) -> dict:
    """The compiled ``model`` with predicted gates (at each block's current margin) against its
    exact gates on consecutive windows of ``tokens``: bits per byte of both (byte-level token ids)
    and their change, top-1 next-token agreement, the largest |logit difference|, and recall /
    computed share over the (token, unit) pairs of every block, truth from the exact kernel on the
    very inputs the block saw in the predicted run. The model is left with exact gates."""
    blocks = _blocks(model, "predicted_quality")
    ids, n, T = _windows(model, tokens, seq_len, max_windows)
    inp, tgt = ids[:-1].reshape(n, T), ids[1:].reshape(n, T)  # (n, T) each
    set_predicted_(model, on=False)
    exact = lm_logits(model.eval(), inp)  # (n, T, V)
    tally = np.zeros(3)  # truly open, open and computed, computed

    def count(m, inputs, _out):
        x = inputs[0].detach()
        x2 = np.ascontiguousarray(x.reshape(-1, x.shape[-1]).float().cpu().numpy())  # (N, d)
        _, truth = ffn_forward(m.packed, x2, check_finite=False)
        tally[:] += (truth.sum(), m.last_counts.sum(), m.last_computed.sum())

    handles = [b.register_forward_hook(count) for b in blocks]
    try:
        set_predicted_(model, on=True)
        pred = lm_logits(model, inp)  # (n, T, V)
    finally:
        set_predicted_(model, on=False)
        for h in handles:
            h.remove()
    units = n * T * sum(b.width for b in blocks)
    be, bp = _bits(exact, tgt), _bits(pred, tgt)
    return {"tokens": n * T, "bpb_exact": be, "bpb_predicted": bp, "bpb_change": bp - be,
            "top1_agreement": float((exact.argmax(-1) == pred.argmax(-1)).float().mean()),
            "max_abs_logit_diff": float((exact - pred).abs().max()),
            "recall": float(tally[1] / tally[0]) if tally[0] else 1.0,
            "computed_share": float(tally[2] / units)}  # fmt: skip
