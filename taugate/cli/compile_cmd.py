"""``taugate compile``: checkpoint -> compacted artifact (manifest.json + weights.safetensors)."""

from __future__ import annotations

from taugate.cli.common import add_command, add_data_args, int_at_least, nonneg_number, number

EXAMPLES = """examples:
  taugate compile runs/demo/models/seed0/taugate.safetensors --out taugate.taugate
  taugate compile MODEL.safetensors --out m.taugate --calib-data fashion-mnist --calib-size 5000
  taugate compile MODEL.safetensors --out m.taugate --calib-data inputs.npy --min-rate 0.001
  taugate compile MODEL.safetensors --out m.taugate --no-compact --no-eval
"""


def register(sub) -> None:
    p = add_command(
        sub,
        "compile",
        help="harden gates, fold gains, drop units that never fire: write NAME.taugate/",
        description="Compile a trained checkpoint (from `taugate reproduce` or `save_checkpoint`) "
        "into an artifact v1 that `taugate.runtime` runs without torch.",
        examples=EXAMPLES,
    )
    p.add_argument("model", metavar="MODEL", help="checkpoint .safetensors written by taugate")
    p.add_argument(
        "--out", required=True, metavar="NAME.taugate", help="artifact directory to write"
    )
    p.add_argument(
        "--calib-data",
        metavar="NAME|FILE.npy|FILE.npz",
        help="calibration data set name, or inputs in an .npy file or an .npz holding one array (default: the model's data set)",
    )
    p.add_argument(
        "--calib-size",
        type=int_at_least("--calib-size", 1),
        default=2000,
        help="calibration inputs (default 2000)",
    )
    p.add_argument(
        "--angle",
        type=number("--angle"),
        help="mode of the calibration / evaluation data (default: the model's target)",
    )
    p.add_argument(
        "--min-rate",
        type=nonneg_number("--min-rate"),
        default=0.0,
        help="drop units firing on <= this share of calibration inputs (default 0: never)",
    )
    p.add_argument("--no-compact", action="store_true", help="keep every unit")
    ev = p.add_mutually_exclusive_group()
    ev.add_argument(
        "--eval-size",
        type=int_at_least("--eval-size", 1),
        help="test images of the model's data set for accuracy before/after (default all)",
    )
    ev.add_argument(
        "--no-eval",
        action="store_true",
        help="do not measure accuracy before/after (otherwise always measured on the model's "
        "data set, test split, at --angle, whatever --calib-data is)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace --out even if it is not an artifact (a file, or a folder holding only "
        "files named like an artifact's; a folder with other files is never replaced)",
    )
    add_data_args(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from taugate.compile import CompileConfig, compile_checkpoint

    cfg = CompileConfig(min_rate=args.min_rate, compact=not args.no_compact)
    extra = compile_checkpoint(
        args.model, args.out, calib_data=args.calib_data, calib_size=args.calib_size,
        angle=args.angle, data_dir=args.data_dir, eval_size=args.eval_size, evaluate=not args.no_eval,
        cfg=cfg, quiet=args.quiet, force=args.force,
    )  # fmt: skip
    rep = extra["compile"]
    kept = ", ".join(f"{k}/{o}" for k, o in zip(rep["units_kept"], rep["units_original"]))
    print(
        f"wrote {args.out}: method {extra['provenance']['method']}, units kept per hidden layer {kept}"
    )
    if "accuracy_before" in rep:
        ev = rep["evaluation"]
        print(
            f"accuracy on {rep['eval_size']} test inputs ({ev['dataset']} at {ev['angle']:g}°): "
            f"hard-gated torch {100 * rep['accuracy_before']:.2f}% -> compiled "
            f"{100 * rep['accuracy_after']:.2f}% (max |logit diff| {rep['max_abs_diff_vs_torch']:.2e})"
        )
    elif args.no_eval:
        print("accuracy before/after not measured (--no-eval)")
    else:
        print("accuracy before/after not measured (see the warning above)")
    return 0
