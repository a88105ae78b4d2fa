"""``taugate bench-plot``: the figure of a bench JSON file, where the candidate backend wins, and
one-line errors for a missing or foreign file and for figures it would overwrite."""

from __future__ import annotations

import json

import pytest

from taugate.bench.plot import said, wins
from taugate.cli import main


def rows():
    """Two panels: the candidate wins at batch 64 only in the first, never in the second."""
    out = []
    for width, active, times in ((2048, 0.1, {8: (5, 4, 9), 64: (20, 30, 25)}),
                                 (4096, 0.3, {8: (9, 4, 8), 64: (50, 40, 45)})):  # fmt: skip
        for batch, (cand, compact, ort) in times.items():
            for backend, ms in (("rowskip-batched", cand), ("compact", compact),
                                ("onnxruntime", ort)):  # fmt: skip
                out.append({"width": width, "target_active": active, "backend": backend,
                            "batch": batch, "median_ms": ms})  # fmt: skip
    return out


def test_wins_needs_every_reference_beaten():
    series = {"rowskip-batched": [(8, 1.0), (64, 1.0)], "compact": [(8, 2.0), (64, 0.5)],
              "onnxruntime": [(8, 0.9), (64, 3.0)]}  # fmt: skip
    assert wins(series, "rowskip-batched") == []
    series["onnxruntime"] = [(8, 1.5), (64, 3.0)]
    assert wins(series, "rowskip-batched") == [8]
    assert wins(series, "rowskip") == [] and said([]) == "never faster"


def test_cli_draws_the_figure_and_refuses_to_overwrite_it(tmp_path, capsys):
    src = tmp_path / "bench.json"
    src.write_text(json.dumps({"written_by": "taugate bench", "rows": rows()}))
    stem = tmp_path / "fig"
    assert main(["bench-plot", str(src), "--out", str(stem)]) == 0
    out = capsys.readouterr().out
    assert "width 2048, 10 % active: rowskip-batched faster at batch 64" in out
    assert "width 4096, 30 % active: rowskip-batched never faster" in out
    assert (tmp_path / "fig.png").stat().st_size > 1000 and (tmp_path / "fig.pdf").exists()
    assert main(["bench-plot", str(src), "--out", str(stem)]) != 0
    err = capsys.readouterr().err
    assert "fig.png exists; refusing to overwrite it (pass --force" in err and err.count("\n") == 1
    assert main(["bench-plot", str(src), "--out", str(stem), "--force"]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    for content, msg in (("{", "not a JSON file"), ('{"rows": [{"batch": 1}]}',
                                                     "not a taugate bench --json file")):  # fmt: skip
        bad.write_text(content)
        assert main(["bench-plot", str(bad), "--out", str(tmp_path / "x")]) != 0
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1
    assert main(["bench-plot", str(tmp_path / "none.json"), "--out", str(tmp_path / "y")]) != 0
    assert "none.json: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench-plot", "--help"])
    assert "examples:" in capsys.readouterr().out
