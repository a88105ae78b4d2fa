"""Device selection: ``auto`` prefers CUDA, then DirectML (when ``torch_directml`` imports), then MPS,
then the CPU."""

from __future__ import annotations

import importlib

import torch

from taugate.errors import TauGateError

DEVICES = ("auto", "cpu", "cuda", "directml", "mps")


def _directml_device():
    """The DirectML device, or None when ``torch_directml`` is not installed / has no adapter."""
    try:
        dml = importlib.import_module("torch_directml")
    except Exception:  # ImportError, or a broken install raising anything on import
        return None
    try:
        if hasattr(dml, "is_available") and not dml.is_available():
            return None
        return dml.device()
    except Exception:
        return None


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(name: str = "auto"):
    """Return a torch device (or the DirectML device object) for ``name`` in :data:`DEVICES`."""
    key = str(name).strip().lower()
    if key not in DEVICES:
        raise TauGateError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if key == "cpu":
        return torch.device("cpu")
    if key in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if key == "cuda":
        raise TauGateError("--device cuda asked for, but torch.cuda.is_available() is False")
    if key in ("auto", "directml"):
        dev = _directml_device()
        if dev is not None:
            return dev
        if key == "directml":
            raise TauGateError(
                "--device directml asked for, but torch_directml does not import or has no "
                "adapter (pip install 'taugate[directml]' on Windows/WSL)"
            )
    if key in ("auto", "mps") and _mps_available():
        return torch.device("mps")
    if key == "mps":
        raise TauGateError("--device mps asked for, but torch.backends.mps.is_available() is False")
    return torch.device("cpu")


def device_name(device) -> str:
    """A short printable name ('cpu', 'cuda', 'privateuseone:0' for DirectML, ...)."""
    return str(device)
