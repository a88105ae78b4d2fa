"""The torch functions of the activations in :mod:`taugate.activations`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from taugate.activations import get_activation

_TORCH: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "gelu": lambda z: F.gelu(z, approximate="none"),
    "gelu-tanh": lambda z: F.gelu(z, approximate="tanh"),
    "silu": F.silu,
}


def torch_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """phi as a torch function (an unknown name is a one-line error)."""
    return _TORCH[get_activation(name).name]
