"""Predicted gates on the MLP (``rowskip-predicted``, approximate): the kernel equals its slow twin
on random shapes, margin +inf equals exact row-skip, the artifact stores the predictor (old ones
still load), and bad predictors, ranks and margins get one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from taugate.errors import TauGateError
from taugate.kernels import predicted as kp
from taugate.kernels import rowskip
from taugate.mlp_predictor import MLPPredictor, fit_mlp_predictor
from taugate.predictor import LowRank, PredictorConfig, fit_lowrank
from taugate.runtime import load, random_model
from taugate.spec import ModelSpec

try:
    from reference import reference_predicted_hidden, separate_ties
    from test_kernels import MODES, assert_close, build
except ImportError:  # tests/ imported as a package
    from tests.reference import reference_predicted_hidden, separate_ties
    from tests.test_kernels import MODES, assert_close, build


def _spec(layers, tensors) -> ModelSpec:
    return ModelSpec.from_tensors(layers, tensors)


def _predictors(spec, x, rank, rng, *, skip=()):
    """A fitted low-rank predictor per hidden layer (None for layers in ``skip``), on x."""
    ins = [x, *spec.hidden_outputs(x)]
    out = []
    for i, e in enumerate(spec.layers[:-1]):
        r = min(rank, e.n_in, e.n_out)
        out.append(None if i in skip else fit_lowrank(ins[i], spec.weights[i], spec.biases[i], r))
    return out


def _near_ties(layers, tensors, preds, margin, x, eps=1e-4) -> bool:
    """Is some z within eps of its positive threshold, or some guess within eps of its cut (where
    float32 and the float64 twin could decide differently), along the predicted pass?"""
    h = np.asarray(x, np.float64)
    for i, e in enumerate(layers[:-1]):
        w, b = (tensors[f"layers.{i}.{k}"].astype(np.float64) for k in ("weight", "bias"))
        tau = tensors.get(f"layers.{i}.tau")
        thr = np.zeros(e["out"]) if tau is None else np.maximum(tau.astype(np.float64), 0)
        z = h @ w.T + b  # (B, out)
        fin = np.isfinite(thr) & (thr > 0)
        if (np.abs(z - thr)[:, fin] < eps * (1 + np.abs(thr[fin]))).any():
            return True
        keep = z > thr
        p = preds[i]
        if p is not None and margin != np.inf:
            zh = (h @ p.a.astype(np.float64)) @ p.b.astype(np.float64) + b
            cut = thr - margin * p.sigma.astype(np.float64)
            ok = np.isfinite(cut)
            if (np.abs(zh - cut)[:, ok] < eps * (1 + np.abs(cut[ok]))).any():
                return True
            keep &= zh > cut
        h = np.where(keep, z, 0.0)
    return False


@st.composite
def cases(draw):
    n_hidden = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 48)) for _ in range(n_hidden + 2)]
    modes = [draw(st.sampled_from(MODES)) for _ in range(n_hidden)]
    batch = draw(st.integers(1, 6))
    margin = draw(st.sampled_from([-0.5, 0.0, 1.0, 2.5, np.inf]))
    rank = draw(st.integers(1, 8))
    skip = {i for i in range(n_hidden) if draw(st.booleans()) and n_hidden > 1}
    return sizes, modes, batch, margin, rank, skip, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(case=cases())
def test_the_kernel_equals_its_slow_twin(case):
    sizes, modes, batch, margin, rank, skip, seed = case
    layers, tensors = build(sizes, modes, seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = 0.0  # some zero features, skipped by the guess
    tensors = separate_ties(layers, tensors, x)
    spec = _spec(layers, tensors)
    fit_x = rng.standard_normal((32, sizes[0])).astype(np.float32)
    preds = _predictors(spec, fit_x, rank, rng, skip=skip)
    assume(not _near_ties(layers, tensors, preds, margin, x))
    ref, masks = reference_predicted_hidden(
        layers, tensors, {i: (p.a, p.b, p.sigma) for i, p in enumerate(preds) if p is not None},
        margin, x,
    )  # fmt: skip
    packed = rowskip.pack(list(spec.weights), list(spec.biases), list(spec.taus))
    pp = kp.pack_predicted(packed, preds, margin=margin)
    for threads in (1, 2):
        out, counts, computed = kp.forward(pp, x, threads=threads)
        assert_close(out, ref[-1])
        for i in range(len(sizes) - 2):
            np.testing.assert_array_equal(counts[:, i + 1], (ref[i] != 0).sum(axis=1))
        k = iter(masks)
        for i, p in enumerate(preds):
            want = sizes[i + 1] if p is None else next(k).sum(axis=1)
            np.testing.assert_array_equal(computed[:, i], want)


def test_margin_inf_is_exact_row_skip():
    model = random_model([784, 96, 64, 10], 0.3, seed=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 784)).astype(np.float32)
    model.predictor = fit_mlp_predictor(model.spec, x, PredictorConfig(rank=8, margin=np.inf,
                                                                       layers="all"))  # fmt: skip
    exact = model.predict(x, backend="rowskip")
    counts_exact = model.last_stats["active_counts"]
    for xs in (x, x[:1]):
        approx = model.predict(xs, backend="rowskip-predicted")
        assert_close(approx, exact[: len(xs)])
    approx = model.predict(x, backend="rowskip-predicted")
    assert model.last_stats["active_counts"] == counts_exact
    computed = model.kernel("rowskip-predicted").last_computed
    np.testing.assert_array_equal(computed, np.tile([96, 64], (40, 1)))
    model.predictor = fit_mlp_predictor(model.spec, x, PredictorConfig(rank=8, margin=1.0))
    assert model.predictor.layers[1] is None  # the default: the dense first layer alone
    model.predict(x, backend="rowskip-predicted")
    assert (model.kernel("rowskip-predicted").last_computed[:, 1] == 64).all()


def test_a_finite_margin_trades_recall_for_work():
    model = random_model([64, 256, 10], 0.2, seed=1)
    rng = np.random.default_rng(1)
    basis = rng.standard_normal((6, 64)).astype(np.float32)
    x = rng.standard_normal((400, 6)).astype(np.float32) @ basis  # inputs a low rank predicts
    model.predictor = fit_mlp_predictor(model.spec, x[:300], PredictorConfig(rank=6, margin=1.0))
    fit = model.predictor.fit["layers"][0]
    assert fit["recall"] > 0.95 and fit["computed"] < 0.6
    kinds = {(k["kind"], k["margin"]): k for k in fit["kinds"]}
    assert kinds[("lowrank", 2.0)]["recall"] >= kinds[("lowrank", 1.0)]["recall"]
    model.predict(x[300:], backend="rowskip-predicted")
    assert (model.kernel("rowskip-predicted").last_computed < 256).any()


def test_the_artifact_stores_the_predictor_and_old_ones_still_load(tmp_path):
    model = random_model([32, 24, 16, 4], 0.4, seed=2)
    old = model.save(tmp_path / "old.taugate")
    assert load(old).predictor is None
    assert "predictor" not in json.loads((old / "manifest.json").read_text())
    x = np.random.default_rng(2).standard_normal((50, 32)).astype(np.float32)
    model.predictor = fit_mlp_predictor(
        model.spec, x, PredictorConfig(rank=4, margin=np.inf, layers="all")
    )
    path = model.save(tmp_path / "new.taugate")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["predictor"]["kind"] == "lowrank" and manifest["predictor"]["rank"] == 4
    assert manifest["predictor"]["margin"] == "inf" and manifest["predictor"]["layers"] == [0, 1]
    back = load(path)
    assert back.predictor.margin == np.inf
    np.testing.assert_array_equal(back.predictor.layers[1].b, model.predictor.layers[1].b)
    np.testing.assert_array_equal(back.predict(x, backend="rowskip-predicted"),
                                  model.predict(x, backend="rowskip-predicted"))  # fmt: skip


def _tamper(path, fn):
    from safetensors.numpy import load_file, save_file

    from taugate.artifact import _sha256

    tensors = load_file(str(path / "weights.safetensors"))
    manifest = json.loads((path / "manifest.json").read_text())
    fn(tensors, manifest)
    save_file(tensors, str(path / "weights.safetensors"))
    manifest["weights_sha256"] = _sha256(path / "weights.safetensors")
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t, m: t.update({"predictor.0.a": np.zeros((32, 3), np.float32)}),
         "predictor b must be float32 (3, 24)"),
        (lambda t, m: t.update({"predictor.1.sigma": np.zeros(5, np.float32)}),
         "predictor sigma must be float32 (16,)"),
        (lambda t, m: t.pop("predictor.0.b"), "predictor tensor 'predictor.0.b' is missing"),
        (lambda t, m: m.pop("predictor"), "but no 'predictor' in the manifest"),
        (lambda t, m: m["predictor"].update(layers=[0, 5]), "distinct hidden layer indices"),
        (lambda t, m: m["predictor"].update(kind="mlp"), "predictor kind must be 'lowrank'"),
    ],
)  # fmt: skip
def test_a_predictor_that_does_not_fit_its_model_is_refused(tmp_path, edit, message):
    model = random_model([32, 24, 16, 4], 0.4, seed=2)
    x = np.random.default_rng(2).standard_normal((50, 32)).astype(np.float32)
    model.predictor = fit_mlp_predictor(model.spec, x, PredictorConfig(rank=4, layers="all"))
    path = model.save(tmp_path / "m.taugate")
    _tamper(path, edit)
    with pytest.raises(TauGateError) as e:
        load(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_ranks_margins_and_shapes_get_one_line_errors():
    model = random_model([32, 24, 16, 4], 0.4, seed=2)
    x = np.random.default_rng(2).standard_normal((50, 32)).astype(np.float32)
    for rank in (0, -1):
        with pytest.raises(TauGateError, match="predictor rank must be >= 1"):
            PredictorConfig(rank=rank)
    with pytest.raises(TauGateError, match=r"rank must be in 1\.\.16 for a layer of 24 inputs"):
        fit_mlp_predictor(model.spec, x, PredictorConfig(rank=20, layers="all"))
    assert fit_mlp_predictor(model.spec, x, PredictorConfig(rank=20)).layers[1] is None
    with pytest.raises(TauGateError, match="layers must be 'first' or 'all'"):
        PredictorConfig(layers="some")
    with pytest.raises(TauGateError, match="margin must be a number or"):
        PredictorConfig(margin=float("nan"))
    with pytest.raises(TauGateError, match="needs a predictor: compile with"):
        model.predict(x, backend="rowskip-predicted")
    lr = fit_lowrank(x, model.spec.weights[0], model.spec.biases[0], 4)
    wrong = LowRank(lr.a[:20], lr.b, lr.sigma)  # (20, 4): the layer has 32 inputs
    with pytest.raises(TauGateError, match=r"hidden layer 0 \(32 -> 24\): predictor a must be "
                                           r"float32 \(32, 4\), got float32 \(20, 4\)"):  # fmt: skip
        model.predictor = MLPPredictor((wrong, None))
    with pytest.raises(TauGateError, match="1 predictors for a model of 2 hidden layers"):
        model.predictor = MLPPredictor((lr,))  # one for a model of two hidden layers
    packed = rowskip.pack(list(model.spec.weights), list(model.spec.biases), list(model.spec.taus))
    with pytest.raises(TauGateError, match="need 2 predictors"):
        kp.pack_predicted(packed, [lr], margin=1.0)
    pp = kp.pack_predicted(packed, [lr, None], margin=1.0)
    bad = x[:2].copy()
    bad[1, 3] = np.nan
    with pytest.raises(TauGateError, match="input contains NaN or inf at row 1"):
        kp.forward(pp, bad)
    with pytest.raises(TauGateError, match="rowskip-predicted: input must be C-contiguous"):
        kp.forward(pp, x.astype(np.float64))


def test_auto_never_picks_the_approximate_backend():
    model = random_model([32, 24, 10], 0.1, seed=2)
    x = np.random.default_rng(2).standard_normal((300, 32)).astype(np.float32)
    model.predictor = fit_mlp_predictor(model.spec, x, PredictorConfig(rank=4))
    for b in (1, 8, 64, 300):
        model.predict(x[:b], backend="auto")
        assert model.auto_backend(b) != "rowskip-predicted"


def test_compile_with_a_predictor_reports_recall_and_accuracy(tmp_path, capsys):
    from taugate.cli import main

    try:
        from test_cli_compile import _calib, _checkpoint
    except ImportError:
        from tests.test_cli_compile import _calib, _checkpoint
    ckpt = _checkpoint(tmp_path / "m.safetensors")
    calib = _calib(tmp_path / "calib.npy")
    out = tmp_path / "m.taugate"
    assert main(["compile", str(ckpt), "--out", str(out), "--calib-data", str(calib),
                 "--predictor", "2", "--predictor-margin", "inf", "--no-eval", "-q"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "predictor (approximate, rowskip-predicted): lowrank rank 2, margin inf" in text
    m = load(out)
    assert m.predictor.rank == 2 and m.predictor.margin == np.inf
    x = np.load(calib)
    np.testing.assert_allclose(m.predict(x, backend="rowskip-predicted"),
                               m.predict(x, backend="rowskip"), atol=1e-5)  # fmt: skip
    with pytest.raises(SystemExit):
        main(["compile", str(ckpt), "--out", str(out), "--predictor", "0"])
    assert "--predictor" in capsys.readouterr().err


def test_bench_times_the_predicted_backend_and_says_it_is_approximate(tmp_path, capsys):
    from taugate.cli import main

    js = tmp_path / "b.json"
    assert main(["bench", "--random", "64", "--active", "0.3", "--batch-sizes", "1,4",
                 "--backends", "rowskip,rowskip-predicted", "--predictor", "8",
                 "--margins", "1,inf", "--rounds", "3", "--threads", "1", "--json", str(js)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "Predicted gates (APPROXIMATE)" in text
    assert "rowskip-predicted (approximate, m=inf)" in text
    rows = json.loads(js.read_text())["rows"]
    pred = [r for r in rows if r["backend"].startswith("rowskip-predicted")]
    assert len(pred) == 4 and all(0 < r["quality"]["recall"] <= 1 for r in pred)
    inf = [r for r in pred if r["quality"]["margin"] is None]  # +inf is null in strict JSON
    assert all(r["quality"]["recall"] == 1.0 and r["quality"]["agreement"] == 1.0 for r in inf)


def test_a_sweep_reports_predicted_gates_across_lambda_and_margin(tmp_path):
    from taugate.sweep.config import SweepConfig
    from taugate.sweep.run import run_sweep

    tiny = dict(dataset="digits", widths=(12,), lambdas=(0.0, 0.05), seeds=1, batch_sizes=(1,),
                rounds=3, foundation_epochs=6, limit_test=120, paper_steps=False,
                backends=("compact", "rowskip"), sample_seconds=0.0005)  # fmt: skip
    plain = SweepConfig.from_flat(**tiny)
    assert "predictor_rank" not in plain.to_dict()  # older sweeps keep their keys and resume
    assert "rowskip-predicted" not in SweepConfig.from_flat(**{**tiny, "backends": ()}).backends
    with pytest.raises(TauGateError, match="needs --predictor RANK"):
        SweepConfig.from_flat(**{**tiny, "backends": ("rowskip", "rowskip-predicted")})
    with pytest.raises(TauGateError, match="margins must be finite"):
        SweepConfig.from_flat(**tiny, predictor_rank=4, margins=(1.0, float("inf")))
    cfg = SweepConfig.from_flat(**tiny, predictor_rank=4, margins=(1.0, 3.0))
    assert cfg.backends[-1] == "rowskip-predicted"
    rows = run_sweep(cfg, tmp_path, quiet=True)
    pred = [r for r in rows if r["backend"].startswith("rowskip-predicted")]
    assert {(r["lambda"], r["pred_margin"]) for r in pred} == {(0.0, 1.0), (0.0, 3.0), (0.05, 1.0),
                                                              (0.05, 3.0)}  # fmt: skip
    for r in pred:
        assert 0 < r["pred_recall"] <= 1 and 0 < r["pred_computed"] <= 1
        assert r["speedup_vs_rowskip"] > 0
        assert r["pred_acc_change"] == pytest.approx(
            100 * (r["acc_angle_predicted"] - r["acc_angle_compiled"])
        )
    summary = (tmp_path / "summary.md").read_text()
    assert "## Predicted gates (APPROXIMATE)" in summary
    assert "vs rowskip, batch 1" in summary
    assert (tmp_path / "figures" / "predicted_pareto.png").stat().st_size > 1000
    assert load(tmp_path / "artifacts" / "w12-s0-l0.05.taugate").predictor.rank == 4
