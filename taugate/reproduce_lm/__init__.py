"""``taugate reproduce-lm``: the paper's brain-modes study on a small byte-level GPT, with text modes
(default: pretrain on prose + code, specialise to code) in place of 0° and 45°.

The names below load on first use, so that reading the configuration (the CLI's ``--help``) does
not import torch."""

from __future__ import annotations

__all__ = ["LMStudyConfig", "config_from_file", "reproduce_lm"]


def __getattr__(name: str):
    if name == "LMStudyConfig":
        from taugate.reproduce_lm.config import LMStudyConfig

        return LMStudyConfig
    if name in ("config_from_file", "reproduce_lm"):
        from taugate.reproduce_lm import run

        return getattr(run, name)
    raise AttributeError(f"module 'taugate.reproduce_lm' has no attribute {name!r}")
