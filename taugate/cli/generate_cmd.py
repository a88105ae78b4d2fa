"""``taugate generate``: text from the own byte-level GPT with one of N TauGate adapters."""

from __future__ import annotations

import argparse

from taugate.cli.common import add_command, int_at_least, nonneg_number

EXAMPLES = """examples:
  taugate generate runs/lm/base --adapter runs/lm/taugate --prompt "def main(" --temperature 0
  taugate generate runs/lm/base --adapter prose=runs/lm/prose --adapter code=runs/lm/code \\
      --mode code --prompt "import " --max-new-tokens 80 --temperature 0.8 --seed 1
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
        help="generate text with the own GPT and one of N TauGate adapters (a mode bank)",
        description="Load a base model (a `save_gpt` checkpoint of the own byte-level GPT) and "
        "its TauGate adapters (`save_adapter` directories) as one mode bank: the base once, each "
        "adapter's tau and gamma beside it. Then continue --prompt in --mode and print the "
        "prompt with its continuation. Gates are soft (as trained) unless --hard.",
        examples=EXAMPLES,
    )
    p.add_argument("base", metavar="BASE", help="the base model directory (save_gpt)")
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
        help="bytes to generate (default 64)",
    )
    p.add_argument(
        "--temperature",
        type=nonneg_number("--temperature"),
        default=1.0,
        help="sampling temperature; 0 = greedy, the most likely byte each step (default 1)",
    )
    p.add_argument(
        "--seed", type=int_at_least("--seed", 0), default=0, help="sampling seed (default 0)"
    )
    p.add_argument("--hard", action="store_true", help="hard gates 1[z > tau] (inference form)")
    p.set_defaults(func=run)


def run(args) -> int:
    from taugate.errors import TauGateError
    from taugate.lm.bank import generate_text, load_lm_bank

    adapters = args.adapters
    if len(adapters) == 1 and adapters[0][0] is None:
        adapters = [(SINGLE, adapters[0][1])]
    bare = [d for n, d in adapters if n is None]
    if bare:
        raise TauGateError(f"with several --adapter give each as NAME=DIR, got {bare[0]!r}")
    if args.mode is None and len(adapters) > 1:
        names = ", ".join(n for n, _ in adapters)
        raise TauGateError(f"--mode is needed with several adapters (one of: {names})")
    bank = load_lm_bank(args.base, adapters)
    bank.hard = bool(args.hard)
    mode = args.mode if args.mode is not None else bank.modes[0]
    text = generate_text(bank, args.prompt, mode, args.max_new_tokens, args.temperature, args.seed)
    print(text)
    return 0
