"""Configuration of the TauGate method (peft-style dataclass with checked fields)."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from taugate.errors import TauGateError

DEFAULT_SHARPNESS = 10.0
"""Default gate sharpness ``s``: the smooth gate goes from 0.12 to 0.88 over ``tau -/+ 0.2``."""


@dataclass
class TauGateConfig:
    """What ``apply_taugate_`` puts on every selected ReLU (eq. 2-4 of the paper)."""

    sharpness: float = DEFAULT_SHARPNESS  # s > 0 in g = sigmoid(s * (z - tau))
    init_open: float = 0.95  # smooth gate value at z = 0 at init: tau0 = -logit(init_open) / s
    train_tau: bool = True  # learn the per-unit threshold tau
    train_gamma: bool = True  # learn the per-unit gain gamma (starts at 1)
    gate: bool = True  # False: no gate at all, output gamma * relu(z) (GainOnly, IA3-like)
    sparsity: float = 0.0  # lambda in loss = task + lambda * sum_layers mean(g) (eq. 5)
    high_act: float = 0.9  # a gate counts as "highly active" when g > high_act
    target_modules: str | None = None  # regex on module names; None = every ReLU after a Linear
    # tau's gradient is taken at clamp(s (z - tau), -w, w): a unit far from its threshold still
    # gets a small one (straight-through style). None: exact for ReLU, 4 for other activations,
    # whose thresholds start at the activation's floor where the exact gradient is 0; 0: exact
    tau_grad_window: float | None = None

    def __post_init__(self) -> None:
        for name in ("sharpness", "init_open", "sparsity", "high_act"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TauGateError(f"TauGateConfig.{name} must be a finite number, got {v!r}")
        if self.sharpness <= 0:
            raise TauGateError(f"TauGateConfig.sharpness s must be > 0, got {self.sharpness}")
        if not 0.5 <= self.init_open < 1:
            raise TauGateError(f"TauGateConfig.init_open must be in [0.5, 1), got {self.init_open}")
        w = self.tau_grad_window
        if w is not None and (isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0):
            raise TauGateError(f"TauGateConfig.tau_grad_window must be None or >= 0, got {w!r}")
        if self.sparsity < 0:
            raise TauGateError(f"TauGateConfig.sparsity (lambda) must be >= 0, got {self.sparsity}")
        if not 0 < self.high_act < 1:
            raise TauGateError(f"TauGateConfig.high_act must be in (0, 1), got {self.high_act}")
        if not self.gate and self.train_tau:
            raise TauGateError("TauGateConfig: train_tau=True needs gate=True (no gate, no tau)")
        if self.target_modules is not None:
            try:
                re.compile(self.target_modules)
            except re.error as e:
                raise TauGateError(f"TauGateConfig.target_modules is not a regex: {e}") from None

    @property
    def tau_init(self) -> float:
        """Initial threshold of a ReLU unit (see :meth:`tau_start`)."""
        return self.tau_start("relu")

    def tau_start(self, activation: str = "relu") -> float:
        """Initial threshold for a unit with ``activation``: the smooth gate equals ``init_open``
        at the activation's floor (0 for ReLU; below the floor ``|phi(z)| < 1e-5``, see
        :mod:`taugate.activations`), so the gated unit starts as the identity: the smooth gate is
        >= ``init_open`` wherever phi matters, and the hard gate ``1[z > tau]`` cuts only values
        of phi smaller than 1e-5."""
        from taugate.activations import get_activation

        floor = get_activation(activation).floor
        return floor - math.log(self.init_open / (1.0 - self.init_open)) / self.sharpness

    def to_dict(self) -> dict:
        return asdict(self)
