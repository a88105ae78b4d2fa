"""The activations a gated unit may have, torch-free: one :class:`Activation` each.

Per activation: the code the Numba kernels switch on, whether it is zero for every ``z <= 0``
(ReLU), and its *floor*, the pre-activation below which ``|phi(z)| < 1e-5``, where a gate that
starts as the identity puts its threshold (see ``TauGateConfig.tau_init``). The torch functions
are :func:`taugate.nn.activations.torch_activation`; the slow numpy twins are in ``tests/reference.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from taugate.errors import TauGateError


@dataclass(frozen=True)
class Activation:
    """One elementwise activation phi of a gated unit."""

    name: str  # "relu" | "gelu" | "gelu-tanh" | "silu"
    code: int  # the kernels' switch value (taugate.kernels._njit_ffn.phi)
    zero_below: bool  # phi(z) = 0 for every z <= 0: a hard gate at tau < 0 cuts nothing
    floor: float  # |phi(z)| < 1e-5 for every z below this (0 for relu)
    formula: str  # for docs and error messages


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("relu", 0, True, 0.0, "max(z, 0)"),
        Activation("gelu", 1, False, -5.0, "z * Phi(z) (exact, erf)"),
        Activation("gelu-tanh", 2, False, -5.0, "0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))"),
        Activation("silu", 3, False, -16.0, "z * sigmoid(z)"),
    )
}


def get_activation(name: str) -> Activation:
    """The activation ``name`` ("gelu_new" and "gelu_pytorch_tanh" mean gelu-tanh, "swish" silu)."""
    key = str(name).strip().lower().replace("_", "-")
    key = {"gelu-new": "gelu-tanh", "gelu-pytorch-tanh": "gelu-tanh", "swish": "silu"}.get(key, key)
    if key not in ACTIVATIONS:
        raise TauGateError(
            f"unsupported activation {name!r}; TauGate gates {', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS[key]
