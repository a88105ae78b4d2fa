"""The mode bank runtime: every row equals its mode's single-mode model (the hard-gated torch
model, the slow reference, the mode as an artifact), on random shapes; mixed batches; switching
without reload; bad calls; no torch; the switch-cost API."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taugate.bank import BankModel, SwitchCostConfig, build_bank, load_bank, save_bank, switch_cost
from taugate.errors import TauGateError
from taugate.kernels import bank as kernels
from taugate.runtime import CompiledModel

try:
    from bank_helpers import (
        GAMMA_KINDS,
        TAU_KINDS,
        foundation,
        mode_model,
        reference_tensors,
        torch_hard,
        write_taus,
    )
    from reference import reference_bank_forward, separate_bank_ties
    from test_kernels import assert_close
except ImportError:  # tests/ imported as a package
    from tests.bank_helpers import (
        GAMMA_KINDS,
        TAU_KINDS,
        foundation,
        mode_model,
        reference_tensors,
        torch_hard,
        write_taus,
    )
    from tests.reference import reference_bank_forward, separate_bank_ties
    from tests.test_kernels import assert_close

ROOT = Path(__file__).resolve().parent.parent
THREADS = [t for t in (1, 2) if t <= numba.config.NUMBA_NUM_THREADS]


@st.composite
def cases(draw):
    n_hidden = draw(st.integers(1, 3))
    width = st.one_of(st.integers(1, 20), st.integers(1, 48), st.integers(49, 160))
    sizes = [draw(width) for _ in range(n_hidden + 2)]
    gated = draw(st.lists(st.sampled_from(range(n_hidden)), min_size=1, unique=True))
    n_modes = draw(st.integers(1, 4))
    kinds = [
        (
            [draw(st.sampled_from(TAU_KINDS)) for _ in gated],
            [draw(st.sampled_from(GAMMA_KINDS)) for _ in gated],
        )
        for _ in range(n_modes)
    ]
    batch = draw(st.one_of(st.just(1), st.integers(2, 9), st.integers(10, 40)))
    calibrate = draw(st.booleans())
    return sizes, sorted(gated), kinds, batch, calibrate, draw(st.integers(0, 2**32 - 1))


def make(case):
    """Models of one foundation, tie-separated on x, and the reference's tensors."""
    sizes, gated, kinds, batch, calibrate, seed = case
    rng = np.random.default_rng(seed)
    base = foundation(sizes, seed % 2**31)
    models = {f"m{k}": mode_model(base, gated, t, g, rng) for k, (t, g) in enumerate(kinds)}
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    x[:, rng.random(sizes[0]) < 0.2] = 0.0  # zero features are skipped by layer 0
    layers, tensors = reference_tensors(models)
    separate_bank_ties(layers, tensors, list(models), x)
    write_taus(models, tensors)
    row_modes = [f"m{k}" for k in rng.integers(0, len(models), batch)]
    return models, layers, tensors, x, row_modes, calibrate


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_row_equals_its_modes_single_mode_model(case):
    models, layers, tensors, x, row_modes, calibrate = make(case)
    bank = build_bank(models, calib_x=x if calibrate else None)
    model = BankModel(bank)
    ref = reference_bank_forward(layers, tensors, row_modes, x)
    hard = {n: torch_hard(m, x) for n, m in models.items()}  # (B, n_out) per mode
    rows = np.array([hard[n][b] for b, n in enumerate(row_modes)])  # (B, n_out)
    assert_close(rows, ref)
    for backend in ("rowskip", "compact"):
        for threads in THREADS:
            out = model.predict(x, modes=row_modes, backend=backend, threads=threads)
            assert_close(out, ref)
    idx = np.array([bank.spec.mode_index(n) for n in row_modes])
    out, counts = kernels.forward(model.packed, x, idx)
    assert_close(out, ref)
    _, numpy_counts = bank.spec.forward(x, idx)
    np.testing.assert_array_equal(counts, numpy_counts)
    for name in models:  # one mode for every row; the mode alone as an artifact's model
        single = CompiledModel(bank.spec.mode_spec(name))
        for backend in ("rowskip", "compact"):
            assert_close(model.predict(x, mode=name, backend=backend), hard[name])
            assert_close(single.predict(x, backend=backend), hard[name])
        assert_close(model.predict(x[:1], name), hard[name][:1])  # the batch-1 path


def _two_modes(sizes=(12, 10, 8, 3), seed=0):
    rng = np.random.default_rng(seed)
    base = foundation(list(sizes), seed)
    models = {
        n: mode_model(base, [0, 1], ["pos", "neg"], ["near1", "signed"], rng)
        for n in ("deg0", "deg45")
    }
    return models, rng.standard_normal((16, sizes[0])).astype(np.float32)


def test_switching_modes_reads_nothing_and_copies_nothing(tmp_path):
    models, x = _two_modes()
    save_bank(build_bank(models), tmp_path / "b.taugate-bank")
    model = load_bank(tmp_path / "b.taugate-bank")
    packed = model.packed
    first = {n: model.predict(x, mode=n) for n in model.modes}
    shutil.rmtree(tmp_path / "b.taugate-bank")  # nothing left to reload from
    for _ in range(3):
        for n in model.modes:
            np.testing.assert_array_equal(model.predict(x, mode=n), first[n])
            np.testing.assert_array_equal(model.select(n).predict(x), first[n])
    assert model.packed is packed and model.select("deg0").bank_model is model
    assert not np.array_equal(first["deg0"], first["deg45"])


def test_mixed_batch_rows_equal_single_mode_calls_row_by_row():
    models, x = _two_modes(seed=1)
    model = BankModel(build_bank(models))
    row_modes = ["deg45", "deg0", "deg0", "deg45"] * 4
    for backend in ("rowskip", "compact", "auto"):
        out = model.predict(x, modes=row_modes, backend=backend)
        for b, n in enumerate(row_modes):
            np.testing.assert_allclose(out[b], model.predict(x[b], mode=n)[0], atol=1e-5)
    model.predict(x, modes=row_modes)
    stats = model.last_stats
    assert stats["batch"] == 16 and len(stats["active_share"]) == 2
    assert all(0 <= s <= 1 for s in stats["active_share"])


def test_bad_calls_are_one_line_errors():
    models, x = _two_modes()
    model = BankModel(build_bank(models))
    cases = [
        (
            lambda: model.predict(x, mode="deg90"),
            "unknown mode 'deg90' (this bank has: deg0, deg45)",
        ),
        (
            lambda: model.predict(x, modes=["deg0"] * 15),
            "modes has 15 entries but the batch has 16",
        ),
        (lambda: model.predict(x, modes=["deg0"] * 15 + ["x"]), "unknown mode 'x'"),
        (lambda: model.predict(x, modes="deg0"), "modes must be a list of mode names"),
        (lambda: model.predict(x), "give mode=NAME or modes=[one name per row], not neither"),
        (lambda: model.predict(x, "deg0", modes=["deg0"] * 16), "not both"),
        (lambda: model.predict(x, "deg0", backend="dense"), "not available for a mode bank"),
        (lambda: model.predict(x, "deg0", threads=0), "threads must be an integer"),
        (lambda: model.predict(x[:, :3], "deg0"), "input has 3 features per row, expected 12"),
        (lambda: model.select("nope"), "unknown mode 'nope'"),
        (lambda: kernels.forward(model.packed, x, 2), "mode index 2 is not in [0, 2)"),
        (lambda: kernels.forward(model.packed, x, np.zeros(3, np.int64)), "one per row"),
        (lambda: kernels.forward(model.packed, x.astype(np.float64), 0), "C-contiguous float32"),
    ]
    for call, text in cases:
        with pytest.raises(TauGateError) as e:
            call()
        assert text in str(e.value) and "\n" not in str(e.value)
    bad = x.copy()
    bad[5, 2] = np.nan
    for backend in ("rowskip", "compact"):
        with pytest.raises(TauGateError, match="NaN or inf at row 5"):
            model.predict(bad, modes=["deg0"] * 16, backend=backend)
    model.predict(bad, "deg0", check_finite=False)  # unspecified values, but no error


NO_TORCH = textwrap.dedent(
    """
    import sys
    import numpy as np
    from taugate.bank import load_bank
    model = load_bank(sys.argv[1])
    modes = list(model.modes) * 2
    out = model.predict(np.ones((len(modes), model.n_in), np.float32), modes=modes)
    assert out.shape == (len(modes), model.n_out)
    assert "torch" not in sys.modules, "taugate.bank imported torch"
    print("ok")
    """
)


def test_loading_and_running_a_bank_never_imports_torch(tmp_path):
    models, _ = _two_modes()
    save_bank(build_bank(models), tmp_path / "b.taugate-bank")
    env = {k: v for k, v in os.environ.items() if k not in ("TAUGATE_CACHE_DIR", "NUMBA_CACHE_DIR")}
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(tmp_path / "b.taugate-bank")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_switch_cost_returns_positive_timings(tmp_path):
    models, _ = _two_modes()
    save_bank(build_bank(models), tmp_path / "b.taugate-bank")
    res = switch_cost(tmp_path / "b.taugate-bank", SwitchCostConfig(repeats=3, batch=6))
    assert res["modes"] == ["deg0", "deg45"] and res["batch"] == 6 and res["repeats"] == 3
    for key in (
        "switch_us",
        "same_mode_us",
        "reload_us",
        "mixed_batch_us",
        "separate_calls_us",
        "reload_vs_switch",
        "separate_vs_mixed",
    ):
        assert np.isfinite(res[key]) and res[key] > 0, key
    with pytest.raises(TauGateError, match="repeats must be an integer >= 1"):
        SwitchCostConfig(repeats=0)
