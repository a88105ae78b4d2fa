"""Mode bank format and building: what is stored (the base once), the checks on reading, the
overwrite rule, atomic writes, one base only, and compaction over every mode."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from taugate.bank import BankModel, BankSpec, build_bank, read_bank, save_bank
from taugate.errors import TauGateError
from taugate.nn import MLP, TauGate, build_method, gates

try:
    from bank_helpers import foundation, mode_model, torch_hard
except ImportError:  # tests/ imported as a package
    from tests.bank_helpers import foundation, mode_model, torch_hard

SIZES = [4, 6, 5, 3]
CALIB = np.zeros((10, 4), np.float32)
CALIB[:, 0] = np.arange(1, 11)  # layer 0 unit j sees z = x[0] = 1 .. 10
TAUS = {  # per mode, per hidden layer (see _known): which unit opens on CALIB is known exactly
    "a": ([0.5, 20, 20, 5, np.inf, 20], [0.5, 0.5, 2, 0.5, np.inf]),
    "b": ([20, 20, 0.5, 20, np.inf, 9.5], [2, 0.5, 2, 2, np.inf]),
}


def _known() -> dict:
    """Layer 0 unit j: z = x[0]; layer 1: zero weights, bias 1 (z = 1 for every input)."""
    base = MLP(SIZES).requires_grad_(False)
    with torch.no_grad():
        base[0].weight.zero_()
        base[0].weight[:, 0] = 1.0
        base[0].bias.zero_()
        base[2].weight.zero_()
        base[2].bias.fill_(1.0)
    models = {}
    for name, taus in TAUS.items():
        m = build_method(base, "taugate")
        with torch.no_grad():
            for (_, g), t in zip(gates(m), taus, strict=True):
                g.tau.copy_(torch.tensor(t, dtype=torch.float32))
                g.gamma.uniform_(0.5, 1.5)
        models[name] = m
    return models


def _rewrite(path, tensors=None, manifest=None) -> None:
    """Replace the weights and / or manifest of the bank at ``path``, keeping the sha256 right."""
    m = json.loads((path / "manifest.json").read_text())
    if tensors is not None:
        save_file(tensors, str(path / "weights.safetensors"))
        m["weights_sha256"] = hashlib.sha256(
            (path / "weights.safetensors").read_bytes()
        ).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest(m) if manifest else m))


@pytest.fixture
def saved(tmp_path):
    models = _known()
    out = tmp_path / "m.taugate-bank"
    save_bank(build_bank(models, CALIB, provenance={"a": {"angle": 0}, "b": {"angle": 45}}), out)
    return models, out


def test_the_base_is_stored_once_and_every_mode_beside_it(saved):
    models, out = saved
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "weights.safetensors"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "taugate-mlp-bank" and m["version"] == 1 and m["modes"] == ["a", "b"]
    assert m["kept_units"] == [[0, 2, 3, 5], [0, 1, 3]]
    assert [e["out"] for e in m["layers"]] == [4, 3, 3]
    assert [e["out"] for e in m["original_layers"]] == [6, 5, 3]
    assert m["provenance"] == {"a": {"angle": 0}, "b": {"angle": 45}}
    assert (
        m["weights_sha256"]
        == hashlib.sha256((out / "weights.safetensors").read_bytes()).hexdigest()
    )
    assert m["build"]["units_kept"] == [4, 3] and m["build"]["units_original"] == [6, 5]
    names = set(load_file(str(out / "weights.safetensors")))
    base = {f"layers.{i}.{k}" for i in range(3) for k in ("weight", "bias")}
    per_mode = {f"modes.{n}.{i}.{k}" for n in "ab" for i in (0, 1) for k in ("tau", "gamma")}
    assert names == base | per_mode
    bank = read_bank(out)
    model = BankModel(bank)
    for name, torch_model in models.items():
        np.testing.assert_allclose(
            model.predict(CALIB, name), torch_hard(torch_model, CALIB), atol=1e-5
        )


def test_compaction_drops_only_units_that_fire_in_no_mode():
    models = _known()
    for calib, kept in (
        (CALIB, [[0, 2, 3, 5], [0, 1, 3]]),
        (None, [[0, 1, 2, 3, 5], [0, 1, 2, 3]]),
    ):
        bank = build_bank(models, calib)
        assert [k.tolist() for k in bank.spec.kept_units] == kept
        full = build_bank(models, calib, compact=False)
        assert [len(k) for k in full.spec.kept_units] == [6, 5]
        for name in models:  # on the calibration inputs the function is unchanged
            np.testing.assert_allclose(
                BankModel(bank).predict(CALIB, name),
                BankModel(full).predict(CALIB, name),
                atol=1e-6,
            )
    per_mode = build_bank(models, {"a": CALIB[:5], "b": CALIB[5:]})  # each mode its own inputs
    assert [k.tolist() for k in per_mode.spec.kept_units] == [[0, 2, 5], [0, 1, 3]]
    with torch.no_grad():  # nothing opens in layer 0: its most active unit stays
        for m in models.values():
            gates(m)[0][1].tau.fill_(np.inf)
    assert build_bank(models, CALIB).spec.kept_units[0].tolist() == [0]


def test_a_plain_foundation_and_a_gain_only_model_are_modes_too():
    base = foundation([8, 7, 6, 3], seed=2)
    rng = np.random.default_rng(0)
    gain = build_method(base, "gainonly")
    with torch.no_grad():
        for _, g in gates(gain):
            g.gamma.uniform_(-1.5, 1.5)
    models = {"base": base, "gain": gain, "tg": mode_model(base, [1], ["pos"], ["signed"], rng)}
    model = BankModel(build_bank(models))
    x = rng.standard_normal((5, 8)).astype(np.float32)
    for name, m in models.items():
        np.testing.assert_allclose(model.predict(x, name), torch_hard(m, x), atol=1e-5)
    assert [e.gated for e in model.spec.layers] == [True, True, False]
    assert np.isneginf(model.spec.taus[0][0]).all() and (model.spec.gammas[0][0] == 1).all()


def test_models_that_do_not_share_one_base_are_refused():
    models = _known()
    other = build_method(MLP(SIZES), "taugate")  # another foundation
    lora = build_method(models["a"], "lora")
    with torch.no_grad():
        lora[2].lora_B.normal_()  # a trained LoRA changes the merged weight
    wider = build_method(MLP([4, 7, 5, 3]), "taugate")
    cases = [
        ({"a": models["a"], "c": other}, "mode 'c' layer 0: weight (max |diff|"),
        ({"a": models["a"], "lora": lora}, "mode 'lora' layer 1: weight (max |diff|"),
        (
            {"a": models["a"], "w": wider},
            "mode 'w' layer 0: weight shape (7, 4), mode 'a' has (6, 4)",
        ),
        ({"a": models["a"], "s": MLP([4, 3])}, "mode 's' has 1 linear layers, mode 'a' has 3"),
        ({"a": models["a"], "n": "model"}, "mode 'n': expected a torch nn.Module, got str"),
        ({}, "non-empty dict"),
        ({"a.b": models["a"]}, "mode name 'a.b' must be"),
        ({"a": models["a"]}, None),
    ]
    with torch.no_grad():
        bias = build_method(models["a"], "taugate")
        bias[2].bias.add_(1.0)
    cases.append(
        ({"a": models["a"], "bias": bias}, "mode 'bias' layer 1: bias differs from mode 'a'")
    )
    gelu = build_method(models["a"], "taugate")
    gelu[1] = TauGate(6, activation="gelu")
    cases.append(({"a": models["a"], "g": gelu}, "mode 'g': a TauGate with activation 'gelu'"))
    for ms, text in cases:
        if text is None:
            build_bank(ms)
            continue
        with pytest.raises(TauGateError) as e:
            build_bank(ms)
        assert text in str(e.value) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(TauGateError, match="has no entry for mode 'b'"):
        build_bank(models, {"a": CALIB})
    with pytest.raises(TauGateError, match=r"calibration data must be \(N >= 1, 4\)"):
        build_bank(models, CALIB[:, :3])


def test_reading_checks_each_field_in_one_line(saved):
    _, out = saved
    good = load_file(str(out / "weights.safetensors"))
    man = json.loads((out / "manifest.json").read_text())
    wrong_shape = {**good, "modes.b.1.tau": np.zeros(4, np.float32)}
    missing = {k: v for k, v in good.items() if k != "modes.a.0.gamma"}
    extra = {**good, "modes.c.0.tau": np.zeros(4, np.float32)}
    nan = {**good, "modes.a.1.gamma": np.full(3, np.nan, np.float32)}
    cases = [
        (
            {"tensors": wrong_shape},
            "mode 'b' layer 1: tau ('modes.b.1.tau') has shape (4,), "
            "expected (3,) (the base layer's width)",
        ),
        (
            {"tensors": missing},
            "missing tensor 'modes.a.0.gamma' (mode 'a', layer 0, expected shape (4,))",
        ),
        ({"tensors": extra}, "unexpected tensor 'modes.c.0.tau'"),
        ({"tensors": nan}, "mode 'a' layer 1: gamma ('modes.a.1.gamma') contains NaN or inf"),
        ({"manifest": lambda m: {**m, "modes": []}}, "a bank needs at least one mode"),
        ({"manifest": lambda m: {**m, "modes": ["a", "a"]}}, "mode 'a' appears more than once"),
        ({"manifest": lambda m: {**m, "format": "taugate-mlp"}}, "unknown format 'taugate-mlp'"),
        ({"manifest": lambda m: {**m, "version": 2}}, "unsupported version 2"),
        (
            {"manifest": lambda m: {k: v for k, v in m.items() if k != "kept_units"}},
            "missing 'kept_units'",
        ),
        ({"manifest": lambda m: {**m, "provenance": {"a": {}}}}, "one entry per mode"),
        ({"manifest": lambda m: {**m, "extra": 1}}, "unknown key 'extra'"),
    ]
    for change, text in cases:
        _rewrite(out, **change)
        with pytest.raises(TauGateError) as e:
            read_bank(out)
        assert text in str(e.value) and "\n" not in str(e.value), str(e.value)
        _rewrite(out, good, lambda m, man=man: {**man, "weights_sha256": m["weights_sha256"]})
        read_bank(out)
    data = bytearray((out / "weights.safetensors").read_bytes())
    data[-1] ^= 1  # tampered weights
    (out / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(TauGateError, match="sha256 .* does not match the manifest's"):
        read_bank(out)
    with pytest.raises(TauGateError, match="does not exist"):
        read_bank(out.parent / "nope")


def test_bank_spec_refuses_a_mode_of_other_sizes_and_a_bank_without_gates():
    ws = [np.ones((3, 2), np.float32), np.ones((2, 3), np.float32)]
    bs = [np.zeros(3, np.float32), np.zeros(2, np.float32)]
    with pytest.raises(TauGateError, match=r"mode 'b' layer 0: tau .* expected \(3,\)"):
        BankSpec.build(ws, bs, {"a": ([np.zeros(3)], [None]), "b": ([np.zeros(4)], [None])})
    with pytest.raises(TauGateError, match="no gated layer"):
        BankSpec.build(ws, bs, {"a": ([None], [None])})
    with pytest.raises(TauGateError, match="a bank needs at least one mode"):
        BankSpec.build(ws, bs, {})


def test_overwrite_rule_and_atomic_write(saved, tmp_path, monkeypatch):
    models, out = saved
    bank = build_bank(models)
    save_bank(bank, out)  # a bank is replaced
    (tmp_path / "empty").mkdir()
    save_bank(bank, tmp_path / "empty")  # so is an empty directory
    (tmp_path / "file").write_text("x")
    with pytest.raises(TauGateError, match="was not written by taugate bank"):
        save_bank(bank, tmp_path / "file")
    save_bank(bank, tmp_path / "file", force=True)
    art = tmp_path / "art.taugate"
    art.mkdir()
    (art / "manifest.json").write_text(json.dumps({"format": "taugate-mlp"}))
    with pytest.raises(TauGateError, match="refusing to overwrite it"):
        save_bank(bank, art)
    save_bank(bank, art, force=True)  # only files named like a bank's: replaced with force
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(TauGateError, match="even with --force"):
        save_bank(bank, tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.numpy.save_file", boom)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(TauGateError, match="cannot write mode bank .*No space left"):
        save_bank(bank, tmp_path / "new.taugate-bank")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written left
