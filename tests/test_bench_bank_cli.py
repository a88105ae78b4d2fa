"""``taugate bench-bank``: the switch-cost and mixed-batch measurement of a mode bank, printed and
written as JSON (figures are checked for sense, never for speed)."""

from __future__ import annotations

import json
import math

from taugate.cli import main

try:
    from test_bank_cli import _bank, files  # noqa: F401  (the fixture)
except ImportError:  # tests/ imported as a package
    from tests.test_bank_cli import _bank, files  # noqa: F401


def test_bench_bank_prints_and_writes_the_figures(files, tmp_path, capsys):  # noqa: F811
    _, ckpts, calib, _ = files
    bank, rc = _bank(tmp_path, ckpts, "--calib-data", calib)
    assert rc == 0
    capsys.readouterr()
    out = tmp_path / "cost.json"
    assert (
        main(["bench-bank", str(bank), "--batch", "6", "--repeats", "3", "--json", str(out)]) == 0
    )
    text = capsys.readouterr().out
    assert "switch mode, batch 1" in text and "2 separate calls, one per mode" in text
    r = json.loads(out.read_text())
    assert r["written_by"] == "taugate bench-bank" and r["modes"] == ["deg0", "deg45"]
    for k in ("switch_us", "same_mode_us", "reload_us", "mixed_batch_us", "separate_calls_us"):
        assert math.isfinite(r[k]) and r[k] > 0, k
    assert r["max_abs_diff_mixed_vs_separate"] < 1e-4
    keep = tmp_path / "x.npy"  # someone else's file is kept unless --force
    before = keep.read_bytes()
    assert main(["bench-bank", str(bank), "--repeats", "1", "--json", str(keep)]) != 0
    err = capsys.readouterr().err
    assert "was not written by taugate bench-bank; refusing to overwrite" in err
    assert err.count("\n") == 1 and keep.read_bytes() == before
