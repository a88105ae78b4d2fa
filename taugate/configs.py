"""Run configurations (torch-free): one optimisation run, and a whole reproduction study."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from taugate.errors import TauGateError
from taugate.nn.config import TauGateConfig
from taugate.nn.registry import get_method


@dataclass
class TrainConfig:
    """One optimisation run (paper defaults: SGD, momentum 0.9, batch 256)."""

    epochs: int = 1  # passes over the training set
    batch_size: int = 256  # examples per SGD step
    lr: float = 0.05  # learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 0.0  # L2 on trainable parameters
    sparsity: float = 0.0  # lambda of the gate regulariser (eq. 5); 0 = off
    seed: int = 0  # shuffling seed

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise TauGateError(f"epochs must be an int >= 0, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise TauGateError(f"batch size must be an int >= 1, got {self.batch_size!r}")
        for name in ("lr", "momentum", "weight_decay", "sparsity"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise TauGateError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.lr == 0:
            raise TauGateError("lr must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)


ALL_METHODS = ("frozen", "bitfit", "taugate", "gainonly", "tauonly", "lora", "fullft")
PAPER_TRAIN_IMAGES = 60_000  # the paper's MNIST training set: its protocol's steps per epoch


def phase(epochs: int, n_train: int, batch_size: int, floor: bool) -> dict:
    """Epochs and SGD steps of one training phase. With ``floor``, a data set smaller than the
    paper's trains more epochs, so that the phase takes at least the paper's step count
    (``epochs`` x ceil(60000 / batch)); a phase of 0 epochs stays off."""
    per_epoch = max(1, math.ceil(n_train / batch_size))
    paper = epochs * math.ceil(PAPER_TRAIN_IMAGES / batch_size)
    run = epochs
    if floor and epochs > 0 and epochs * per_epoch < paper:
        run = math.ceil(paper / per_epoch)
    return {"asked_epochs": epochs, "epochs": run, "steps": run * per_epoch, "paper_steps": paper}


@dataclass
class ReproduceConfig:
    """Everything that defines a reproduction run; saved as ``config.json`` to repeat it."""

    dataset: str = "mnist"  # registry name: mnist, mnist-10k, fashion-mnist, digits
    angle: float = 45.0  # the rotated mode, degrees counter-clockwise
    seeds: int = 3  # number of seeds (seed0, seed0+1, ...)
    seed0: int = 0  # first seed
    methods: tuple[str, ...] = ALL_METHODS  # which methods to adapt
    hidden: tuple[int, ...] = (128, 128)  # hidden widths of the MLP (input/output from the data)
    foundation_epochs: int = 2  # epochs on the 50/50 mix
    adapt_epochs: int = 1  # epochs of each method on the rotated mode
    batch_size: int = 256  # SGD batch size
    foundation_lr: float = 0.05  # learning rate of the foundation
    adapt_lr: float = 0.01  # learning rate of BitFit / LoRA / Full FT
    gate_lr: float = 2.0  # learning rate of the gate methods (tau and gamma: 512 scalars)
    momentum: float = 0.9  # SGD momentum
    sparsity: float = 1e-2  # lambda of the gate regulariser (TauGate, TauOnly)
    sharpness: float = 10.0  # s of the smooth gate
    lora_rank: int = 8  # LoRA rank, on all linear layers
    high_act: float = 0.9  # gate > high_act counts as highly active
    overlap: bool = True  # also specialise TauGate to 0° for the Jaccard table
    limit_train: int | None = None  # use only the first N training images (quick runs)
    limit_test: int | None = None  # use only the first N test images (quick runs)
    save_models: bool = True  # write every model as a safetensors checkpoint
    device: str = "auto"  # auto | cpu | cuda | directml | mps
    paper_steps: bool = (
        True  # raise epochs so each phase has >= the paper's SGD steps on 60k images
    )

    def __post_init__(self) -> None:
        self.methods = tuple(get_method(m).name for m in self.methods)
        if not self.methods:
            raise TauGateError("at least one method is needed")
        for name in ("foundation_epochs", "adapt_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise TauGateError(f"{name} must be an integer >= 0, got {v!r}")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise TauGateError(f"batch size must be an integer >= 1, got {self.batch_size!r}")
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.hidden or min(self.hidden) < 1:
            raise TauGateError(f"hidden widths must be >= 1, got {self.hidden}")
        if not isinstance(self.angle, (int, float)) or not math.isfinite(self.angle):
            raise TauGateError(f"angle must be a finite number, got {self.angle!r}")
        if self.seeds < 1:
            raise TauGateError(f"seeds must be >= 1, got {self.seeds}")
        if self.lora_rank < 1:
            raise TauGateError(f"LoRA rank must be >= 1, got {self.lora_rank}")
        for name in ("limit_train", "limit_test"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise TauGateError(f"{name} must be >= 1, got {v}")
        self.gate_config()  # validates sharpness / sparsity / high_act
        for lr in (self.foundation_lr, self.adapt_lr, self.gate_lr):
            TrainConfig(lr=lr)

    def gate_config(self) -> TauGateConfig:
        return TauGateConfig(
            sharpness=self.sharpness, sparsity=self.sparsity, high_act=self.high_act
        )

    def schedule(self, n_train: int) -> dict:
        """Epochs and steps of the foundation and adaptation phases on ``n_train`` images (see
        :func:`phase`); ``raised``: the step floor changed them."""
        f = phase(self.foundation_epochs, n_train, self.batch_size, self.paper_steps)
        a = phase(self.adapt_epochs, n_train, self.batch_size, self.paper_steps)
        raised = f["epochs"] != f["asked_epochs"] or a["epochs"] != a["asked_epochs"]
        return {"n_train": int(n_train), "paper_images": PAPER_TRAIN_IMAGES,
                "paper_steps_floor": self.paper_steps, "foundation": f, "adapt": a,
                "raised": raised}  # fmt: skip

    def to_dict(self) -> dict:
        d = asdict(self)
        d["methods"], d["hidden"] = list(self.methods), list(self.hidden)
        return d
