"""Tiny language models for tests/test_lm_families.py and tests/test_lm_peft.py.

Each Hugging Face builder makes a random config (hidden 16, 2 layers, FFN 32, vocab 64, dropout
0), seeds torch, saves the model with ``save_pretrained`` into the test's temp dir and loads it
back with ``from_pretrained`` (never the hub; the test files set ``HF_HUB_OFFLINE=1``), in
eval mode. ``tiny_own`` is the project's own GPT.
Weights start at ``initializer_range`` 0.1 rather than 0.02 so that the FFNs move the logits by
much more than the tolerances the tests compare them at.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

HF_VOCAB = 64  # vocabulary of the Hugging Face tiny models
OWN_VOCAB = 256  # the own GPT is byte-level
HIDDEN, FFN, LAYERS = 16, 32, 2
INIT_RANGE = 0.1  # std of the random weights


def _round_trip(model: nn.Module, path: Path) -> nn.Module:
    """``model`` saved to ``path`` and loaded back (the way a user loads a checkpoint)."""
    model.save_pretrained(path)
    loaded = type(model).from_pretrained(path)
    assert loaded.dtype == torch.float32
    return loaded.eval()


def tiny_opt(tmp_path: Path, seed: int = 0, **overrides) -> nn.Module:
    """An OPT (ReLU FFN ``fc1`` / ``activation_fn`` / ``fc2`` inline in each decoder layer)."""
    from transformers import OPTConfig, OPTForCausalLM

    cfg = dict(vocab_size=HF_VOCAB, hidden_size=HIDDEN, word_embed_proj_dim=HIDDEN,
               num_hidden_layers=LAYERS, ffn_dim=FFN, num_attention_heads=2,
               max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
               activation_dropout=0.0, layerdrop=0.0, init_std=INIT_RANGE,
               pad_token_id=1, bos_token_id=2, eos_token_id=2)  # fmt: skip
    torch.manual_seed(seed)
    model = OPTForCausalLM(OPTConfig(**{**cfg, **overrides}))
    return _round_trip(model, Path(tmp_path) / f"opt-{seed}")


def tiny_gpt2(tmp_path: Path, activation: str = "gelu_new", seed: int = 0, **overrides):
    """A GPT-2 (``mlp.c_fc`` / ``mlp.act`` / ``mlp.c_proj``, Conv1D weights stored (in, out))."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = dict(vocab_size=HF_VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=2, n_inner=FFN,
               n_positions=64, activation_function=activation, resid_pdrop=0.0,
               embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=INIT_RANGE,
               bos_token_id=0, eos_token_id=0)  # fmt: skip
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**{**cfg, **overrides}))
    return _round_trip(model, Path(tmp_path) / f"gpt2-{activation}-{seed}")


def tiny_llama(tmp_path: Path, seed: int = 0, **overrides) -> nn.Module:
    """A Llama (SwiGLU ``mlp.gate_proj`` / ``up_proj`` / ``down_proj`` / ``act_fn``, no biases)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(vocab_size=HF_VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
               intermediate_size=FFN, num_attention_heads=2, num_key_value_heads=2,
               max_position_embeddings=64, initializer_range=INIT_RANGE,
               pad_token_id=0, bos_token_id=1, eos_token_id=2)  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**cfg, **overrides}))
    return _round_trip(model, Path(tmp_path) / f"llama-{seed}")


def tiny_own(activation: str = "gelu", seed: int = 0, **overrides) -> nn.Module:
    """The project's own byte-level GPT (``blocks[i].mlp``: ``up`` / ``act`` / ``down`` [+ ``gate``]),
    its weights scaled up to std ``INIT_RANGE`` like the HF models'."""
    from taugate.lm.gpt import GPT, GPTConfig

    cfg = dict(vocab_size=OWN_VOCAB, block_size=32, n_layer=LAYERS, n_head=2, d_model=HIDDEN,
               d_ffn=FFN, activation=activation)  # fmt: skip
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**cfg, **overrides}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:  # Linear and embedding weights (std 0.02 -> INIT_RANGE)
                p.mul_(INIT_RANGE / 0.02)
            elif name.endswith("bias"):
                p.normal_(0.0, INIT_RANGE)
    return model.eval()


FAMILY_NAMES = {"own": "taugate-gpt", "opt": "opt", "gpt2": "gpt2", "llama": "llama"}


def tiny(family: str, tmp_path: Path) -> nn.Module:
    """The tiny model of ``family`` ("own" = the own GPT with GELU, "opt", "gpt2", "llama")."""
    if family == "own":
        return tiny_own("gelu")
    return {"opt": tiny_opt, "gpt2": tiny_gpt2, "llama": tiny_llama}[family](tmp_path)


def vocab_of(model: nn.Module) -> int:
    inner = getattr(model, "get_base_model", lambda: model)()
    cfg = inner.config
    return int(cfg.vocab_size)


def token_ids(model: nn.Module, batch: int = 2, length: int = 12, seed: int = 1) -> torch.Tensor:
    """Random token ids (batch, length) within the model's vocabulary."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_of(model), (batch, length), generator=g)


def logits_of(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, vocab) of an HF model, a peft wrapper or the own GPT (which returns a tuple)."""
    out = model(ids)
    return out[0] if isinstance(out, tuple) else out.logits


def next_token_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of ``ids`` (B, T)."""
    logits = logits_of(model, ids)[:, :-1]  # (B, T-1, vocab)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
