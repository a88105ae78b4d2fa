"""``taugate generate``: text from a base language model (the own byte-level GPT or a Hugging Face
model with its tokenizer) with one of N TauGate adapters."""

from __future__ import annotations

import argparse

from taugate.cli.bank_texts import add_text_args, mode_texts
from taugate.cli.common import add_command, int_at_least, nonneg_number

EXAMPLES = """examples:
  taugate generate runs/lm/base --adapter runs/lm/taugate --prompt "def main(" --temperature 0
  taugate generate runs/lm/base --adapter prose=runs/lm/prose --adapter code=runs/lm/code \\
      --mode code --prompt "import " --max-new-tokens 80 --temperature 0.8 --seed 1
  taugate generate runs/lm/base --adapter prose=runs/lm/prose --adapter code=runs/lm/code \
      --mode code --prompt "def " --temperature 0 --compiled --data-dir ../shared/data
  taugate generate runs/opt-125m --adapter runs/opt-taugate --prompt "The river" --temperature 0
"""

SINGLE = "default"  # the mode name of one --adapter given without NAME=


def adapter_arg(text: str) -> tuple[str | None, str]:
    """``NAME=DIR`` -> (NAME, DIR); a bare ``DIR`` -> (None, DIR)."""
    from taugate.bank.spec import MODE_NAME

    name, sep, path = text.partition("=")
    if sep and MODE_NAME.fullmatch(name):
        if not path:
            raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
        return name, path
    return None, text


def register(sub) -> None:
    p = add_command(
        sub,
        "generate",
        help="generate text with a base LM and one of N TauGate adapters (a mode bank)",
        description="Load a base model (a `save_gpt` checkpoint of the own byte-level GPT, or a "
        "Hugging Face model directory, `save_pretrained`, with its tokenizer saved beside it: "
        "`tokenizer.save_pretrained(BASE)`; needs the [hf] extra) and its TauGate adapters "
        "(`save_adapter` directories) as one mode bank: the base once, each adapter's tau and "
        "gamma beside it. Then continue --prompt in --mode (decoding on the KV cache) and print "
        "the prompt with its continuation (special tokens left out). Gates are soft (as trained) "
        "unless --hard.",
        examples=EXAMPLES,
    )
    p.add_argument(
        "base",
        metavar="BASE",
        help="the base model directory (save_gpt, or save_pretrained with its tokenizer)",
    )
    p.add_argument(
        "--adapter",
        dest="adapters",
        action="append",
        required=True,
        type=adapter_arg,
        metavar="NAME=DIR",
        help="a mode name and its adapter directory (repeatable); one adapter may be a bare DIR",
    )
    p.add_argument("--mode", help="the mode to generate in (needed with several adapters)")
    p.add_argument("--prompt", required=True, help="the text to continue (UTF-8, not empty)")
    p.add_argument(
        "--max-new-tokens",
        type=int_at_least("--max-new-tokens", 0),
        default=64,
        help="tokens to generate, bytes for the own GPT (default 64)",
    )
    p.add_argument(
        "--temperature",
        type=nonneg_number("--temperature"),
        default=1.0,
        help="sampling temperature; 0 = greedy, the most likely token each step (default 1)",
    )
    p.add_argument(
        "--seed", type=int_at_least("--seed", 0), default=0, help="sampling seed (default 0)"
    )
    p.add_argument("--hard", action="store_true", help="hard gates 1[z > tau] (inference form)")
    p.add_argument("--compiled", action="store_true",
                   help="compile the bank first (hard gates; the FFN blocks run the Numba kernel "
                   "with every mode's tau and gamma, over the units that fire in some mode on "
                   "--corpus text)")  # fmt: skip
    add_text_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from taugate.errors import TauGateError
    from taugate.lm.bank import load_lm_bank
    from taugate.lm.bank_generate import generate_text, tokenizer_for

    adapters = args.adapters
    if len(adapters) == 1 and adapters[0][0] is None:
        adapters = [(SINGLE, adapters[0][1])]
    bare = [d for n, d in adapters if n is None]
    if bare:
        raise TauGateError(f"with several --adapter give each as NAME=DIR, got {bare[0]!r}")
    if args.mode is None and len(adapters) > 1:
        names = ", ".join(n for n, _ in adapters)
        raise TauGateError(f"--mode is needed with several adapters (one of: {names})")
    tokenizer = tokenizer_for(args.base)  # None for the own GPT; before the model loads
    bank = load_lm_bank(args.base, adapters)
    bank.hard = bool(args.hard or args.compiled)
    if args.compiled:
        calib, _, _ = mode_texts(bank.modes, args.corpus, args.data_dir)
        if tokenizer is not None:  # the text's bytes in the model's own tokens
            calib = {m: tokenizer(bytes(t).decode("utf-8", "replace"))["input_ids"]
                     for m, t in calib.items()}  # fmt: skip
        bank.compile_(calib)
    mode = args.mode if args.mode is not None else bank.modes[0]
    text = generate_text(bank, args.prompt, mode, args.max_new_tokens, args.temperature, args.seed,
                         tokenizer)  # fmt: skip
    print(text)
    return 0
