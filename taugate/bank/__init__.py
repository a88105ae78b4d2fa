"""Mode banks: one frozen base MLP plus N named (tau, gamma) sets, switched per request with no
reload (e.g. the 0° and 45° TauGate models of one foundation).

>>> bank = build_bank({"deg0": model_0, "deg45": model_45}, calib_x=x)   # torch models
>>> save_bank(bank, "fmnist.taugate-bank")
>>> model = load_bank("fmnist.taugate-bank")          # numpy + Numba only, never torch
>>> model.predict(x, mode="deg45")                    # every row in one mode
>>> model.predict(x, modes=["deg0", "deg45", ...])    # one mode name per row

Files: ``spec.py`` the validated bank and its numpy pass (:class:`BankSpec`); ``format.py`` the
directory format, read and write (:class:`Bank`); ``build.py`` torch models -> bank;
``checkpoints.py`` the ``taugate bank`` pipeline; ``model.py`` the runtime (:class:`BankModel`);
``cost.py`` what switching and mixed batches cost (:func:`switch_cost`). The kernels:
:mod:`taugate.kernels.bank`. Importing this package does not import torch; building a bank does.
"""

from __future__ import annotations

from taugate.bank.build import build_bank, save_bank
from taugate.bank.cost import SwitchCostConfig, switch_cost
from taugate.bank.format import Bank, is_bank, read_bank, write_bank
from taugate.bank.model import BankModel, ModeView, load_bank
from taugate.bank.spec import BankSpec

__all__ = [
    "Bank",
    "BankModel",
    "BankSpec",
    "ModeView",
    "SwitchCostConfig",
    "build_bank",
    "is_bank",
    "load_bank",
    "read_bank",
    "save_bank",
    "switch_cost",
    "write_bank",
]
