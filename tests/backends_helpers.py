"""Helpers shared by tests/test_backends_registry.py and tests/test_backends_seam.py.

Two toy backend factories (a float64 numpy forward, and ``ModelSpec.forward`` as a runtime
kernel), the fixtures that restore :data:`taugate.backends.REGISTRY` and give a small model with
inputs, and readers of ``--help`` texts and of the bench pivot's header.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from taugate import backends as registry
from taugate.cli import main
from taugate.errors import TauGateError
from taugate.runtime import random_model


def float64_factory(model, xs, ctx):
    """A non-runtime factory: weights set up once in float64, call k computes xs[k % len(xs)]."""
    spec = model.spec.uncompacted()
    ws = [np.ascontiguousarray(w.T, np.float64) for w in spec.weights]  # (in, out)
    bs = [np.asarray(b, np.float64) for b in spec.biases]
    thr = [np.asarray(t, np.float64) for t in spec.thresholds]
    nxt = itertools.cycle([np.asarray(x, np.float64) for x in xs]).__next__

    def run():
        h = nxt()
        for i in range(len(ws)):
            z = h @ ws[i] + bs[i]  # (B, out_i)
            h = np.where(z > thr[i], z, 0.0) if i < len(ws) - 1 else z
        return h.astype(np.float32)

    return run


def runtime_factory(model):
    """A runtime factory: kernel(x, check_finite, threads) -> (logits, counts)."""
    spec = model.spec

    def kernel(x, check_finite, threads):
        if check_finite and not np.isfinite(x).all():
            raise TauGateError("input contains NaN or inf")
        return spec.forward(x)

    return kernel


@pytest.fixture
def clean_registry():
    """REGISTRY as it was before the test, whatever the test registered or replaced."""
    saved = dict(registry.REGISTRY)
    yield registry.REGISTRY
    registry.REGISTRY.clear()
    registry.REGISTRY.update(saved)


@pytest.fixture(scope="module")
def model():
    return random_model([24, 16, 12, 4], active=0.4, seed=3)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(5).standard_normal((10, 24)).astype(np.float32)


def _flat(text: str) -> str:
    """argparse re-wraps help texts: compare with every run of whitespace as one space."""
    return " ".join(text.split())


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    return _flat(capsys.readouterr().out)


def _header_of(markdown: str, column: str) -> list[str]:
    """The column names of the first Markdown table with a column ``column``."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and column in cells:
            return cells
    raise AssertionError(f"no table with a column {column!r} in:\n{markdown}")


def _pivot_header(text: str) -> list[str]:
    """The columns of the bench pivot from ``batch`` on (--random adds width and active first)."""
    header = _header_of(text, "batch")
    assert header[:2] == ["width", "active"], header
    return header[header.index("batch") :]
