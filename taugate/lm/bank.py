"""Language-model mode banks: one frozen base model plus N named TauGate adapters, switched per
request (the language-model twin of :mod:`taugate.bank`, which serves MLPs).

>>> bank = load_lm_bank("runs/lm/base", {"prose": "runs/lm/prose", "code": "runs/lm/code"})
>>> bank.set_mode("code")                              # choose a row of the tables: no reload
>>> logits = bank(idx, mode="prose")                   # (B, T, vocab), every row in one mode
>>> logits = bank.logits(idx, modes=["prose", "code"])  # one mode name per row (B = 2)
>>> out = bank.generate(idx, 20, modes=["prose", "code"], greedy=True)

The gates are put once on the bank's own copy of the base: each gated FFN block's activation
becomes a :class:`~taugate.lm.bank_gate.BankGate` holding every mode's tau and gamma as (M, width)
tables. A mode switch writes one index shared by all gates; a mixed batch gathers per-row
(B, 1, width) tau and gamma. Each row equals that mode's single-mode gated model (the base with
that adapter loaded by :func:`~taugate.lm.adapters.load_adapter_`), soft or hard.

The bank runs torch math on every FFN: compiled (Numba) FFN blocks (:mod:`taugate.lm.compile`)
are out of scope here, since their folded gains and dropped units belong to one mode.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from taugate.bank.spec import check_modes, mode_index, row_indices
from taugate.errors import TauGateError
from taugate.lm.apply import gated_blocks
from taugate.lm.bank_gate import BankGate, Selection
from taugate.lm.bank_generate import generate_hf
from taugate.lm.bank_generate import generate_text as generate_text  # kept importable from here
from taugate.lm.families import family_of, ffn_blocks
from taugate.nn.config import TauGateConfig
from taugate.nn.gate import TauGate

Values = dict[str, tuple[torch.Tensor, torch.Tensor]]  # block name -> (tau (W,), gamma (W,))


def check_mode_names(names: list) -> tuple[str, ...]:
    """A non-empty list of distinct mode names, as :func:`taugate.bank.spec.check_modes` checks
    them for the MLP banks."""
    return check_modes(list(names), "language-model mode bank")


def _pairs(modes) -> list[tuple[str, object]]:
    """``{name: x}`` or ``[(name, x), ...]`` as a list of pairs (a list may repeat a name)."""
    pairs = list(modes.items()) if isinstance(modes, Mapping) else list(modes)
    if not all(isinstance(p, tuple) and len(p) == 2 for p in pairs):
        raise TauGateError("modes must be a {name: ...} dict or a list of (name, ...) pairs")
    check_mode_names([n for n, _ in pairs])
    return pairs


@contextmanager
def _in_mode(name: str) -> Iterator[None]:
    """Prefix a one-line error with the mode it is about."""
    try:
        yield
    except TauGateError as e:
        raise TauGateError(f"mode {name!r}: {e}") from None


def _check_same(name: str, first: str, blocks: list[str], want: list[str], cfg, want_cfg) -> None:
    if blocks != want:
        raise TauGateError(
            f"mode {name!r} gates the FFN blocks {', '.join(blocks)}, mode {first!r} gates "
            f"{', '.join(want)} (a bank's modes gate the same blocks)"
        )
    if cfg != want_cfg:
        raise TauGateError(
            f"mode {name!r}: gate (sharpness, gated) {cfg}, mode {first!r} has {want_cfg} (a "
            "bank's modes share one gate config)"
        )


class LMBank:
    """One base language model and M modes; build it with :func:`load_lm_bank` or
    :meth:`LMBank.from_models`. ``model`` is the bank's gated copy of the base (its parameters
    are shared by every mode; only the (M, width) tables differ per mode)."""

    def __init__(self, model: nn.Module, modes: tuple[str, ...], blocks: list[str],
                 values: list[Values], sharpness: float, gated: bool) -> None:  # fmt: skip
        self.model = model.eval()
        self.modes = check_mode_names(list(modes))
        self.blocks = list(blocks)  # gated FFN block names, in forward order
        self.selection = Selection()
        self._index = {n: i for i, n in enumerate(self.modes)}
        self.compiled: dict | None = None  # compile_'s report once compiled (Numba FFN blocks)
        self.gates: list[BankGate] = []
        have = {b.name: b for b in ffn_blocks(model, check_activation=False)}
        for n in self.blocks:
            b = have[n]
            w = b.z_module.weight
            taus = torch.stack([v[n][0] for v in values])  # M x (width,) -> (M, width)
            gammas = torch.stack([v[n][1] for v in values])  # (M, width)
            gate = BankGate(taus.to(device=w.device, dtype=w.dtype),
                            gammas.to(device=w.device, dtype=w.dtype), b.activation, sharpness,
                            gated, self.selection)  # fmt: skip
            setattr(b.owner, b.act, gate)
            self.gates.append(gate)

    @classmethod
    def from_models(cls, base: nn.Module, models) -> LMBank:
        """A bank of ``base`` (copied once, never changed) and modes ``{name: gated_model}``: each
        a copy of ``base`` gated by ``apply_taugate_`` / ``build_lm_method`` (and trained). Only
        the gates' tau and gamma are read; the other weights are taken to be the base's."""
        pairs = _pairs(models)
        family = family_of(base).name
        have = {b.name: b for b in ffn_blocks(base)}
        values, first, want, want_cfg = [], None, None, None
        for name, m in pairs:
            with _in_mode(name):
                if family_of(m).name != family:
                    raise TauGateError(f"a {family_of(m).name} model, the base is {family}")
                blocks = gated_blocks(m)
                if not blocks:
                    raise TauGateError(f"{type(m).__name__} has no gated FFN block")
                for b in blocks:
                    if b.name not in have:
                        raise TauGateError(f"the base model has no FFN block {b.name!r}")
                    for k in ("kind", "width", "activation"):
                        if getattr(b, k) != getattr(have[b.name], k):
                            raise TauGateError(
                                f"block {b.name}: {k} {getattr(b, k)!r}, base model "
                                f"{getattr(have[b.name], k)!r}"
                            )
            gs: list[TauGate] = [getattr(b.owner, b.act) for b in blocks]
            cfgs = {(g.sharpness, g.gated) for g in gs}
            if len(cfgs) > 1:
                raise TauGateError(f"mode {name!r}: its gates differ in (sharpness, gated): {cfgs}")
            cfg, names = cfgs.pop(), [b.name for b in blocks]
            if first is None:
                first, want, want_cfg = name, names, cfg
            _check_same(name, first, names, want, cfg, want_cfg)
            values.append({b.name: (g.tau.detach().float().cpu(), g.gamma.detach().float().cpu())
                           for b, g in zip(blocks, gs, strict=True)})  # fmt: skip
        model = copy.deepcopy(base)
        return cls(model, tuple(n for n, _ in pairs), want, values, *want_cfg)

    def __repr__(self) -> str:
        return (
            f"LMBank({type(self.model).__name__}, modes={list(self.modes)}, mode={self.mode!r}, "
            f"gated blocks={len(self.blocks)}, {'hard' if self.hard else 'soft'})"
        )

    def mode_index(self, name) -> int:
        """The index of mode ``name``; an unknown name is an error listing the known ones."""
        return mode_index(self._index, name)

    @property
    def mode(self) -> str:
        """The current mode (the first until :meth:`set_mode`)."""
        return self.modes[self.selection.index]

    def set_mode(self, name: str) -> None:
        """Run every later call in mode ``name``: one index written, no copy, no file access."""
        self.selection.index = self.mode_index(name)

    @property
    def hard(self) -> bool:
        """Hard gates ``1[z > tau]`` (True) or smooth sigmoid gates (False, the default)."""
        return bool(self.gates[0].hard)

    @hard.setter
    def hard(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TauGateError(f"LMBank.hard must be True or False, got {value!r}")
        if self.compiled is not None and not value:
            raise TauGateError(
                "a compiled bank's gates are hard; soft gates need the uncompiled one"
            )
        for g in self.gates:
            g.hard = value

    def rows(self, modes, batch: int) -> torch.Tensor:
        """Per-row mode indices (B,) int64 for ``modes``, one mode name per batch row."""
        device = self.gates[0].taus.device
        return torch.tensor(row_indices(self._index, modes, batch), dtype=torch.long, device=device)

    @contextmanager
    def selected(self, mode: str | None = None, modes=None, batch: int | None = None):
        """Within the block, run in ``mode`` (every row) or ``modes`` (one name per row of a
        batch of ``batch``); neither: the current mode. The selection is restored afterwards."""
        if mode is not None and modes is not None:
            raise TauGateError("give mode=NAME or modes=[one name per row], not both")
        sel = self.selection
        old = (sel.index, sel.rows)
        if modes is not None:
            rows = self.rows(modes, batch)
            sel.rows = rows if len(set(rows.tolist())) > 1 else None  # one mode: the plain path
            sel.index = int(rows[0]) if len(rows) else sel.index
        elif mode is not None:
            sel.index = self.mode_index(mode)
        try:
            yield
        finally:
            sel.index, sel.rows = old

    @staticmethod
    def _batch(idx) -> int:
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
            got = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise TauGateError(f"token ids must be a (B, T) int64 tensor, got {got}")
        return int(idx.shape[0])

    @torch.no_grad()
    def logits(self, idx: torch.Tensor, mode: str | None = None, *, modes=None) -> torch.Tensor:
        """Logits (B, T, vocab) of token ids ``idx`` (B, T): every row in ``mode`` (default: the
        current mode) or row b in ``modes[b]``."""
        from taugate.lm.train import lm_logits

        with self.selected(mode, modes, self._batch(idx)):
            return lm_logits(self.model, idx)

    __call__ = logits

    @torch.no_grad()
    def forward(self, idx: torch.Tensor, past=None, mode: str | None = None, *, modes=None):
        """The own GPT's ``forward(idx, past) -> (logits, present)`` (KV cache) in ``mode`` or
        per-row ``modes``: one decode step of a serving loop."""
        self.require_own_gpt("forward with a KV cache")
        with self.selected(mode, modes, self._batch(idx)):
            return self.model(idx, past)

    def require_own_gpt(self, what: str) -> None:
        from taugate.lm.gpt import GPT

        if not isinstance(self.model, GPT):
            raise TauGateError(f"{what} needs the own GPT, not {type(self.model).__name__}")

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, mode: str | None = None, *,
                 modes=None, temperature: float = 1.0, greedy: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """``idx`` (B, T0) followed by ``max_new_tokens`` tokens: (B, T0 + max_new_tokens), every
        row in ``mode`` or row b in ``modes[b]``. The own GPT decodes with its KV cache
        (:meth:`taugate.lm.gpt.GPT.generate`), a Hugging Face model with its own
        (:func:`~taugate.lm.bank_generate.generate_hf`). ``greedy``: argmax, else sampled at
        ``temperature`` with ``generator``."""
        from taugate.lm.gpt import GPT

        with self.selected(mode, modes, self._batch(idx)):
            if isinstance(self.model, GPT):
                return self.model.generate(idx, max_new_tokens, temperature, greedy, generator)
            return generate_hf(self.model, idx, max_new_tokens, temperature, greedy, generator)

    def compile_(self, calib_tokens, *, min_rate: float = 0.0, seq_len: int = 128,
                 max_windows: int = 32) -> dict:  # fmt: skip
        """Compile the bank in place (:func:`taugate.lm.bank_compile.compile_bank_`): every gated
        FFN block runs the Numba kernel with all modes' (M, width) tau and gamma tables, over the
        units that fire in some mode on ``calib_tokens`` (one token sequence, or {mode: ids});
        the gates are hard from then on. Returns (and keeps as ``compiled``) the report."""
        from taugate.lm.bank_compile import compile_bank_

        return compile_bank_(self, calib_tokens, min_rate=min_rate, seq_len=seq_len,
                             max_windows=max_windows)  # fmt: skip

    def mode_model(self, name: str) -> nn.Module:
        """Mode ``name`` as a single-mode gated model of its own (a copy of the base with plain
        TauGates; ``save_adapter`` writes it as an adapter)."""
        if self.compiled is not None:
            raise TauGateError("mode_model needs the uncompiled bank (compile_ replaced its gates)")
        i = self.mode_index(name)
        model = copy.deepcopy(self.model)
        for b in ffn_blocks(model, check_activation=False):
            bg = getattr(b.owner, b.act)
            if isinstance(bg, BankGate):
                cfg = TauGateConfig(sharpness=bg.sharpness, gate=bg.gated)
                tg = TauGate(bg.width, cfg, bg.activation).to(bg.taus)
                with torch.no_grad():
                    tg.tau.copy_(bg.taus[i])
                    tg.gamma.copy_(bg.gammas[i])
                tg.hard = bg.hard
                setattr(b.owner, b.act, tg)
        return model


def load_lm_bank(base_path: str | os.PathLike, adapters) -> LMBank:
    """The bank of the base model at ``base_path`` (:func:`taugate.lm.checkpoint.load_lm`: an own
    GPT checkpoint or a Hugging Face model) and the adapter directories ``{name: path}`` (or a
    list of (name, path) pairs), each checked against the base as ``load_adapter_`` checks it
    and against the first mode (same gated blocks, same gate config). The files are read here
    only: switching modes afterwards touches no file."""
    from taugate.lm.adapters import load_adapter_, read_adapter
    from taugate.lm.checkpoint import load_lm

    pairs = _pairs(adapters)
    model = load_lm(base_path)
    fields = TauGateConfig.__dataclass_fields__
    values, first, want, want_cfg = [], None, None, None
    for name, path in pairs:
        with _in_mode(name):
            meta, _ = read_adapter(path)
            gc = TauGateConfig(**{k: v for k, v in meta.get("gate_config", {}).items()
                                  if k in fields})  # fmt: skip
            names = [d["name"] for d in meta["blocks"]]
            cfg = (float(gc.sharpness), bool(gc.gate))
            if first is None:
                first, want, want_cfg = name, names, cfg
        _check_same(name, first, names, want, cfg, want_cfg)
        with _in_mode(name):
            load_adapter_(model, path)
        gs = {b.name: getattr(b.owner, b.act) for b in gated_blocks(model)}
        values.append({n: (gs[n].tau.detach().float().cpu().clone(),
                           gs[n].gamma.detach().float().cpu().clone()) for n in names})  # fmt: skip
    return LMBank(model, tuple(n for n, _ in pairs), want, values, *want_cfg)
