"""Sweep reports: statistics over seeds, summary.md, figures, the work cap, atomic writes."""

from __future__ import annotations

import math
import random

import pytest

from taugate import backends as registry
from taugate.errors import TauGateError
from taugate.sweep import figures
from taugate.sweep.figures import (
    plot_latency_vs_batch,
    plot_pareto,
    plot_speedup_vs_active,
    write_figures,
)
from taugate.sweep.stats import summarise, work_cap
from taugate.sweep.summary import rowskip_beaten, summary_markdown, write_summary

BACKENDS = registry.names()  # the report order is the registry's

SEEDS, LAMBDAS, BATCHES = (0, 1), (0.01, 0.1), (1, 64)
SLOW = {(0.01, 64), (0.1, 1)}  # rowskip >= compact: slower at (0.01, 64), equal at (0.1, 1)


def _ms(lam: float, backend: str, batch: int, seed: int) -> float:
    if backend == "compact" or (lam, batch) == (0.1, 1):
        return 2.0 + 0.2 * seed  # equal to compact at (0.1, 1): "not below" counts as not paying
    return (3.0 if (lam, batch) == (0.01, 64) else 1.0) + 0.2 * seed


def _row(lam, seed, backend, batch, width=128) -> dict:
    active = 0.5 - lam  # same for every backend / batch of the cell
    ms = _ms(lam, backend, batch, seed)
    cap = 1.0 + (1 - active)
    return {
        "lambda": lam, "seed": seed, "width": width, "backend": backend, "batch": batch,
        "acc_0_soft": 0.97, "acc_angle_soft": 0.95 - lam + 0.02 * seed,
        "acc_0_hard": 0.96, "acc_angle_hard": 0.90 - lam + 0.02 * seed,
        "acc_0_compiled": 0.96, "acc_angle_compiled": 0.90 - lam + 0.02 * seed,
        "active_L1": active, "active_L2": active, "active_mean": active,
        "median_ms": ms, "p25_ms": 0.9 * ms, "p75_ms": 1.1 * ms,
        "speedup_vs_torch": 4.0 / ms, "speedup_vs_dense": 3.0 / ms,
        "work_cap": cap, "cap_share": 3.0 / ms / cap, "angle": 30.0, "dataset": "mnist",
    }  # fmt: skip


def _rows(seeds=SEEDS, backends=("compact", "rowskip"), widths=(128,)) -> list[dict]:
    return [_row(lam, s, be, b, w) for w in widths for lam in LAMBDAS for s in seeds
            for be in backends for b in BATCHES]  # fmt: skip


STD2 = 0.2 / math.sqrt(2)  # sample std of {x, x + 0.2}
META = {"cpu": "Test CPU 9000", "cores": 2, "threads": 2, "numba_threading_layer": "workqueue",
        "blas": "openblas", "versions": {"numpy": "1.26.4", "numba": "0.60.0"}}  # fmt: skip


# ---------------------------------------------------------------- work cap


def test_work_cap_hand_computed():
    # dense = 4*3 + 3*2 + 2*1 = 20; rowskip = 4*3 + 1*2 + 2*1 = 16
    assert work_cap([4, 3, 2, 1], [1, 2]) == pytest.approx(1.25)
    # dense = 784*128 + 128*128 + 128*10 = 100352 + 16384 + 1280 = 118016
    # rowskip = 784*128 + 64*128 + 32*10 = 100352 + 8192 + 320 = 108864
    assert work_cap([784, 128, 128, 10], [64, 32]) == pytest.approx(118016 / 108864)
    assert work_cap([784, 128, 128, 10], [128, 128]) == pytest.approx(1.0)  # nothing skipped
    assert work_cap([784, 10], []) == pytest.approx(1.0)  # no hidden layer


@pytest.mark.parametrize(
    "sizes, counts",
    [([4, 3, 2, 1], [1]), ([4, 3, 2, 1], [1, 2, 3]), ([4, 3, 2, 1], [-1, 2]), ([4], []),
     ([4, 3, 2, 1], [4, 1]), ([4, 0, 2, 1], [0, 1]), ([4, 3, 2, 1], [float("nan"), 1])],
)  # fmt: skip
def test_work_cap_rejects_inconsistent_input(sizes, counts):
    with pytest.raises(TauGateError, match="work_cap"):
        work_cap(sizes, counts)


# ---------------------------------------------------------------- summarise


def test_summarise_means_stds_and_order():
    rows = _rows()
    random.Random(0).shuffle(rows)
    summ = summarise(rows)
    assert len(summ) == 2 * 2 * 2  # lambdas x backends x batches
    keys = [(s["width"], s["lambda"], s["backend"], s["batch"]) for s in summ]
    assert keys == [(128, lam, be, b) for lam in LAMBDAS for be in ("compact", "rowskip")
                    for b in BATCHES]  # fmt: skip
    for s in summ:
        lam, be, b = s["lambda"], s["backend"], s["batch"]
        assert s["n_seeds"] == 2
        assert s["median_ms_mean"] == pytest.approx(_ms(lam, be, b, 0) + 0.1)
        assert s["median_ms_std"] == pytest.approx(STD2)
        assert s["acc_angle_hard_mean"] == pytest.approx(0.91 - lam)
        assert s["acc_angle_hard_std"] == pytest.approx(0.02 / math.sqrt(2))
        assert s["active_mean_mean"] == pytest.approx(0.5 - lam)
        assert s["active_mean_std"] == pytest.approx(0.0)
        assert s["active_L2_mean"] == pytest.approx(0.5 - lam)
        sp = [4.0 / _ms(lam, be, b, k) for k in SEEDS]
        assert s["speedup_vs_torch_mean"] == pytest.approx(sum(sp) / 2)
        assert s["speedup_vs_torch_std"] == pytest.approx(abs(sp[0] - sp[1]) / math.sqrt(2))
        for f in ("speedup_vs_dense", "work_cap", "cap_share", "acc_0_soft", "acc_angle_compiled"):
            assert math.isfinite(s[f"{f}_mean"]) and math.isfinite(s[f"{f}_std"])


def test_summarise_backend_order_widths_and_csv_strings():
    rows = _rows(seeds=(0,), backends=tuple(reversed(BACKENDS)), widths=(512, 128))
    rows = [{k: (str(v) if k != "backend" else v) for k, v in r.items()} for r in rows]  # as CSV
    summ = summarise(rows)
    first = [(s["width"], s["lambda"], s["backend"]) for s in summ if s["batch"] == 1]
    expect = [(w, lam, be) for w in (128, 512) for lam in LAMBDAS for be in BACKENDS]
    assert first == expect
    assert all(s["n_seeds"] == 1 and math.isnan(s["median_ms_std"]) for s in summ)
    assert summ[0]["median_ms_mean"] == pytest.approx(_ms(0.01, "torch", 1, 0))


def test_summarise_nan_and_missing_fields():
    rows = _rows()
    rows[0]["median_ms"] = float("nan")
    del rows[1]["speedup_vs_torch"]
    rows[2]["work_cap"] = ""
    summ = summarise(rows)
    assert all(math.isfinite(s["median_ms_mean"]) for s in summ)
    with pytest.raises(TauGateError, match="'width'"):
        summarise([{k: v for k, v in _row(0.1, 0, "rowskip", 1).items() if k != "width"}])


# ---------------------------------------------------------------- summary.md


def _not_paying_cells(md: str) -> set[tuple]:
    section = md.split("## Where row-skip does not pay")[1].split("\n## ")[0]
    out = set()
    for line in section.splitlines():
        if line.startswith("- width"):
            head = line.split(":")[0]  # "- width 128, λ=0.01, batch 64"
            w, lam, b = (p.split()[-1].split("=")[-1] for p in head.split(","))
            out.add((int(w), float(lam), int(b)))
    return out


def test_summary_markdown_content():
    md = summary_markdown(_rows(), META)
    for s in ("# TauGate sweep summary", "mnist", "30°", "seeds: 0, 1 (2)", "Test CPU 9000",
              "workqueue", "openblas", "numpy 1.26.4", "cores: 2",
              "Width 128: accuracy", "Width 128, batch 1: speedup", "Width 128, batch 64: speedup",
              "| λ | hard active % | acc 30° soft | acc 30° hard | acc 30° compiled | acc 0° hard |",
              "rowskip work cap", "% of cap", "## Where row-skip does not pay"):  # fmt: skip
        assert s in md, s
    # lambda 0.01: active 49.0 ± 0.0 %, acc angle hard mean(0.89, 0.91) = 90.00 ± 1.41 %
    assert "| 0.01 | 49.0 ± 0.0 | 95.00 ± 1.41 | 90.00 ± 1.41 | 90.00 ± 1.41 | 96.00 ± 0.00 |" in md
    # batch 1, lambda 0.01: compact 4/2, 4/2.2 -> 1.91 ± 0.13x; rowskip 4/1, 4/1.2 -> 3.67 ± 0.47x
    assert "1.91x ± 0.13" in md and "3.67x ± 0.47" in md
    assert _not_paying_cells(md) == {(128, lam, b) for lam, b in SLOW}


def test_summary_names_the_backend_that_beats_rowskip():
    rows = _rows(backends=("compact", "rowskip", "onnxruntime"))
    for r in rows:  # onnxruntime: 0.5 ms everywhere but at lambda 0.1, batch 64 (slow there)
        if r["backend"] == "onnxruntime":
            r["median_ms"] = 9.0 if (r["lambda"], r["batch"]) == (0.1, 64) else 0.5
    beaten = rowskip_beaten(summarise(rows))
    assert {(lam, b, best) for _w, lam, b, best, _ms, _rs in beaten} == {
        (0.01, 1, "onnxruntime"), (0.01, 64, "onnxruntime"), (0.1, 1, "onnxruntime")}  # fmt: skip
    section = summary_markdown(rows).split("## Where row-skip is not the fastest")[1]
    # batch 1: rowskip 1.1 ms (mean over seeds) at 0.01, 2.1 ms at 0.1 (equal to compact)
    assert (
        "- width 128, batch 1: onnxruntime in 2 of 2 λ (rowskip runs at 0.24–0.45x of its speed)"
        in section
    )
    # batch 64: onnxruntime is slow at 0.1, where rowskip (1.1 ms) also beats compact (2.1 ms)
    assert "- width 128, batch 64: onnxruntime in 1 of 2 λ (rowskip runs at 0.16x" in section
    assert "- none" in summary_markdown(_rows(backends=("rowskip",))).split("not the fastest")[1]


def test_summary_markdown_single_seed_and_none_slow(tmp_path):
    rows = [r for r in _rows(seeds=(0,)) if (r["lambda"], r["batch"]) not in SLOW]
    md = summary_markdown(rows)
    table_rows = [ln for ln in md.splitlines() if ln.startswith("| 0.")]
    assert len(table_rows) == 2 + 1 + 1  # accuracy: 2 lambdas; each batch: the lambda left
    assert not any("±" in ln for ln in table_rows) and "no machine information" in md
    assert "- none: rowskip beat compact" in md and not _not_paying_cells(md)
    path = write_summary(tmp_path / "out", rows, META)
    assert path == tmp_path / "out" / "summary.md"
    assert path.read_text(encoding="utf-8").startswith("# TauGate sweep summary")


def test_write_summary_is_atomic(tmp_path, monkeypatch):
    (tmp_path / "summary.md").write_text("old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("taugate.io.os.replace", boom)
    with pytest.raises(OSError):
        write_summary(tmp_path, _rows(), META)
    assert (tmp_path / "summary.md").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.md"]


# ---------------------------------------------------------------- figures


def _assert_png_pdf(paths, stem):
    assert [p.name for p in paths] == [f"{stem.name}.png", f"{stem.name}.pdf"]
    assert paths[0].read_bytes().startswith(b"\x89PNG")
    assert paths[1].read_bytes().startswith(b"%PDF")


def _with_nan_backend(rows):
    bad = dict(rows[0], backend="scipy-sparse")
    for k in ("median_ms", "speedup_vs_torch", "speedup_vs_dense", "acc_angle_hard", "active_mean"):
        bad[k] = float("nan")
    return [*rows, bad]


def test_plots_write_png_and_pdf(tmp_path):
    rows = _with_nan_backend(_rows(backends=("torch", "dense", "compact", "rowskip")))
    for fn, kw in ((plot_pareto, {"paper_lambda": 0.1}), (plot_speedup_vs_active, {"batch": 64}),
                   (plot_latency_vs_batch, {"lam": 0.01, "width": 128})):  # fmt: skip
        stem = tmp_path / fn.__name__
        _assert_png_pdf(fn(rows, stem, **kw), stem)
    with pytest.raises(TauGateError, match="width 999"):
        plot_latency_vs_batch(rows, tmp_path / "x", width=999)
    with pytest.raises(TauGateError, match="lambda 0.5"):
        plot_latency_vs_batch(rows, tmp_path / "x", lam=0.5)
    assert not list(tmp_path.glob("x.*"))


def test_figures_single_seed_and_nan_rows():
    from matplotlib import pyplot as plt

    rows = _with_nan_backend(_rows(seeds=(0,), widths=(128, 512)))
    rows[3]["work_cap"] = float("nan")
    for fig in (figures.pareto_figure(rows, 0.01), figures.speedup_figure(rows, 64),
                figures.latency_figure(rows, lam=0.01, width=512)):  # fmt: skip
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert labels and not [t for t in fig.axes[0].texts if "no data" in t.get_text()]
        plt.close(fig)
    assert "reproduce default λ=0.01" in labels_of(figures.pareto_figure(rows, 0.01))
    assert "scipy-sparse" not in labels_of(figures.latency_figure(rows))  # all-NaN backend: no line


def labels_of(fig) -> list[str]:
    from matplotlib import pyplot as plt

    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    return labels


def test_pareto_marks_the_paper_setting():
    from matplotlib import pyplot as plt

    fig = figures.pareto_figure(_rows(widths=(128, 512)), paper_lambda=0.1)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == ["reproduce default λ=0.1", "width 128", "width 512"]
    stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert len(stars) == 1
    # lambda 0.1: sparsity 100 * (1 - 0.4) = 60 %, accuracy 100 * (0.91 - 0.1) = 81 %, both widths
    assert list(stars[0].get_xdata()) == pytest.approx([60.0, 60.0])
    assert list(stars[0].get_ydata()) == pytest.approx([81.0, 81.0])
    assert {t.get_text() for t in ax.texts} == {"λ=0.01", "λ=0.1"}
    plt.close(fig)
    fig = figures.pareto_figure(_rows(), paper_lambda=None)
    assert not [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "*"]
    plt.close(fig)


def test_speedup_figure_has_cap_line_and_latency_crossover():
    from matplotlib import pyplot as plt

    fig = figures.speedup_figure(_rows(), batch=1)
    ax = fig.axes[0]
    assert figures.CAP_LABEL in [t.get_text() for t in ax.get_legend().get_texts()]
    caps = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--" and ln.get_marker() == "x"]
    assert len(caps) == 1
    assert list(caps[0].get_xdata()) == pytest.approx([40.0, 49.0])  # active % sorted
    assert list(caps[0].get_ydata()) == pytest.approx([1.6, 1.51])  # 1 + (1 - active)
    plt.close(fig)
    fig = figures.latency_figure(_rows())  # width 128, lambda 0.1: rowskip == compact at batch 1
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sorted(labels) == ["compact", "rowskip", "rowskip first ≥ compact at batch 1"]
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"
    plt.close(fig)


def test_write_figures_picks_batch(tmp_path, monkeypatch):
    from matplotlib import pyplot as plt

    rows = [dict(r, batch=r["batch"] + 3) for r in _rows()]  # batches 4 and 67: no batch 1
    seen = []
    orig = figures.plot_speedup_vs_active
    monkeypatch.setattr(figures, "plot_speedup_vs_active",
                        lambda rows, stem, batch: seen.append(batch) or orig(rows, stem, batch))  # fmt: skip
    paths = write_figures(tmp_path, rows, paper_lambda=0.01)
    assert seen == [4]
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert (
        names
        == sorted(p.name for p in paths)
        == sorted(
            f"{s}.{e}"
            for s in ("pareto", "speedup_vs_active", "latency_vs_batch")
            for e in ("png", "pdf")
        )
    )
    saved = []

    def fake_save(fig, stem):
        saved.append((stem.name, fig.axes[0].texts[0].get_text()))
        plt.close(fig)
        return []

    monkeypatch.setattr(figures, "save_figure", fake_save)
    write_figures(tmp_path / "empty", [])  # no rows: placeholder figures, no crash
    assert [n for n, _ in saved] == ["pareto", "speedup_vs_active", "latency_vs_batch"]
    assert all(t.startswith("no data") for _, t in saved)


def test_figure_write_is_atomic(tmp_path, monkeypatch):
    from matplotlib import pyplot as plt
    from matplotlib.figure import Figure

    def half_then_fail(self, fname, *a, **k):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise RuntimeError("interrupted")

    (tmp_path / "pareto.png").write_bytes(b"old")
    open_before = set(plt.get_fignums())
    monkeypatch.setattr(Figure, "savefig", half_then_fail)
    for fn, stem in ((plot_pareto, "pareto"), (plot_speedup_vs_active, "speed"),
                     (plot_latency_vs_batch, "latency")):  # fmt: skip
        with pytest.raises(RuntimeError, match="interrupted"):
            fn(_rows(), tmp_path / stem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pareto.png"]  # no temp files, no new
    assert (tmp_path / "pareto.png").read_bytes() == b"old"
    assert set(plt.get_fignums()) == open_before  # figures closed on failure too
