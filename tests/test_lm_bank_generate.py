"""KV-cache generation of language-model mode banks on Hugging Face bases (taugate.lm.bank_generate)
and ``taugate generate`` on them.

What it shows on tiny random OPT, GPT-2 and Llama (saved with ``save_pretrained``: no network),
three random modes each: greedy decoding on the model's KV cache equals a slow twin that recomputes
the whole sequence every step, in one mode and in a mixed-mode batch, soft and hard; each mixed row
equals that mode's generation, and the generation of the adapter loaded alone; the modes really
give different tokens; seeded sampling is reproducible and equals the twin's; bad arguments are one
line. The CLI continues a prompt through a tokenizer trained here (byte-level BPE, saved beside the
model), and a base without a tokenizer is a one-line error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from taugate.cli import main
from taugate.errors import TauGateError
from taugate.lm.adapters import save_adapter
from taugate.lm.bank import load_lm_bank
from taugate.lm.bank_generate import generate_text, tokenizer_for

try:
    from lm_helpers import HF_VOCAB, tiny_gpt2, tiny_llama, tiny_opt
    from test_lm_bank import (
        MODES,
        ids_for,
        needs_hf,
        one_line,
        one_thread,  # noqa: F401  (an autouse fixture: one torch thread)
        random_gates,
        single,
    )
except ImportError:  # tests/ imported as a package
    from tests.lm_helpers import HF_VOCAB, tiny_gpt2, tiny_llama, tiny_opt
    from tests.test_lm_bank import (
        MODES,
        ids_for,
        needs_hf,
        one_line,
        one_thread,  # noqa: F401
        random_gates,
        single,
    )

pytestmark = needs_hf
BUILD = {"opt": tiny_opt, "gpt2": tiny_gpt2, "llama": tiny_llama}
NEW = 8  # tokens generated per test
TEXT = [  # what the test tokenizer is trained on
    "The river runs down to the sea, and the sea does not fill.",
    "def main(argv):\n    return len(argv)\n",
    "A quiet morning in the old town; the bakers are up before the birds.",
    "import os\nprint(os.getcwd())\n",
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def hf_on_disk(tmp_path: Path, family: str, **overrides):
    """A tiny ``family`` model saved with save_pretrained and one random adapter per mode:
    (base model, its directory, {mode: adapter dir})."""
    base = BUILD[family](tmp_path / "model", **overrides)
    base_dir = next((tmp_path / "model").iterdir())  # the one save_pretrained directory
    adapters = {m: save_adapter(random_gates(base, i), tmp_path / f"ad-{m}")
                for i, m in enumerate(MODES)}  # fmt: skip
    return base, base_dir, adapters


def no_cache(logits, idx, n: int, temperature: float = 1.0, greedy: bool = True, generator=None):
    """The slow twin: ``n`` tokens after ``idx`` (B, T0), the whole sequence recomputed by
    ``logits`` ((B, T) -> (B, T, vocab)) every step; the own GPT's greedy / sampling rule."""
    out = idx
    for _ in range(n):
        last = logits(out)[:, -1, :]  # (B, vocab)
        if greedy:
            step = last.argmax(dim=-1, keepdim=True)  # (B, 1)
        else:
            probs = torch.softmax(last / temperature, dim=-1)  # (B, vocab)
            step = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        out = torch.cat([out, step], dim=1)  # (B, T + 1)
    return out


def model_logits(model):
    """(B, T) -> (B, T, vocab) of a Hugging Face model, no cache."""
    return lambda ids: model(input_ids=ids, use_cache=False).logits


@pytest.mark.parametrize("family", ["opt", "gpt2", "llama"])
def test_cached_greedy_equals_no_cache_and_single_mode(tmp_path, family):
    _, base_dir, adapters = hf_on_disk(tmp_path, family)
    bank = load_lm_bank(base_dir, adapters)
    idx = ids_for(HF_VOCAB, batch=6, length=5, seed=2)
    row_modes = ["b", "c", "a", "a", "b", "c"]
    for hard in (False, True):
        bank.hard = hard
        one = {}  # mode -> (B, T0 + NEW): every row in that mode
        for m in MODES:
            one[m] = bank.generate(idx, NEW, m, greedy=True)
            assert one[m].shape == (6, 5 + NEW) and torch.equal(one[m][:, :5], idx)
            twin = no_cache(lambda ids, m=m: bank.logits(ids, m), idx, NEW)
            assert torch.equal(one[m], twin), (family, hard, m)
        mixed = bank.generate(idx, NEW, modes=row_modes, greedy=True)  # (B, T0 + NEW)
        twin = no_cache(lambda ids: bank.logits(ids, modes=row_modes), idx, NEW)
        assert torch.equal(mixed, twin), (family, hard)
        for b, m in enumerate(row_modes):
            assert torch.equal(mixed[b], one[m][b]), (family, hard, b, m)
            alone = no_cache(model_logits(single(base_dir, adapters[m], hard)), idx[b : b + 1], NEW)
            assert torch.equal(mixed[b], alone[0]), (family, hard, b, m)  # (1, T) -> (T,)
        # not vacuous: the modes give different tokens, and the mixed batch is no single mode's
        assert all(not torch.equal(one[m], one[n]) for m, n in ("ab", "bc", "ca")), (family, hard)
        assert all(not torch.equal(mixed, one[m]) for m in MODES), (family, hard)
    assert bank.mode == "a"  # mode= / modes= calls leave the current mode alone


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_seeded_sampling_is_reproducible(tmp_path, family):
    _, base_dir, adapters = hf_on_disk(tmp_path, family)
    bank = load_lm_bank(base_dir, adapters)
    idx = ids_for(HF_VOCAB, batch=3, length=4, seed=3)
    row_modes = ["c", "a", "b"]

    def sample(seed: int, **kw):
        gen = torch.Generator().manual_seed(seed)
        return bank.generate(idx, NEW, temperature=0.8, generator=gen, **kw)

    first = sample(5, modes=row_modes)
    assert torch.equal(sample(5, modes=row_modes), first)
    twin = no_cache(lambda ids: bank.logits(ids, modes=row_modes), idx, NEW, 0.8, False,
                    torch.Generator().manual_seed(5))  # fmt: skip
    assert torch.equal(first, twin)
    assert not torch.equal(sample(6, modes=row_modes), first)  # the seed matters
    ref = single(base_dir, adapters["b"], False)  # one mode: the adapter loaded alone
    want = no_cache(model_logits(ref), idx, NEW, 0.8, False, torch.Generator().manual_seed(7))
    assert torch.equal(sample(7, mode="b"), want)


def test_generate_argument_errors(tmp_path):
    _, base_dir, adapters = hf_on_disk(tmp_path, "gpt2")  # 64 positions (n_positions)
    bank = load_lm_bank(base_dir, {"a": adapters["a"]})
    idx = ids_for(HF_VOCAB, batch=2, length=4)
    assert torch.equal(bank.generate(idx, 0, greedy=True), idx)
    for bad in (-1, 1.5, True):
        with pytest.raises(TauGateError) as e:
            bank.generate(idx, bad, greedy=True)
        one_line(e, "max_new_tokens must be an integer >= 0")
    with pytest.raises(TauGateError) as e:
        bank.generate(idx, 2, temperature=0.0)
    one_line(e, "temperature must be > 0 when sampling")
    with pytest.raises(TauGateError) as e:
        bank.generate(idx[:, :0], 2, greedy=True)
    one_line(e, "T0 >= 1")
    with pytest.raises(TauGateError) as e:
        bank.generate(idx + HF_VOCAB, 2, greedy=True)
    one_line(e, f"token ids must be in [0, {HF_VOCAB})")
    assert bank.generate(ids_for(HF_VOCAB, 1, 60), 5, greedy=True).shape == (1, 65)
    with pytest.raises(TauGateError) as e:
        bank.generate(ids_for(HF_VOCAB, 1, 60), 6, greedy=True)
    one_line(e, "65 tokens", "64 positions")


def tiny_tokenizer(vocab: int = 300):
    """A byte-level BPE trained here on ``TEXT`` (no download), as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)  # fmt: skip
    tok.train_from_iterator(TEXT, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_cli_generate_on_hugging_face_base(tmp_path, capsys, family):
    tok = tiny_tokenizer()
    eos = tok.eos_token_id
    special = {"bos_token_id": eos, "eos_token_id": eos}
    _, base_dir, adapters = hf_on_disk(tmp_path, family, vocab_size=len(tok), **special)
    tok.save_pretrained(base_dir)
    prompt = "The river runs"
    ids = torch.tensor(tok.encode(prompt))[None, :]  # (T0,) -> (1, T0)
    assert tok.decode(ids[0].tolist()) == prompt  # byte-level: the prompt decodes back as is
    argv = ["generate", str(base_dir), "--adapter", f"a={adapters['a']}", "--adapter",
            f"b={adapters['b']}", "--mode", "b", "--prompt", prompt, "--max-new-tokens", str(NEW),
            "--temperature", "0"]  # fmt: skip
    for hard in (False, True):
        ref = single(base_dir, adapters["b"], hard)
        full = no_cache(model_logits(ref), ids, NEW)[0]  # (T0 + NEW,)
        want = tok.decode(full.tolist(), skip_special_tokens=True)
        assert main(argv + ["--hard"] * hard) == 0
        out = capsys.readouterr().out
        assert out == want + "\n" and len(out) > len(prompt) + 1, (hard, out)
    assert main(argv + ["--compiled"]) == 0  # the Numba kernel, compiled on prose: as --hard
    assert capsys.readouterr().out == out
    sampled = [*argv[:-1], "0.9", "--seed", "3"]
    assert main(sampled) == 0
    first = capsys.readouterr().out
    assert main(sampled) == 0 and capsys.readouterr().out == first
    assert first.startswith(prompt)


def test_missing_tokenizer_is_one_line(tmp_path, capsys, monkeypatch):
    _, base_dir, adapters = hf_on_disk(tmp_path, "gpt2")  # save_pretrained: no tokenizer files
    argv = ["generate", str(base_dir), "--adapter", str(adapters["a"]), "--prompt", "hi"]
    capsys.readouterr()  # drop the progress bars of saving and loading the model
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert str(base_dir) in err and "tokenizer.save_pretrained(" in err, err
    with pytest.raises(TauGateError) as e:
        tokenizer_for(base_dir)
    one_line(e, str(base_dir), "has no tokenizer", "tokenizer.save_pretrained(")
    bank = load_lm_bank(base_dir, {"a": adapters["a"]})
    with pytest.raises(TauGateError) as e:
        generate_text(bank, "hi", "a")
    one_line(e, "GPT2LMHeadModel", "needs its tokenizer")
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the [hf] extra were missing
    with pytest.raises(TauGateError) as e:
        tokenizer_for(base_dir)
    one_line(e, "needs transformers", "pip install 'taugate[hf]'")
