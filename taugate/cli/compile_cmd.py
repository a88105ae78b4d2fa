"""``taugate compile``: checkpoint -> compacted artifact (manifest.json + weights.safetensors)."""

from __future__ import annotations

from taugate.cli.common import (
    add_command,
    add_data_args,
    int_at_least,
    margin,
    nonneg_number,
    number,
)

EXAMPLES = """examples:
  taugate compile runs/demo/models/seed0/taugate.safetensors --out taugate.taugate
  taugate compile MODEL.safetensors --out m.taugate --calib-data fashion-mnist --calib-size 5000
  taugate compile MODEL.safetensors --out m.taugate --calib-data inputs.npy --min-rate 0.001
  taugate compile MODEL.safetensors --out m.taugate --no-compact --no-eval
  taugate compile MODEL.safetensors --out m.taugate --predictor 16 --predictor-margin 2
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
    p.add_argument(
        "--predictor",
        type=int_at_least("--predictor", 1),
        metavar="RANK",
        help="also fit a low-rank predictor of rank RANK per hidden layer on the calibration "
        "inputs, for the approximate rowskip-predicted backend (1 <= RANK <= min(in, out))",
    )
    p.add_argument(
        "--predictor-layers",
        choices=("first", "all"),
        default="first",
        help="hidden layers that get a predictor: first (default: layer 0, whose input is dense; "
        "a later layer's input is sparse already, and skipping its shut inputs measured cheaper) "
        "or all",
    )
    p.add_argument(
        "--predictor-margin",
        type=margin,
        default=2.0,
        metavar="M",
        help="default safety margin of the predictor, in stds of each unit's prediction error: a "
        "unit is computed if its guess is above threshold - M * std ('inf': every unit, exact; "
        "default 2)",
    )
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
    from taugate.predictor import PredictorConfig

    cfg = CompileConfig(min_rate=args.min_rate, compact=not args.no_compact)
    pred = None if args.predictor is None else PredictorConfig(rank=args.predictor,
                                                               margin=args.predictor_margin,
                                                               layers=args.predictor_layers)  # fmt: skip
    extra = compile_checkpoint(
        args.model, args.out, calib_data=args.calib_data, calib_size=args.calib_size,
        angle=args.angle, data_dir=args.data_dir, eval_size=args.eval_size, evaluate=not args.no_eval,
        cfg=cfg, predictor=pred, quiet=args.quiet, force=args.force,
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
    if "predictor" in rep:
        from taugate.artifact import read_manifest

        _print_predictor(rep["predictor"])
        _print_kinds(read_manifest(args.out)["predictor"]["fit"])  # the manifest alone
    return 0


def _print_predictor(p: dict) -> None:
    head = f"predictor (approximate, rowskip-predicted): {p['kind']} rank {p['rank']}, margin {p['margin']}"
    if "recall" not in p:
        print(f"{head}; not evaluated")
        return
    rec = ", ".join("-" if r is None else f"{100 * r:.2f}%" for r in p["recall"])
    comp = ", ".join("-" if c is None else f"{100 * c:.1f}%" for c in p["computed"])
    print(f"{head}; recall per hidden layer {rec}; units computed {comp}; top-1 agreement with "
          f"exact {100 * p['agreement']:.2f}%")  # fmt: skip
    if "accuracy_predicted" in p:
        print(f"accuracy exact {100 * p['accuracy_exact']:.2f}% -> predicted "
              f"{100 * p['accuracy_predicted']:.2f}% (approximate)")  # fmt: skip


def _print_kinds(fit: dict) -> None:
    """The fit report's comparison of the predictor kinds, per predicted layer."""
    for layer in fit.get("layers", []):
        cells = [
            f"{k['kind']} m={k['margin']:g}: recall {100 * k['recall']:.2f}%, computed "
            f"{100 * k['computed']:.1f}%"
            for k in layer["kinds"]
        ]
        print(f"predictor kinds, hidden layer {layer['layer']} ({layer['held_out']} held-out "
              f"calibration inputs, {100 * layer['active']:.1f}% active): " + "; ".join(cells))  # fmt: skip
