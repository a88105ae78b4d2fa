"""TauGate: learned hard activation gates, compiled to compacted subnetworks and row-skipping kernels.

``import taugate`` stays light (no torch): the torch-backed names below load on first use, so the
deployment runtime (``taugate.runtime``) needs only numpy and numba.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "TauGateConfig": "taugate.nn.config",
    "TauGate": "taugate.nn.gate",
    "apply_taugate_": "taugate.nn.model",
    "harden_": "taugate.nn.model",
    "MLP": "taugate.nn.model",
    "print_trainable_parameters": "taugate.nn.parameters",
    "load_dataset": "taugate.data",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'taugate' has no attribute {name!r}")
