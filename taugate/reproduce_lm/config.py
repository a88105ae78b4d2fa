"""The configuration of ``taugate reproduce-lm``: the paper's study on a small byte-level GPT, with
two text modes in place of 0° and 45°. Torch-free (the CLI reads its defaults to build --help)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from taugate.data.text import FILES
from taugate.errors import TauGateError

STUDY_METHODS = ("frozen", "bitfit", "taugate", "gainonly", "tauonly", "lora", "fullft")
GATED = ("taugate", "gainonly", "tauonly")  # the methods with thresholds / gains on the FFNs


@dataclass
class LMStudyConfig:
    """Every knob of one study run (``config.json`` records it; ``--config`` reruns it)."""

    modes: tuple[str, str] = ("prose", "code")  # the foundation's 50/50 mix (text modes)
    target: str = "code"  # the mode every method specialises to (one of modes)
    methods: tuple[str, ...] = STUDY_METHODS  # the methods, in table order
    overlap: bool = True  # also specialise TauGate to the other mode, for the overlap table
    seeds: int = 1  # seeds seed0 .. seed0 + seeds - 1
    seed0: int = 0  # first seed
    # -- the model: the project's own GPT (taugate.lm.gpt) --
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads
    d_model: int = 128  # residual width
    d_ffn: int = 512  # FFN hidden units per block (the gated units)
    activation: str = "relu"  # FFN activation (relu | gelu | gelu-tanh | silu | swiglu)
    # -- data (taugate.data.text) --
    max_bytes: int = 3_000_000  # bytes per mode at most (whole documents), before the split
    valid: float = 0.1  # share of each mode's bytes for validation (by document)
    test: float = 0.1  # share of each mode's bytes for test (by document)
    seq_len: int = 128  # tokens per training and evaluation window (also the block size)
    batch_size: int = 16  # windows per optimiser step
    # -- the foundation (Adam on every parameter, the 50/50 mix) --
    foundation_steps: int = 1500  # optimiser steps
    foundation_lr: float = 3e-3  # learning rate
    # -- specialisation (Adam on each method's own parameters, the target mode) --
    adapt_steps: int = 300  # optimiser steps per method
    gate_lr: float = 0.05  # learning rate of TauGate / GainOnly / TauOnly (tau, gamma)
    adapter_lr: float = 3e-3  # learning rate of BitFit and LoRA
    full_lr: float = 1e-3  # learning rate of full fine-tuning
    sparsity: float = 0.01  # lambda of the gate regulariser (TauGate, TauOnly)
    lora_rank: int = 8  # LoRA rank (alpha = rank) on the FFN projections
    # -- evaluation --
    eval_windows: int = 64  # test windows of seq_len per mode
    high_act: float = 0.9  # a gate is "high" above this (high-act frac, overlap masks)
    unit_share: float = 0.05  # overlap: a unit is "on" in a mode if high on this share of tokens
    compile: bool = True  # also evaluate the compiled (Numba) model of each gated method
    calib_tokens: int = 32768  # target-mode training tokens that decide which units compile drops
    save_models: bool = True  # write the foundation and the adapters under models/

    def __post_init__(self) -> None:
        self.modes, self.methods = tuple(self.modes), tuple(self.methods)
        if len(self.modes) != 2 or len(set(self.modes)) != 2:
            raise TauGateError(
                f"LMStudyConfig.modes must be two different text modes, got {self.modes}"
            )
        for m in self.modes:
            if m not in FILES:
                raise TauGateError(f"LMStudyConfig.modes: unknown text mode {m!r}; known: "
                                   f"{', '.join(FILES)}")  # fmt: skip
        if self.target not in self.modes:
            raise TauGateError(f"LMStudyConfig.target must be one of modes {self.modes}, "
                               f"got {self.target!r}")  # fmt: skip
        bad = [m for m in self.methods if m not in STUDY_METHODS]
        if bad or not self.methods or len(set(self.methods)) != len(self.methods):
            raise TauGateError(f"LMStudyConfig.methods: each of {', '.join(STUDY_METHODS)} at "
                               f"most once, got {self.methods}")  # fmt: skip
        ints = ("seeds", "n_layer", "n_head", "d_model", "d_ffn", "max_bytes", "seq_len",
                "batch_size", "foundation_steps", "adapt_steps", "lora_rank", "eval_windows",
                "calib_tokens")  # fmt: skip
        for k in ints:
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TauGateError(f"LMStudyConfig.{k} must be a positive integer, got {v!r}")
        if isinstance(self.seed0, bool) or not isinstance(self.seed0, int) or self.seed0 < 0:
            raise TauGateError(f"LMStudyConfig.seed0 must be an integer >= 0, got {self.seed0!r}")
        if self.d_model % self.n_head:
            raise TauGateError(f"LMStudyConfig.d_model ({self.d_model}) must be a multiple of "
                               f"n_head ({self.n_head})")  # fmt: skip
        for k in ("foundation_lr", "gate_lr", "adapter_lr", "full_lr", "sparsity"):
            v = getattr(self, k)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or v < 0
            ):
                raise TauGateError(f"LMStudyConfig.{k} must be a finite number >= 0, got {v!r}")
        for k in ("valid", "test", "high_act", "unit_share"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                raise TauGateError(f"LMStudyConfig.{k} must be in (0, 1), got {v!r}")
        from taugate.activations import get_activation

        get_activation(self.activation)  # a clear error for an unknown activation

    @property
    def other(self) -> str:
        """The mode that is not the target."""
        return self.modes[1] if self.target == self.modes[0] else self.modes[0]

    def gate_config(self):
        """The TauGateConfig of the gated methods (lambda = ``sparsity``)."""
        from taugate.nn.config import TauGateConfig

        return TauGateConfig(sparsity=self.sparsity)

    def method_lr(self, method: str) -> float:
        return {"fullft": self.full_lr, "bitfit": self.adapter_lr, "lora": self.adapter_lr}.get(
            method, self.gate_lr
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["modes"], d["methods"] = list(self.modes), list(self.methods)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LMStudyConfig:
        known = {f.name for f in fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise TauGateError(f"unknown LMStudyConfig field(s): {', '.join(extra)}")
        return cls(**d)

    @classmethod
    def tiny(cls, **kw) -> LMStudyConfig:
        """A configuration the tests run in seconds: a 2-block GPT of width 32, tens of steps."""
        base = dict(n_layer=2, n_head=2, d_model=32, d_ffn=64, max_bytes=150_000, seq_len=32,
                    batch_size=8, foundation_steps=40, adapt_steps=10, eval_windows=8,
                    calib_tokens=2048)  # fmt: skip
        return cls(**{**base, **kw})
