"""Names of the adaptation methods (torch-free, so the CLI can list them without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

from taugate.errors import TauGateError


@dataclass(frozen=True)
class Method:
    name: str  # registry key, used on the command line and in result files
    label: str  # how tables print it
    gated: bool  # has TauGate modules (with or without a gate)
    thresholds: bool  # has a gate 1[z > tau] that can be hardened


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("frozen", "Frozen", False, False),
        Method("bitfit", "BitFit", False, False),
        Method("taugate", "TauGate", True, True),
        Method("gainonly", "GainOnly", True, False),
        Method("tauonly", "TauOnly", True, True),
        Method("lora", "LoRA", False, False),
        Method("fullft", "Full FT", False, False),
    ]
}


def get_method(name: str) -> Method:
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key not in METHODS:
        raise TauGateError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[key]
