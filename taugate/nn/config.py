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

    def __post_init__(self) -> None:
        for name in ("sharpness", "init_open", "sparsity", "high_act"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TauGateError(f"TauGateConfig.{name} must be a finite number, got {v!r}")
        if self.sharpness <= 0:
            raise TauGateError(f"TauGateConfig.sharpness s must be > 0, got {self.sharpness}")
        if not 0.5 <= self.init_open < 1:
            raise TauGateError(f"TauGateConfig.init_open must be in [0.5, 1), got {self.init_open}")
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
        """Initial threshold: the smooth gate equals ``init_open`` at z = 0 and the hard gate cuts
        nothing that ReLU keeps (tau0 < 0)."""
        return -math.log(self.init_open / (1.0 - self.init_open)) / self.sharpness

    def to_dict(self) -> dict:
        return asdict(self)
