"""``taugate sweep``: accuracy and speed of every backend across lambda, seed, width, batch size."""

from __future__ import annotations

import argparse
import math

from taugate.cli.common import (
    add_command,
    add_data_args,
    add_executor_args,
    add_predictor_args,
    executor_from,
    int_at_least,
    int_list,
    name_list,
    number,
)

EXAMPLES = """examples:
  taugate sweep --lambdas 0,1e-4,3e-4,1e-3,3e-3,1e-2,3e-2 --seeds 3 --dataset fashion-mnist --angle 45 --out runs/sweep
  taugate sweep --dataset fashion-mnist --widths 128,512,2048 --lambdas 0,1e-2,3e-2 --seeds 1 --out runs/wide
  taugate sweep ... --out runs/sweep            # rerun: finished cells are skipped
  taugate sweep ... --out runs/sweep --resume   # changed arguments: reuse the cells that still match
  taugate sweep ... --out runs/sweep --executor ray --workers 2        # a local Ray of 2 CPUs
  taugate sweep ... --out runs/sweep --executor ray --ray-address auto # the cluster of `ray start`
"""


def lambda_list(text: str) -> tuple[float, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise argparse.ArgumentTypeError(
            f"--lambdas must be a comma-separated list of numbers, got {text!r}"
        )
    vals = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--lambdas: {p!r} is not a number") from None
        if not math.isfinite(v) or v < 0:
            raise argparse.ArgumentTypeError(
                f"--lambdas: lambda must be a finite number >= 0, got {p!r}"
            )
        vals.append(v)
    return tuple(vals)


def _backend_help() -> str:
    from taugate import backends as registry

    return ("comma list of backends (default: every one that can run here). "
            + registry.help_lines(registry.names()))  # fmt: skip


def register(sub) -> None:
    from taugate.sweep.config import DEFAULT_LAMBDAS

    p = add_command(
        sub,
        "sweep",
        help="train TauGate across lambdas / widths, compile, and time every backend",
        description="Per seed and width one foundation (reused), then TauGate at each lambda, "
        "hardened and compiled; accuracy at 0° and the angle (soft, hard, compiled), active shares, "
        "and side-by-side timings of every backend at each batch size. Writes sweep.csv, "
        "sweep.json, summary.md and figures/; finished cells are kept, so a rerun resumes.",
        examples=EXAMPLES,
    )
    p.add_argument("--lambdas", type=lambda_list, default=DEFAULT_LAMBDAS)
    p.add_argument("--seeds", type=int_at_least("--seeds", 1), default=3)
    p.add_argument("--seed", type=int_at_least("--seed", 0), default=0, help="first seed")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--angle", type=number("--angle"), default=45.0)
    p.add_argument("--widths", type=int_list("--widths"), default=(128,))
    p.add_argument("--depth", type=int_at_least("--depth", 1), default=2, help="hidden layers")
    p.add_argument("--batch-sizes", type=int_list("--batch-sizes"), default=(1, 8, 64, 256))
    p.add_argument("--backends", type=name_list, default=(), help=_backend_help())
    p.add_argument(
        "--threads",
        type=int_at_least("--threads", 1),
        help="threads for Numba, torch, BLAS and onnxruntime (default: all cores)",
    )
    p.add_argument("--foundation-epochs", type=int_at_least("--foundation-epochs", 0), default=2)
    p.add_argument("--adapt-epochs", type=int_at_least("--adapt-epochs", 0), default=1)
    p.add_argument("--limit-train", type=int_at_least("--limit-train", 1))
    p.add_argument("--limit-test", type=int_at_least("--limit-test", 1))
    p.add_argument(
        "--no-paper-steps",
        action="store_true",
        help="train the epochs as given, even on a data set smaller than the paper's",
    )
    p.add_argument("--rounds", type=int_at_least("--rounds", 3), default=15, help="timing samples")
    p.add_argument("--out", required=True, metavar="DIR")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--resume", action="store_true", help="reuse matching cells of a sweep with other arguments"
    )
    g.add_argument(
        "--force",
        action="store_true",
        help="start over: delete cells/, foundations/, artifacts/ and figures/ in --out and "
        "replace its sweep files, also in a folder that taugate sweep did not write",
    )
    add_data_args(p)
    add_predictor_args(p, what="each cell's calibration inputs (after compiling)")
    add_executor_args(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from taugate import backends as registry
    from taugate.configs import ReproduceConfig
    from taugate.sweep.config import SweepConfig
    from taugate.sweep.run import run_sweep

    study = ReproduceConfig(
        dataset=args.dataset, angle=args.angle, seeds=args.seeds, seed0=args.seed,
        foundation_epochs=args.foundation_epochs, adapt_epochs=args.adapt_epochs,
        limit_train=args.limit_train, limit_test=args.limit_test, device="cpu",
        paper_steps=not args.no_paper_steps, methods=("taugate",), overlap=False, save_models=False,
    )  # fmt: skip
    cfg = SweepConfig(study=study, lambdas=args.lambdas, widths=args.widths, depth=args.depth,
                      batch_sizes=args.batch_sizes, backends=args.backends, threads=args.threads,
                      rounds=args.rounds, predictor_rank=args.predictor or 0,
                      **({"margins": args.margins} if args.margins else {}))  # fmt: skip
    if not args.backends:
        for note in registry.select(defaults_only=False)[1]:  # the backends left out, and why
            print(f"note: {note}")
    executor = executor_from(args)  # checked before any work
    rows = run_sweep(cfg, args.out, args.data_dir, args.resume, args.force, args.quiet,
                     executor=executor)  # fmt: skip
    out = Path(args.out)
    print((out / "summary.md").read_text())
    print(f"{len(rows)} rows; wrote {out}/sweep.csv, sweep.json, summary.md, figures/")
    return 0
