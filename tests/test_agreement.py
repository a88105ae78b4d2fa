"""Before timing, every backend must give the same logits, except where a gate ties with its
threshold and float32 rounding may open it in one backend and not in another."""

from __future__ import annotations

import numpy as np
import pytest

from taugate.agreement import check_agreement, near_ties
from taugate.errors import TauGateError
from taugate.runtime import CompiledModel


def _model():
    """6-2-1: unit 0 fires when x0 > 1 (tau 1), unit 1 is an ungated relu of x1."""
    layers = [{"in": 6, "out": 2, "gated": True, "activation": "relu"},
              {"in": 2, "out": 1, "gated": False, "activation": "none"}]  # fmt: skip
    w0 = np.zeros((2, 6), np.float32)
    w0[0, 0], w0[1, 1] = 1.0, 1.0
    tensors = {"layers.0.weight": w0, "layers.0.bias": np.zeros(2, np.float32),
               "layers.0.tau": np.array([1.0, -np.inf], np.float32),
               "layers.1.weight": np.ones((1, 2), np.float32), "layers.1.bias": np.zeros(1, np.float32)}  # fmt: skip
    return CompiledModel.from_arrays(layers, tensors)


def test_near_ties_are_rows_with_a_unit_at_a_positive_threshold():
    m = _model()
    x = np.zeros((4, 6), np.float32)
    x[0, 0] = 1.0 + 1e-6  # at tau: a tie
    x[1, 0] = 1.5  # clearly open
    x[2, 1] = 1e-7  # near 0 on the ungated unit: relu is continuous, no tie
    x[3, 0] = 1.0 - 1e-5  # just below tau: a tie too
    assert near_ties(m.spec, x).tolist() == [True, False, False, True]


def test_a_difference_is_tolerated_only_on_a_tied_row():
    m = _model()
    x = np.zeros((3, 6), np.float32)
    x[0, 0], x[1, 0], x[2, 0] = 1.0 + 1e-6, 3.0, 0.5
    ref = m.predict(x, backend="compact")
    flipped = ref.copy()
    flipped[0] = 0.0  # the tied gate shut in this backend: a jump of tau = 1
    check_agreement(m.spec, x, {"compact": ref, "other": flipped})  # tolerated
    wrong = ref.copy()
    wrong[1] += 0.5  # a row without any tie
    with pytest.raises(TauGateError, match="backend other disagrees with compact on input 1"):
        check_agreement(m.spec, x, {"compact": ref, "other": wrong})
