"""`taugate compile` on a hand-built checkpoint whose firing rates are known exactly."""

import json

import numpy as np
import pytest
import torch

from taugate.cli import main
from taugate.nn import MLP, build_method, gates, save_checkpoint

SIZES = [64, 8, 6, 10]
RATES0 = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]  # hidden layer 0, unit j fires on rows r >= j


def _checkpoint(path, sizes=SIZES, provenance=None):
    """Layer 0 unit j: ``z = x[0] - (j + 0.5)``; on the calibration rows ``x[r, 0] = r + 1``
    (r < 10) it fires on 10 - j of them. Layer 1: zero weights, units 0-2 always fire, 3-5 never,
    so dropping layer-0 units leaves the logits unchanged. Gates open at ``z > -1``."""
    torch.manual_seed(0)
    model = build_method(MLP(sizes), "taugate")
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[:, 0] = 1.0
        model[0].bias.copy_(-(torch.arange(sizes[1]) + 0.5))
        if len(sizes) > 3:
            model[2].weight.zero_()
            model[2].bias.copy_(torch.tensor([1.0, 1, 1, -1, -1, -1]))
        for _, g in gates(model):
            g.tau.fill_(-1.0)
    prov = {"dataset": "digits", "target_angle": 0.0} if provenance is None else provenance
    return save_checkpoint(model, path, sizes=sizes, method="taugate", provenance=prov)


def _calib(path, n_in=64, rows=10):
    x = np.zeros((rows, n_in), np.float32)
    x[:, 0] = np.arange(1, rows + 1)
    np.save(path, x)
    return path


@pytest.fixture
def files(tmp_path):
    return _checkpoint(tmp_path / "m.safetensors"), _calib(tmp_path / "calib.npy")


def _compile(ckpt, out, *args):
    return main(["compile", str(ckpt), "--out", str(out), "-q", *map(str, args)])


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize(
    "min_rate, kept0", [(None, 8), (0.25, 8), (0.3, 7), (0.5, 5), (0.7, 3), (0.95, 1)]
)
def test_min_rate_drops_units_firing_on_at_most_that_share(
    files, tmp_path, capsys, min_rate, kept0
):
    ckpt, calib = files
    out = tmp_path / "m.taugate"
    extra = [] if min_rate is None else ["--min-rate", min_rate]
    assert _compile(ckpt, out, "--calib-data", calib, *extra) == 0
    text = capsys.readouterr().out
    assert f"units kept per hidden layer {kept0}/8, 3/6" in text
    m = _manifest(out)
    expect = [j for j, r in enumerate(RATES0) if r > (min_rate or 0.0)]
    assert m["kept_units"] == [expect, [0, 1, 2]] and len(expect) == kept0
    assert [e["out"] for e in m["layers"]] == [kept0, 3, 10]
    assert [e["out"] for e in m["original_layers"]] == [8, 6, 10]
    rep = m["compile"]
    assert rep["units_kept"] == [kept0, 3] and rep["units_original"] == [8, 6]
    assert rep["config"] == {"min_rate": min_rate or 0.0, "compact": True}
    assert rep["calibration"] == {"file": str(calib), "size": 10}
    # layer 1 ignores layer 0, so even dropping units that do fire keeps the function
    assert rep["accuracy_before"] == rep["accuracy_after"]


def test_no_compact_keeps_every_unit(files, tmp_path, capsys):
    ckpt, calib = files
    out = tmp_path / "m.taugate"
    assert _compile(ckpt, out, "--calib-data", calib, "--no-compact", "--min-rate", 0.5) == 0
    assert "units kept per hidden layer 8/8, 6/6" in capsys.readouterr().out
    m = _manifest(out)
    assert m["kept_units"] == [list(range(8)), list(range(6))]
    assert [e["out"] for e in m["layers"]] == [8, 6, 10] and m["layers"] == m["original_layers"]
    assert m["compile"]["config"]["compact"] is False and m["compile"]["units_kept"] == [8, 6]


def test_npy_calibration_still_reports_accuracy_on_the_test_split(files, tmp_path, capsys):
    ckpt, calib = files
    out = tmp_path / "m.taugate"
    assert _compile(ckpt, out, "--calib-data", calib) == 0
    captured = capsys.readouterr()
    assert "accuracy on 359 test inputs (digits at 0°): hard-gated torch" in captured.out
    assert "warning" not in captured.err
    rep = _manifest(out)["compile"]
    assert {"accuracy_before", "accuracy_after", "max_abs_diff_vs_torch"} <= set(rep)
    assert rep["eval_size"] == 359 and rep["calibration"]["file"] == str(calib)
    ev = rep["evaluation"]
    assert (ev["dataset"], ev["split"], ev["angle"], ev["size"]) == ("digits", "test", 0.0, 359)
    assert _compile(ckpt, out, "--calib-data", calib, "--eval-size", 50) == 0  # replaces it
    assert _manifest(out)["compile"]["eval_size"] == 50


def test_no_eval_opts_out(files, tmp_path, capsys):
    ckpt, calib = files
    out = tmp_path / "m.taugate"
    assert _compile(ckpt, out, "--calib-data", calib, "--no-eval") == 0
    captured = capsys.readouterr()
    assert "accuracy before/after not measured (--no-eval)" in captured.out and not captured.err
    rep = _manifest(out)["compile"]
    assert "accuracy_before" not in rep and rep["evaluation"] == {
        "skipped": "turned off (--no-eval)"
    }
    with pytest.raises(SystemExit):
        _compile(ckpt, out, "--no-eval", "--eval-size", 5)
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    "provenance, reason",
    [
        ({"dataset": "fashion-mnist"}, "data set 'fashion-mnist' is not available here"),
        ({}, "has no dataset in its provenance"),
    ],
)
def test_evaluation_data_that_cannot_be_loaded_is_a_warning(
    tmp_path, capsys, monkeypatch, provenance, reason
):
    monkeypatch.delenv("TAUGATE_DATA_DIR", raising=False)  # offline, empty cache: falls back
    ckpt = _checkpoint(tmp_path / "m.safetensors", [784, 8, 10], provenance)
    calib = _calib(tmp_path / "calib.npy", n_in=784)
    out = tmp_path / "m.taugate"
    assert _compile(ckpt, out, "--calib-data", calib) == 0
    captured = capsys.readouterr()
    warning = [ln for ln in captured.err.splitlines() if ln.startswith("taugate: warning:")]
    assert len(warning) == 1 and "accuracy before/after not measured:" in warning[0]
    assert reason in warning[0]
    assert "accuracy before/after not measured (see the warning above)" in captured.out
    rep = _manifest(out)["compile"]
    assert "accuracy_before" not in rep and reason in rep["evaluation"]["skipped"]


@pytest.mark.parametrize("lenient_loader", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_non_finite_calibration_file_is_refused(
    files, tmp_path, capsys, monkeypatch, bad, lenient_loader
):
    """Refused by compile itself, also when the .npy loader lets NaN / inf through."""
    import taugate.compile

    def lenient(path, n_in):
        with np.errstate(over="ignore"):
            return np.load(path).astype(np.float32)  # 1e300 -> inf

    if lenient_loader:
        monkeypatch.setattr(taugate.compile, "load_inputs", lenient)
    ckpt, _ = files
    x = np.zeros((10, 64))
    x[3, 5] = bad  # 1e300 overflows float32 to inf
    np.save(tmp_path / "calib_nan.npy", x)
    out = tmp_path / "m.taugate"
    assert _compile(ckpt, out, "--calib-data", tmp_path / "calib_nan.npy") == 2
    err = capsys.readouterr().err
    assert err.startswith("taugate: error: ") and len(err.strip().splitlines()) == 1, err
    assert "calib_nan.npy" in err and "row 3" in err and "NaN or inf" in err
    assert not out.exists()


def test_output_is_checked_before_any_work(files, tmp_path, capsys, monkeypatch):
    import taugate.nn.checkpoint

    def never(*_a, **_k):
        raise AssertionError("the checkpoint was loaded before the output was checked")

    ckpt, calib = files
    monkeypatch.setattr(taugate.nn.checkpoint, "load_checkpoint", never)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    for out, message in [
        (blocker, "exists and was not written by taugate"),
        (busy, "holding files that are not part of an artifact"),
        (blocker / "m.taugate", "file is not writable (it is not a directory)"),
        (blocker / "sub" / "m.taugate", "file is not writable"),
    ]:
        assert _compile(ckpt, out, "--calib-data", calib) == 2
        err = capsys.readouterr().err
        assert message in err and str(out) in err and len(err.strip().splitlines()) == 1, err
    assert blocker.read_text() == "x" and (busy / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "busy",
        "calib.npy",
        "file",
        "m.safetensors",
    ]


def test_an_existing_artifact_and_missing_parents_are_fine(files, tmp_path):
    ckpt, calib = files
    out = tmp_path / "new" / "dir" / "m.taugate"
    assert _compile(ckpt, out, "--calib-data", calib, "--no-eval") == 0
    assert _compile(ckpt, out, "--calib-data", calib, "--no-eval", "--min-rate", 0.5) == 0
    assert _manifest(out)["compile"]["units_kept"] == [5, 3]


def test_npz_calibration_file_is_read_as_a_file(files, tmp_path, capsys):
    ckpt, calib = files
    npz = tmp_path / "calib.npz"
    np.savez(npz, inputs=np.load(calib))
    out = tmp_path / "m.taugate"
    assert _compile(ckpt, out, "--calib-data", npz, "--min-rate", 0.5, "--no-eval") == 0
    m = _manifest(out)
    assert m["compile"]["calibration"] == {"file": str(npz), "size": 10}
    assert m["kept_units"] == [[0, 1, 2, 3, 4], [0, 1, 2]]  # as with the same rows in an .npy
    two = tmp_path / "two.npz"
    np.savez(two, a=np.load(calib), b=np.load(calib))
    assert _compile(ckpt, out, "--calib-data", two, "--no-eval") == 2
    err = capsys.readouterr().err
    assert "two.npz" in err and "exactly one array, found 2" in err, err
    assert len(err.strip().splitlines()) == 1, err
