"""Decoding with a language-model mode bank (:meth:`taugate.lm.bank.LMBank.generate`) and text in,
text out (:func:`generate_text`, what ``taugate generate`` prints).

A Hugging Face base decodes on its own KV cache: the prompt goes through once with
``use_cache=True``, then each step feeds only the new tokens (B, 1) with the returned cache. Without
padding none of OPT, GPT-2 and Llama needs position ids or an attention mask for that: each model
counts the positions from the cache's length. The cache keyword is ``cache`` from transformers 5.2
on, ``past_key_values`` before (still accepted there, with a deprecation warning). Greedy and
seeded sampling follow the own GPT's :meth:`~taugate.lm.gpt.GPT.generate` exactly.

Text: the own GPT is byte-level (:func:`~taugate.lm.gpt.encode`); a Hugging Face base brings its
tokenizer, saved beside the model (``tokenizer.save_pretrained(BASE)``), read by
:func:`tokenizer_for` from local files only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from taugate.errors import TauGateError

if TYPE_CHECKING:
    from taugate.lm.bank import LMBank

# the files a Hugging Face tokenizer is saved as (fast tokenizers, BPE, WordPiece, SentencePiece)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt",
                   "tokenizer.model", "spiece.model")  # fmt: skip


def cache_keyword(model: nn.Module) -> str:
    """The keyword a Hugging Face model's ``forward`` takes its KV cache by: ``cache`` from
    transformers 5.2 on, ``past_key_values`` before."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def check_generate_args(max_new_tokens, temperature, greedy: bool) -> None:
    """The own GPT's checks of ``generate``'s arguments, one line each."""
    if type(max_new_tokens) is not int or max_new_tokens < 0:
        raise TauGateError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not greedy and not (isinstance(temperature, (int, float)) and temperature > 0):
        raise TauGateError(f"temperature must be > 0 when sampling, got {temperature!r}")


def next_tokens(last: torch.Tensor, temperature: float, greedy: bool,
                generator: torch.Generator | None) -> torch.Tensor:  # fmt: skip
    """The next token (B, 1) after the last logits (B, vocab): argmax, or drawn from
    softmax(last / temperature) with ``generator`` (as the own GPT draws them)."""
    if greedy:
        return last.argmax(dim=-1, keepdim=True)  # (B, 1)
    probs = torch.softmax(last / temperature, dim=-1)  # (B, vocab)
    return torch.multinomial(probs, 1, generator=generator)  # (B, 1)


def _check_prompt(model: nn.Module, idx: torch.Tensor, max_new_tokens: int) -> None:
    from taugate.lm.train import max_context

    if idx.dim() != 2 or idx.size(1) == 0:
        raise TauGateError(f"generate needs a (B, T0) prompt with T0 >= 1, got {tuple(idx.shape)}")
    vocab = model.get_input_embeddings().num_embeddings
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= vocab:
        raise TauGateError(f"token ids must be in [0, {vocab}) for this model, got {lo}..{hi}")
    t0, ctx = idx.size(1), max_context(model)
    if ctx is not None and t0 + max_new_tokens - 1 > ctx:  # the last new token is never fed back
        raise TauGateError(
            f"generate: {t0} prompt + {max_new_tokens} new tokens need a context of "
            f"{t0 + max_new_tokens - 1} tokens, longer than the model's {ctx} positions"
        )


@torch.no_grad()
def generate_hf(model: nn.Module, idx: torch.Tensor, max_new_tokens: int,
                temperature: float = 1.0, greedy: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """``idx`` (B, T0) followed by ``max_new_tokens`` tokens of the Hugging Face causal LM
    ``model``, decoded on its KV cache: (B, T0 + max_new_tokens). Whatever mode selection the
    bank's gates hold applies to every step (a mixed batch stays mixed: each step is (B, 1))."""
    check_generate_args(max_new_tokens, temperature, greedy)
    _check_prompt(model, idx, max_new_tokens)
    if max_new_tokens == 0:
        return idx
    key = cache_keyword(model)
    out, step, cache = [idx], idx, None
    for _ in range(max_new_tokens):
        past = {} if cache is None else {key: cache}
        res = model(input_ids=step, use_cache=True, **past)
        cache = res[key]  # the model's KV cache (a Cache object: grows in place each step)
        step = next_tokens(res.logits[:, -1, :], temperature, greedy, generator)  # (B, 1)
        out.append(step)
    return torch.cat(out, dim=1)  # (B, T0 + max_new_tokens)


def tokenizer_for(base_path: str | os.PathLike):
    """The tokenizer of the base model at ``base_path``: None for an own GPT checkpoint (byte-level,
    no tokenizer), else the Hugging Face tokenizer saved beside the model, from local files only."""
    from taugate.lm.checkpoint import _is_gpt_dir

    p = Path(base_path)
    if p.is_dir() and _is_gpt_dir(p):
        return None
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise TauGateError(
            f"{p} is not a TauGate GPT checkpoint; a Hugging Face model's tokenizer needs "
            "transformers: pip install 'taugate[hf]'"
        ) from None
    missing = TauGateError(
        f"{p} has no tokenizer (none of {', '.join(TOKENIZER_FILES[:2])}, ...); save the "
        f"model's tokenizer there: tokenizer.save_pretrained({str(p)!r})"
    )
    if p.is_dir() and not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise missing  # AutoTokenizer would build an empty tokenizer from config.json alone
    try:
        tok = AutoTokenizer.from_pretrained(str(base_path), local_files_only=True)
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TauGateError(f"{base_path}: cannot load its tokenizer ({first})") from None
    if not getattr(tok, "vocab_size", 1):
        raise missing
    return tok


def generate_text(bank: LMBank, prompt: str, mode: str, max_new_tokens: int = 64,
                  temperature: float = 1.0, seed: int = 0, tokenizer=None) -> str:  # fmt: skip
    """``prompt`` and its continuation by ``bank`` in ``mode``: ``temperature`` 0 is greedy, else
    sampled with a generator seeded by ``seed``. The own GPT is byte-level; a Hugging Face base
    needs its ``tokenizer`` (:func:`tokenizer_for`), which adds its special tokens to the prompt
    as it always does (a BOS, say); special tokens are not printed."""
    from taugate.lm.gpt import GPT, decode, encode

    bank.mode_index(mode)  # an unknown mode: the one-line error, before any work
    own = isinstance(bank.model, GPT)
    if not own and tokenizer is None:
        raise TauGateError(
            f"generating text with {type(bank.model).__name__} needs its tokenizer "
            "(tokenizer_for(BASE))"
        )
    ids = encode(prompt) if own else torch.tensor(tokenizer.encode(prompt), dtype=torch.long)
    if ids.numel() == 0:
        raise TauGateError("the prompt is empty; give at least one character to continue")
    gen = torch.Generator().manual_seed(seed)
    greedy = temperature == 0
    out = bank.generate(
        ids[None, :],
        max_new_tokens,
        mode,
        temperature=temperature or 1.0,
        greedy=greedy,
        generator=gen,
    )  # ids (T0,) -> (1, T0); out (1, T0 + max_new_tokens)
    if own:
        return decode(out[0])
    # decode the whole sequence (a token's text can depend on the one before it, e.g. a leading
    # space) and keep what follows the prompt's own decoding
    full = tokenizer.decode(out[0].tolist(), skip_special_tokens=True)
    head = tokenizer.decode(ids.tolist(), skip_special_tokens=True)
    new = out[0, ids.numel() :].tolist()
    tail = (
        full[len(head) :]
        if full.startswith(head)
        else tokenizer.decode(new, skip_special_tokens=True)
    )
    return prompt + tail
