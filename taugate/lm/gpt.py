"""A small byte-level decoder-only transformer in the style of nanoGPT's ``model.py``.

Pre-LayerNorm blocks ``x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))``, a final ``ln_f``, learned
position embeddings ``wpe`` and a language-model head tied to the token embedding ``wte``.
``GPT.forward(idx, past)`` takes and returns a KV cache (one ``(k, v)`` per block), so decoding
feeds one token per step. The FFN (:class:`MLP`) names its parts ``up`` / ``act`` / ``down`` (and
``gate`` for SwiGLU): the gating code finds the activation ``act`` by these names.
Tokens are UTF-8 bytes: :func:`encode` / :func:`decode`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from taugate.errors import TauGateError

ACTIVATIONS = ("relu", "gelu", "gelu-tanh", "silu", "swiglu")
_PHI = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "gelu-tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU,
}

KVCache = list[tuple[torch.Tensor, torch.Tensor]]
"""One ``(k, v)`` per block, each (B, n_head, T_past, head_dim)."""


@dataclass
class GPTConfig:
    """Shape of a :class:`GPT`; every field is checked in ``__post_init__``."""

    vocab_size: int = 256  # token ids 0 .. vocab_size - 1 (256: one per byte)
    block_size: int = 256  # longest context (cached + new tokens) the position table covers
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block; must divide d_model
    d_model: int = 128  # width of the residual stream and the embeddings
    d_ffn: int = 512  # FFN hidden width (the units an activation gate acts on)
    activation: str = "gelu"  # FFN phi: relu | gelu | gelu-tanh | silu | swiglu (gated, silu)
    dropout: float = 0.0  # dropout on embeddings, attention weights and residual branches
    bias: bool = True  # biases in every Linear and LayerNorm (the tied lm_head has none)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "d_ffn"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TauGateError(f"GPTConfig.{name} must be a positive integer, got {v!r}")
        if self.d_model % self.n_head:
            raise TauGateError(
                f"GPTConfig.d_model ({self.d_model}) must be divisible by n_head ({self.n_head})"
            )
        if self.activation not in ACTIVATIONS:
            raise TauGateError(
                f"GPTConfig.activation must be one of {', '.join(ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
            raise TauGateError(f"GPTConfig.dropout must be a number in [0, 1), got {d!r}")
        if not isinstance(self.bias, bool):
            raise TauGateError(f"GPTConfig.bias must be True or False, got {self.bias!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention that extends and returns a KV cache."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.dropout = float(config.dropout)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        B, T, C = x.shape  # (B, T, d_model)
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, d_model)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, n_head, T, head_dim)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, n_head, T, head_dim)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, n_head, T, head_dim)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, n_head, T_past + T, head_dim)
            v = torch.cat([past[1], v], dim=2)  # (B, n_head, T_past + T, head_dim)
        t_past = k.size(2) - T
        p = self.dropout if self.training else 0.0
        if t_past == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        elif T == 1:  # the one new query may see every cached key
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:  # query i (absolute position t_past + i) sees keys 0 .. t_past + i
            mask = torch.ones(T, t_past + T, dtype=torch.bool, device=x.device)  # (T, T_past + T)
            mask = mask.tril(diagonal=t_past)  # broadcast over (B, n_head)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, n_head, T, hd) -> (B, T, d_model)
        y = F.dropout(self.proj(y), self.dropout, self.training)  # (B, T, d_model)
        return y, (k, v)


class MLP(nn.Module):
    """The FFN; its children are exactly ``up``, ``act``, ``down`` (plain: ``down(act(up(x)))``)
    or ``gate``, ``up``, ``act``, ``down`` (SwiGLU: ``down(act(gate(x)) * up(x))``, act = SiLU).

    ``kind`` is "plain" or "glu"; ``activation`` is the name of phi ("silu" for swiglu)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.kind = "glu" if config.activation == "swiglu" else "plain"
        self.activation = "silu" if self.kind == "glu" else config.activation
        d, f = config.d_model, config.d_ffn
        if self.kind == "glu":
            self.gate = nn.Linear(d, f, bias=config.bias)
        self.up = nn.Linear(d, f, bias=config.bias)
        self.act = _PHI[self.activation]()
        self.down = nn.Linear(f, d, bias=config.bias)
        self.dropout = float(config.dropout)  # functional, so no extra child module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "glu":
            h = self.act(self.gate(x)) * self.up(x)  # (B, T, d_ffn)
        else:
            h = self.act(self.up(x))  # (B, T, d_ffn)
        return F.dropout(self.down(h), self.dropout, self.training)  # (B, T, d_model)


class Block(nn.Module):
    """One pre-LayerNorm transformer block."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, present = self.attn(self.ln_1(x), past)
        x = x + a  # (B, T, d_model)
        x = x + self.mlp(self.ln_2(x))  # (B, T, d_model)
        return x, present


class GPT(nn.Module):
    """Token + position embeddings, ``blocks``, ``ln_f`` and a head tied to ``wte``."""

    def __init__(self, config: GPTConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or GPTConfig()
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.block_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model, bias=config.bias)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied embeddings
        self.apply(self._init_weights)
        std = 0.02 / math.sqrt(2 * config.n_layer)  # residual projections (GPT-2)
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        """Number of parameters, the tied embedding / head counted once."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, idx: torch.Tensor, past: KVCache | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """Logits (B, T, vocab_size) for token ids ``idx`` (B, T) placed after the ``past`` cache,
        and the cache extended by these T tokens (a new list, one ``(k, v)`` per block)."""
        cfg = self.config
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype != torch.long:
            got = f"{tuple(idx.shape)} {idx.dtype}" if isinstance(idx, torch.Tensor) else type(idx)
            raise TauGateError(f"GPT input idx must be a (B, T) int64 tensor, got {got}")
        if past is not None and len(past) != cfg.n_layer:
            raise TauGateError(f"GPT past must hold {cfg.n_layer} (k, v) pairs, got {len(past)}")
        B, T = idx.shape
        t_past = past[0][0].size(2) if past else 0
        if t_past + T > cfg.block_size:
            raise TauGateError(
                f"sequence of {t_past + T} tokens ({t_past} cached + {T} new) is longer than "
                f"block_size {cfg.block_size}"
            )
        lo, hi = (int(idx.min()), int(idx.max())) if idx.numel() else (0, 0)
        if lo < 0 or hi >= cfg.vocab_size:
            raise TauGateError(f"GPT token ids must be in [0, {cfg.vocab_size}), got {lo}..{hi}")
        pos = torch.arange(t_past, t_past + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, d_model) + (T, d_model)
        x = F.dropout(x, cfg.dropout, self.training)
        present: KVCache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, past[i] if past else None)
            present.append(kv)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab_size)
        return logits, present

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``idx`` (B, T0) followed by ``max_new_tokens`` sampled tokens: (B, T0 + max_new_tokens).

        The prompt goes through once, then one token per step through the KV cache; ``greedy``
        takes the argmax, else tokens are drawn from softmax(logits / temperature) with
        ``generator``. Runs in eval mode (no dropout) and restores the mode afterwards."""
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise TauGateError(f"max_new_tokens must be an integer, got {max_new_tokens!r}")
        if max_new_tokens < 0:
            raise TauGateError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if not greedy and not (isinstance(temperature, (int, float)) and temperature > 0):
            raise TauGateError(f"temperature must be > 0 when sampling, got {temperature!r}")
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.size(1) == 0:
            got = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise TauGateError(f"generate needs a (B, T0) prompt with T0 >= 1, got {got}")
        if max_new_tokens == 0:
            return idx
        t0, bs = idx.size(1), self.config.block_size
        if t0 + max_new_tokens - 1 > bs:  # the last new token is never fed back
            raise TauGateError(
                f"generate: {t0} prompt + {max_new_tokens} new tokens need a context of "
                f"{t0 + max_new_tokens - 1} tokens, longer than block_size {bs}"
            )
        was_training = self.training
        self.eval()
        try:
            out, step, past = [idx], idx, None
            for _ in range(max_new_tokens):
                logits, past = self(step, past)
                last = logits[:, -1, :]  # (B, vocab_size)
                if greedy:
                    step = last.argmax(dim=-1, keepdim=True)  # (B, 1)
                else:
                    probs = F.softmax(last / temperature, dim=-1)  # (B, vocab_size)
                    step = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
                out.append(step)
            return torch.cat(out, dim=1)  # (B, T0 + max_new_tokens)
        finally:
            self.train(was_training)


def encode(text: str) -> torch.Tensor:
    """The UTF-8 bytes of ``text`` as token ids: a (len(bytes),) int64 tensor."""
    if not isinstance(text, str):
        raise TauGateError(f"encode takes a str, got {type(text).__name__}")
    data = text.encode("utf-8")
    if not data:
        return torch.zeros(0, dtype=torch.long)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()  # (n_bytes,)


def decode(ids: torch.Tensor | list[int]) -> str:
    """Text of a 1-D sequence of byte ids (invalid UTF-8 becomes U+FFFD)."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise TauGateError(
                f"decode takes one 1-D sequence of ids, got shape {tuple(ids.shape)}"
            )
        ids = ids.tolist()
    try:
        data = bytes(int(i) for i in ids)
    except (TypeError, ValueError) as e:
        raise TauGateError(f"decode takes byte ids in [0, 256): {e}") from None
    return data.decode("utf-8", errors="replace")
