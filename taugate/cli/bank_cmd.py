"""``taugate bank``: TauGate checkpoints of one foundation -> a mode bank NAME.taugate-bank/."""

from __future__ import annotations

import argparse

from taugate.cli.common import add_command, add_data_args, int_at_least

EXAMPLES = """examples:
  taugate bank deg0=runs/x/models/seed0/taugate-0deg.safetensors \\
      deg45=runs/x/models/seed0/taugate.safetensors --out fmnist.taugate-bank
  taugate bank a=a.safetensors b=b.safetensors --out m.taugate-bank --calib-data inputs.npy
  taugate bank a=a.safetensors b=b.safetensors --out m.taugate-bank --no-calib
  taugate predict fmnist.taugate-bank --mode deg45 --input x.npy --output logits.npy
"""


def mode_checkpoint(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=CHECKPOINT, got {text!r}")
    return name, path


def register(sub) -> None:
    p = add_command(
        sub,
        "bank",
        help="one frozen base + N named (tau, gamma) modes: write NAME.taugate-bank/",
        description="Build a mode bank from TauGate checkpoints (from `taugate reproduce` or "
        "`save_checkpoint`) that share one frozen foundation: the base weights are stored once, "
        "each mode's thresholds and gains beside them, and `taugate predict BANK --mode NAME` "
        "runs one mode. Units are dropped only when they fire in no mode: on calibration inputs "
        "(default: each checkpoint's data set, training split, at its target angle), or, with "
        "--no-calib, only units whose threshold is +inf in every mode.",
        examples=EXAMPLES,
    )
    p.add_argument(
        "modes",
        nargs="+",
        type=mode_checkpoint,
        metavar="NAME=CHECKPOINT",
        help="a mode name and its checkpoint .safetensors (names: letters, digits, _ and -)",
    )
    p.add_argument("--out", required=True, metavar="NAME.taugate-bank", help="directory to write")
    cal = p.add_mutually_exclusive_group()
    cal.add_argument(
        "--calib-data",
        metavar="NAME|FILE.npy|FILE.npz",
        help="calibration data set name (sampled at each mode's target angle), or "
        "inputs in an .npy / .npz file used for every mode (default: each "
        "checkpoint's data set)",
    )
    cal.add_argument(
        "--no-calib",
        action="store_true",
        help="no calibration: drop only units that can never fire",
    )
    p.add_argument(
        "--calib-size",
        type=int_at_least("--calib-size", 1),
        default=2000,
        help="calibration inputs per mode (default 2000)",
    )
    p.add_argument("--no-compact", action="store_true", help="keep every unit")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace --out even if it is not a bank (a file, or a folder holding only "
        "files named like a bank's; a folder with other files is never replaced)",
    )
    add_data_args(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from taugate.bank.checkpoints import bank_from_checkpoints
    from taugate.errors import TauGateError

    names = [n for n, _ in args.modes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TauGateError(f"mode {dup[0]!r} is given more than once")
    bank = bank_from_checkpoints(
        dict(args.modes),
        args.out,
        calib_data=args.calib_data,
        calib_size=args.calib_size,
        calibrate=not args.no_calib,
        compact=not args.no_compact,
        data_dir=args.data_dir,
        quiet=args.quiet,
        force=args.force,
    )
    rep = bank.build
    kept = ", ".join(f"{k}/{o}" for k, o in zip(rep["units_kept"], rep["units_original"]))
    print(f"wrote {args.out}: modes {', '.join(bank.modes)}; units kept per hidden layer {kept}")
    for name, diff in rep.get("max_abs_diff_vs_torch", {}).items():
        print(
            f"mode {name}: max |logit diff| vs the hard-gated torch model {diff:.2e} on its "
            "calibration inputs"
        )
    return 0
