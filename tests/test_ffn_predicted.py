"""Predicted gates for the FFN block (taugate.kernels.ffn_predicted, taugate.lm.predicted): the
kernel equals the slow reference, margin +inf is the exact block, bad input gives one-line errors,
and a compiled own GPT and ``taugate bench-lm --predictor`` run end to end."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taugate.cli import main
from taugate.errors import TauGateError
from taugate.kernels.ffn import ffn_forward, pack_ffn
from taugate.kernels.ffn_predicted import (
    PredictedFFN,
    ffn_forward_predicted,
    pack_predictor,
    predicted_macs,
)
from taugate.lm.apply import gated_blocks
from taugate.lm.compile import compile_lm_, compiled_blocks
from taugate.lm.predicted import fit_predictors_, predicted_quality, set_predicted_
from taugate.nn import TauGateConfig, apply_taugate_, harden_
from taugate.predictor import LowRank, fit_lowrank

try:
    from lm_helpers import logits_of, tiny_own, token_ids
    from reference import reference_predicted_ffn, separate_ffn_ties
except ImportError:  # tests/ imported as a package
    from tests.lm_helpers import logits_of, tiny_own, token_ids
    from tests.reference import reference_predicted_ffn, separate_ffn_ties

ACTS = {"relu": 0, "gelu": 1, "gelu-tanh": 2, "silu": 3}


def block(d_in, F, d_out, glu, seed, r):
    """Random FFN block arrays, thresholds (a few +-inf) and a random rank-r predictor."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)

    arr = {"wz": w(F, d_in), "bz": (0.3 * rng.standard_normal(F)).astype(np.float32),
           "wdt": w(F, d_out), "bd": rng.standard_normal(d_out).astype(np.float32)}  # fmt: skip
    if glu:
        arr |= {"wu": w(F, d_in), "bu": (0.3 * rng.standard_normal(F)).astype(np.float32)}
    thr = rng.standard_normal(F)
    thr[rng.random(F) < 0.1] = np.inf
    thr[rng.random(F) < 0.1] = -np.inf
    lr = LowRank(w(d_in, r), w(r, F), rng.uniform(0.0, 1.0, F).astype(np.float32))
    return arr, thr.astype(np.float32), lr


def separate(x, arr, thr, lr, margin, rel=1e-3):
    """thr moved up, unit by unit, until no z_j lies within ``rel`` of thr_j and no guess z_hat_j
    within ``rel`` of thr_j - margin sigma_j (float64), so float32 cannot flip a decision."""
    x = np.asarray(x, np.float64)
    z = x @ arr["wz"].T.astype(np.float64) + arr["bz"]  # (N, F)
    zh = (x @ lr.a.astype(np.float64)) @ lr.b.astype(np.float64) + arr["bz"]  # (N, F)
    out = thr.astype(np.float64)
    for j in np.flatnonzero(np.isfinite(out)):
        for _ in range(200):
            t = out[j]
            cut = t - margin * lr.sigma[j] if np.isfinite(margin) else -np.inf
            near = np.abs(z[:, j] - t) < rel * (1 + abs(t))
            if np.isfinite(cut):
                near |= np.abs(zh[:, j] - cut) < rel * (1 + abs(cut))
            if not near.any():
                break
            out[j] = t + 2 * rel * (1 + abs(t))
    return out.astype(np.float32)


def assert_close(got, ref):
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(got, ref, rtol=0, atol=3e-5 * scale)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_kernel_matches_the_reference(data):
    d_in, F, d_out = (data.draw(st.integers(1, 40)) for _ in range(3))
    N = data.draw(st.sampled_from([1, 1, 2, 5]))
    glu, act = data.draw(st.booleans()), data.draw(st.sampled_from(sorted(ACTS)))
    margin = data.draw(st.sampled_from([-0.5, 0.0, 1.0, 2.5, np.inf]))
    r = data.draw(st.integers(1, min(d_in, F, 6)))
    arr, thr, lr = block(d_in, F, d_out, glu, data.draw(st.integers(0, 2**32 - 1)), r)
    x = np.random.default_rng(N + d_in).standard_normal((N, d_in)).astype(np.float32)
    thr = separate(x, arr, thr, lr, margin)
    packed = pack_ffn(arr["wz"], arr["bz"], arr["wdt"], arr["bd"], thr, act=ACTS[act],
                      wu=arr.get("wu"), bu=arr.get("bu"))  # fmt: skip
    pred = pack_predictor(packed, lr, margin=margin)
    threads = data.draw(st.sampled_from([None, 1]))
    y, k, c = ffn_forward_predicted(pred, x, threads=threads)
    yr, kr, cr = reference_predicted_ffn(x, arr["wz"], arr["bz"], arr["wdt"], arr["bd"], thr, act,
                                         lr.a, lr.b, lr.sigma, margin, wu=arr.get("wu"),
                                         bu=arr.get("bu"))  # fmt: skip
    assert_close(y, yr)
    np.testing.assert_array_equal(k, kr)
    np.testing.assert_array_equal(c, cr.sum(1))
    y1, k1, c1 = ffn_forward_predicted(pred, x[0])  # one token, 1-D
    assert y1.shape == (d_out,) and k1[0] == kr[0] and c1[0] == cr[0].sum()
    assert_close(y1, yr[0])


@pytest.mark.parametrize("glu", [False, True])
def test_infinite_margin_is_the_exact_block(glu):
    d_in, F, d_out = 64, 300, 48
    arr, thr, _ = block(d_in, F, d_out, glu, 3, 1)
    x = np.random.default_rng(0).standard_normal((7, d_in)).astype(np.float32)
    thr = separate_ffn_ties(x, arr["wz"], arr["bz"], thr)
    packed = pack_ffn(arr["wz"], arr["bz"], arr["wdt"], arr["bd"], thr, act=3,
                      wu=arr.get("wu"), bu=arr.get("bu"))  # fmt: skip
    lr = fit_lowrank(x, arr["wz"], arr["bz"], 8)
    pred = pack_predictor(packed, lr, margin=np.inf)
    for rows in (x[:1], x):
        ye, ke = ffn_forward(packed, rows)
        y, k, c = ffn_forward_predicted(pred, rows)
        np.testing.assert_allclose(y, ye, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(k, ke)
        assert (c == F).all()
    assert pred.macs() == 0 and predicted_macs(pred, k, c) == pytest.approx(
        F * d_in + k.mean() * ((d_in if glu else 0) + d_out)
    )
    finite = pred.with_margin(1.0)  # arrays shared, cut recomputed
    assert finite.at is pred.at and finite.margin == 1.0 and np.isfinite(finite.cut).any()
    _, k2, c2 = ffn_forward_predicted(finite, x)
    assert (k2 <= k).all() and (c2 < F).any() and (c2 >= k2).all()


def _one_line(excinfo, *parts):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for p in parts:
        assert p in msg, msg


def test_bad_input_gives_one_line_errors():
    arr, thr, lr = block(16, 24, 8, False, 1, 4)
    packed = pack_ffn(arr["wz"], arr["bz"], arr["wdt"], arr["bd"], thr, act=0)
    bad = LowRank(lr.a[:15], lr.b, lr.sigma)
    with pytest.raises(TauGateError) as e:
        pack_predictor(packed, bad, margin=1.0)
    _one_line(e, "pack_predictor", "predictor a must be float32 (16, 4)", "(15, 4)")
    with pytest.raises(TauGateError) as e:
        pack_predictor(packed, LowRank(lr.a, lr.b[:, :20], lr.sigma), margin=1.0)
    _one_line(e, "predictor b must be float32 (4, 24)")
    with pytest.raises(TauGateError) as e:
        pack_predictor(packed, LowRank(lr.a, lr.b, lr.sigma[:3]), margin=1.0)
    _one_line(e, "predictor sigma must be float32 (24,)")
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    for rank in (0, 17):
        with pytest.raises(TauGateError) as e:
            fit_lowrank(x, arr["wz"], arr["bz"], rank, where="blocks.0.mlp")
        _one_line(e, "blocks.0.mlp: predictor rank must be in 1..16", repr(rank))
    with pytest.raises(TauGateError) as e:
        pack_predictor(packed, lr, margin=float("nan"))
    _one_line(e, "margin")
    pred = pack_predictor(packed, lr, margin=1.0)
    x[3, 2] = np.nan
    for rows in (x, x[3:4]):
        with pytest.raises(TauGateError) as e:
            ffn_forward_predicted(pred, rows)
        _one_line(e, "ffn_forward_predicted: input contains NaN or inf at row")
    assert "row 3" in str(pytest.raises(TauGateError, ffn_forward_predicted, pred, x).value)
    ffn_forward_predicted(pred, x, check_finite=False)  # unchecked: runs, result unspecified
    with pytest.raises(TauGateError) as e:
        ffn_forward_predicted(pred, x.astype(np.float64))
    _one_line(e, "x must be C-contiguous float32 (N, 16)", "float64")
    with pytest.raises(TauGateError) as e:
        ffn_forward_predicted(pred, np.zeros((2, 16), np.float32), out=np.zeros((2, 7), np.float32))
    _one_line(e, "out must be writable C-contiguous float32 (2, 8)")
    with pytest.raises(TauGateError) as e:
        ffn_forward_predicted(packed, x)
    _one_line(e, "expected a PredictedFFN")
    bank = pack_ffn(arr["wz"], arr["bz"], arr["wdt"], arr["bd"], np.stack([thr, thr]), act=0,
                    gain=np.ones((2, 24), np.float32))  # fmt: skip
    with pytest.raises(TauGateError) as e:
        pack_predictor(bank, lr, margin=1.0)
    _one_line(e, "mode bank of 2 modes")
    assert isinstance(pred, PredictedFFN) and pred.rank == 4


def _compiled_gpt(activation: str):
    model = tiny_own(activation)
    apply_taugate_(model, TauGateConfig())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for b in gated_blocks(model):
            getattr(b.owner, b.act).tau.uniform_(-0.5, 0.5, generator=g)
    harden_(model.eval(), True)
    calib = token_ids(model, batch=1, length=8 * 32 + 1, seed=5).reshape(-1)
    compile_lm_(model, calib, seq_len=32, compact=False)
    return model, calib


@pytest.mark.parametrize("activation", ["relu", "swiglu"])
def test_compiled_gpt_with_predicted_gates(activation):
    model, calib = _compiled_gpt(activation)
    ids = token_ids(model, batch=3, length=20, seed=9)
    with torch.no_grad():
        exact = logits_of(model, ids)
    with pytest.raises(TauGateError, match="no predictor .fit_predictors_ first."):
        set_predicted_(model, on=True)
    report = fit_predictors_(model, calib, rank=4, margin=np.inf, seq_len=32, score_margins=(1.0,))
    blocks = compiled_blocks(model)
    assert all(b.predicted is not None and not b.use_predicted for b in blocks)
    set_predicted_(model, on=True)
    with torch.no_grad():
        torch.testing.assert_close(logits_of(model, ids), exact, atol=1e-4, rtol=0)
    assert all(b.last_computed is not None and (b.last_computed == b.width).all() for b in blocks)
    for r in report["blocks"]:
        assert r["rank"] == 4 and r["recall"] == 1.0 and r["computed_share"] == 1.0
        assert 0 < r["scores"][1]["recall"] <= 1 and 0 < r["scores"][1]["computed_share"] < 1
        assert r["predictor_macs"] == 4 * (16 + 32) and r["test_tokens"] == 64
    set_predicted_(model, on=True, margin=1.0)
    x = torch.randn(2, 5, blocks[0].packed.d_in)
    fast = blocks[0](x)  # the predicted kernel
    assert (blocks[0].last_computed < blocks[0].width).any()
    slow = blocks[0](x.double())  # torch math: the same approximation
    torch.testing.assert_close(slow, fast.double(), atol=1e-5, rtol=1e-5)
    q = predicted_quality(model, calib, seq_len=32, max_windows=4)
    assert 0 < q["recall"] <= 1 and 0 < q["computed_share"] < 1 and q["tokens"] == 128
    assert 0 <= q["top1_agreement"] <= 1 and np.isfinite(q["bpb_change"])
    assert not any(b.use_predicted for b in blocks)  # left exact
    with pytest.raises(TauGateError, match="no compiled FFN block"):
        fit_predictors_(tiny_own("relu"), calib, rank=4)
    with pytest.raises(TauGateError, match="predictor rank must be in 1..16"):
        fit_predictors_(copy.deepcopy(model), calib, rank=17, seq_len=32)


def test_cli_bench_lm_with_a_predictor(tmp_path, capsys):
    out = tmp_path / "lm.json"
    args = ["bench-lm", "--random", "--d-model", "32", "--ffn", "64", "--layers", "2",
            "--activation", "relu", "--active", "0.3", "--batch-sizes", "1", "--prompt-len", "8",
            "--rounds", "3", "--predictor", "4", "--margins", "1,inf", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "rowskip-predicted (approximate)" in text and "top-1 agreement" in text
    pred = json.loads(out.read_text())["runs"][0]["predicted"]
    rows = {r["margin_text"]: r for r in pred["rows"]}
    assert rows["inf"]["recall"] == 1.0 and rows["inf"]["computed_share"] == 1.0
    assert 0 < rows["1"]["recall"] <= 1 and rows["1"]["computed_share"] < 1
    assert all(
        r["path"] == "rowskip-predicted (approximate)" for r in pred["rows"] + pred["quality"]
    )
    q = {r["margin_text"]: r for r in pred["quality"]}
    assert q["inf"]["top1_agreement"] == 1.0 and "bpb_change" not in q["1"]  # random: no bpb
    with pytest.raises(SystemExit):
        main([*args[:2], "--margins", "1,nan"])
    assert "--margins: expected numbers or inf, got '1,nan'" in capsys.readouterr().err
