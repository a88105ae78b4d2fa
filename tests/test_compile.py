"""`taugate compile`: hardened, gain-folded, compacted artifacts compute the torch hard-gated model."""

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from taugate.compile import CompileConfig, compile_model
from taugate.errors import TauGateError
from taugate.nn import MLP, build_method, gates, harden_, pre_activations
from taugate.runtime import BACKENDS, CompiledModel

METHODS = ["frozen", "bitfit", "taugate", "gainonly", "tauonly", "lora", "fullft"]


def _perturbed(sizes, method, seed=0, tau_range=(-0.5, 0.5), gamma_range=(0.5, 1.5)):
    torch.manual_seed(seed)
    model = build_method(MLP(sizes), method, lora_rank=3)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("tau"):
                p.uniform_(*tau_range, generator=g)
            elif name.endswith("gamma"):
                p.uniform_(*gamma_range, generator=g)
            elif "lora_B" in name:
                p.normal_(0, 0.1, generator=g)
    return model.eval()


def _torch_hard(model, x):
    harden_(model, True)
    try:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    finally:
        harden_(model, False)


def _separate_ties(model, x, margin=1e-3):
    """float32 sums in torch and in the runtime differ by ~1e-6, so a unit whose z lies that close
    to its positive tau may fire in one and not the other (a jump of size tau in the output). Move
    such thresholds clear of every z on ``x``, layer by layer (later z depend on earlier gates)."""
    xt = torch.from_numpy(x)
    harden_(model, True)
    try:
        with torch.no_grad():
            for k, (_, g) in enumerate(gates(model)):
                z = pre_activations(model, xt)[k]  # (B, width)
                for j in range(g.width):
                    while bool(((z[:, j] - g.tau[j]).abs() < margin).any()):
                        g.tau[j] += margin
    finally:
        harden_(model, False)


def _close(a, b, atol=1e-4):
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, atol=atol * scale, rtol=0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("compact", [False, True])
def test_every_method_compiles_to_the_same_function(method, compact):
    model = _perturbed([20, 16, 12, 5], method)
    x = np.random.default_rng(0).normal(size=(64, 20)).astype(np.float32)
    spec, _ = compile_model(model, x, CompileConfig(compact=compact))
    compiled = CompiledModel(spec)
    ref = _torch_hard(model, x)  # compaction is exact on the calibration inputs themselves
    for backend in BACKENDS:
        _close(compiled.predict(x, backend=backend), ref)
    gated = [e.gated for e in spec.layers]
    assert gated == [method in ("taugate", "tauonly")] * 2 + [False]


def test_gains_are_folded_into_the_next_layer():
    model = _perturbed([6, 4, 3], "gainonly", gamma_range=(2.0, 3.0))
    spec, _ = compile_model(model, np.ones((4, 6), np.float32), CompileConfig(compact=False))
    tensors = spec.tensors()
    gamma = gates(model)[0][1].gamma.detach().numpy()
    w1 = model[2].weight.detach().numpy()
    np.testing.assert_allclose(tensors["layers.1.weight"], w1 * gamma[None, :], rtol=1e-6)
    assert "layers.0.tau" not in tensors  # GainOnly has no threshold


def test_units_that_never_fire_are_removed():
    model = _perturbed([10, 8, 6, 3], "taugate", tau_range=(-0.1, 0.1))
    with torch.no_grad():
        gates(model)[0][1].tau[[1, 5]] = 1e6  # these two can never fire
    x = np.random.default_rng(1).normal(size=(300, 10)).astype(np.float32)
    spec, report = compile_model(model, x)
    kept = spec.kept_units[0].tolist()
    assert 1 not in kept and 5 not in kept
    assert spec.layers[0].n_out == len(kept) <= 6
    assert spec.layers[1].n_in == spec.layers[0].n_out
    assert report["units_original"] == [8, 6] and spec.original_sizes == [10, 8, 6, 3]
    compiled = CompiledModel(spec)
    x_new = np.random.default_rng(2).normal(size=(50, 10)).astype(np.float32)
    for backend in BACKENDS:  # the removed units cannot fire on any input, so this is exact
        _close(compiled.predict(x_new, backend=backend), _torch_hard(model, x_new))


def test_min_rate_drops_rare_units():
    model = _perturbed([10, 32, 3], "taugate", tau_range=(0.0, 1.5))
    x = np.random.default_rng(3).normal(size=(400, 10)).astype(np.float32)
    never = compile_model(model, x)[1]["units_kept"][0]
    rare = compile_model(model, x, CompileConfig(min_rate=0.2))[1]["units_kept"][0]
    assert rare < never


def test_compile_config_and_calibration_errors():
    with pytest.raises(TauGateError, match="min firing rate"):
        CompileConfig(min_rate=1.0)
    model = _perturbed([10, 8, 3], "taugate")
    with pytest.raises(TauGateError, match=r"calibration data must be \(N >= 1, 10\)"):
        compile_model(model, np.zeros((5, 9), np.float32))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.one_of(st.integers(1, 24), st.integers(25, 2048)),
    depth=st.integers(1, 3),
    batch=st.one_of(st.integers(1, 8), st.integers(9, 300)),
    tau=st.sampled_from(["negative", "zero", "positive", "closed", "open", "mixed"]),
    seed=st.integers(0, 2**16),
)
def test_property_runtime_equals_torch_hard_gates(width, depth, batch, tau, seed):
    """Every backend equals the hard-gated torch model on random shapes and thresholds, including
    layers where no unit fires and where all do."""
    sizes = [17] + [width] * depth + [4]
    ranges = {"negative": (-1.0, -0.1), "zero": (0.0, 0.0), "positive": (0.1, 1.0),
              "closed": (1e6, 1e6), "open": (-1e6, -1e6), "mixed": (-1.0, 1.0)}  # fmt: skip
    model = _perturbed(sizes, "taugate", seed=seed, tau_range=ranges[tau])
    x = np.random.default_rng(seed).normal(size=(batch, 17)).astype(np.float32)
    _separate_ties(model, x)
    spec, _ = compile_model(model, x, CompileConfig(compact=bool(seed % 2)))
    compiled = CompiledModel(spec)
    ref = _torch_hard(model, x)
    for backend in BACKENDS:
        _close(compiled.predict(x, backend=backend), ref)


def test_manifest_records_provenance(tmp_path):
    from taugate.compile import compile_checkpoint
    from taugate.nn import save_checkpoint
    from taugate.runtime import load

    model = _perturbed([64, 16, 10], "taugate")
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors", sizes=[64, 16, 10], method="taugate",
                           provenance={"dataset": "digits", "target_angle": 30.0, "lambda": 0.01, "seed": 4})  # fmt: skip
    compile_checkpoint(ckpt, tmp_path / "m.taugate", calib_size=100, quiet=True)
    manifest = json.loads((tmp_path / "m.taugate" / "manifest.json").read_text())
    assert (
        manifest["provenance"]["method"] == "taugate" and manifest["provenance"]["lambda"] == 0.01
    )
    rep = manifest["compile"]
    assert rep["calibration"]["angle"] == 30.0 and rep["calibration"]["size"] == 100
    assert rep["accuracy_before"] == pytest.approx(rep["accuracy_after"], abs=0.01)
    assert load(tmp_path / "m.taugate").n_in == 64


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_calibration_and_evaluation_data_are_refused(bad):
    model = _perturbed([10, 8, 3], "taugate")
    x = np.random.default_rng(0).normal(size=(20, 10)).astype(np.float32)
    x[4, 7] = x[9, 0] = bad
    with pytest.raises(TauGateError, match=r"calibration data row 4 contains NaN or inf \(2 of 20"):
        compile_model(model, x)
    good = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    with pytest.raises(TauGateError, match=r"evaluation data row 4 contains NaN or inf"):
        compile_model(model, good, eval_x=x, eval_y=np.zeros(20, np.int64))


class _Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))

    def forward(self, x):
        return self.body(x) * 2


class _LeakyReLU(nn.ReLU):
    def forward(self, x):
        return torch.nn.functional.leaky_relu(x, 0.1)


def _gate(width):
    from taugate.nn.gate import TauGate

    return TauGate(width)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)),
         r"module '1' \(Tanh, position 1\): unsupported module"),
        (lambda: nn.Sequential(nn.Linear(5, 4), nn.LeakyReLU(), nn.Linear(4, 3)),
         r"module '1' \(LeakyReLU, position 1\)"),
        (lambda: nn.Sequential(nn.Linear(5, 4), _LeakyReLU(), nn.Linear(4, 3)),
         r"module '1' \(_LeakyReLU, position 1\)"),
        (lambda: nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3)),
         r"module '1' \(BatchNorm1d, position 1\)"),
        (lambda: nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3)),
         r"module '1' \(Linear, position 1\): no ReLU / TauGate before it"),
        (lambda: nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 3)),
         r"module '2' \(ReLU, position 2\): it does not follow a Linear"),
        (lambda: nn.Sequential(nn.ReLU(), nn.Linear(5, 3)), r"module '0' \(ReLU, position 0\)"),
        (lambda: nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU()),
         r"ReLU after the last Linear"),
        (lambda: nn.Sequential(nn.Linear(5, 4), _gate(1), nn.Linear(4, 3)),
         r"module '1' \(TauGate, position 1\): width 1, the Linear gives 4"),
        (lambda: nn.Sequential(nn.Sequential(nn.Linear(5, 4), nn.Sigmoid()), nn.Linear(4, 3)),
         r"module '0.1' \(Sigmoid, position 1\)"),
        (lambda: nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 3)),
         r"module '2' \(Flatten, position 2\)"),
        (_Wrapper, r"cannot compile a _Wrapper: expected an nn.Sequential"),
        (lambda: nn.Sequential(nn.Dropout()), "model has no Linear layers"),
    ],
)  # fmt: skip
def test_structures_the_artifact_cannot_represent_are_refused(make, message):
    x = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    with pytest.raises(TauGateError, match=message):
        compile_model(make().eval(), x)


def test_extract_lives_in_compile_structure_and_is_still_importable_from_compile():
    import taugate.compile
    import taugate.compile_structure

    assert taugate.compile.extract is taugate.compile_structure.extract
    assert taugate.compile.Extracted is taugate.compile_structure.Extracted
    ex = taugate.compile.extract(_perturbed([6, 5, 3], "taugate"))
    assert [w.shape for w in ex.weights] == [(5, 6), (3, 5)] and ex.taus[1] is None


def test_dropout_identity_flatten_and_nesting_compile_to_the_eval_function():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Identity(),
        nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.5), _gate(5)), nn.Dropout(0.3),
        nn.Linear(5, 4), nn.ReLU(inplace=True), nn.Linear(4, 3), nn.Dropout(0.5),
    )  # fmt: skip
    model.train()
    x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    y = np.zeros(40, np.int64)
    spec, report = compile_model(model, x, CompileConfig(compact=False), x, y)
    assert model.training and not gates(model)[0][1].hard  # modes restored after the check
    assert [e.gated for e in spec.layers] == [True, False, False]
    assert report["max_abs_diff_vs_torch"] < 1e-4
    model.eval()
    _close(CompiledModel(spec).predict(x), _torch_hard(model, x))
