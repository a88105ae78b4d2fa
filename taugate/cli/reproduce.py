"""``taugate reproduce``: the paper's study, tables and figure in one command."""

from __future__ import annotations

import time
from pathlib import Path

from taugate.cli.common import (
    add_command,
    add_data_args,
    add_executor_args,
    executor_from,
    int_at_least,
    int_list,
    name_list,
    nonneg_number,
    number,
    positive_number,
)

EXAMPLES = """examples:
  taugate reproduce --dataset mnist-10k --data-dir ../shared/data
  taugate reproduce --dataset fashion-mnist --seeds 1 --device cpu --out runs/fmnist
  taugate reproduce --dataset mnist --angle 90 --lambda 3e-3 --methods taugate,lora,fullft
  taugate reproduce --config runs/fmnist/config.json --out runs/fmnist-again
  taugate reproduce --dataset fashion-mnist --seeds 3 --executor ray --workers 2 --out runs/fmnist-ray
"""


def register(sub) -> None:
    from taugate.configs import ALL_METHODS, ReproduceConfig

    d = ReproduceConfig()
    p = add_command(
        sub,
        "reproduce",
        help="foundation + all methods for N seeds: results.csv, tables, figure, models",
        description="Pretrain an MLP on a 50/50 mix of 0° and a rotated mode, freeze it, specialise "
        "it to the rotated mode with every method, and write results.csv, tables/, figures/, "
        "models/ and config.json.",
        examples=EXAMPLES,
    )
    p.add_argument("--dataset", default=d.dataset, help=f"data set name (default {d.dataset})")
    add_data_args(p)
    p.add_argument(
        "--angle", type=number("angle"), default=d.angle, help="rotated mode, degrees (default 45)"
    )
    p.add_argument(
        "--seeds",
        type=int_at_least("--seeds", 1),
        default=d.seeds,
        help="number of seeds (default 3)",
    )
    p.add_argument(
        "--seed", type=int_at_least("--seed", 0), default=d.seed0, help="first seed (default 0)"
    )
    p.add_argument(
        "--methods",
        type=name_list,
        default=d.methods,
        help=f"comma-separated subset of {','.join(ALL_METHODS)} (default all)",
    )
    p.add_argument(
        "--hidden",
        type=int_list("--hidden"),
        default=d.hidden,
        help="hidden widths (default 128,128)",
    )
    p.add_argument(
        "--foundation-epochs",
        type=int_at_least("--foundation-epochs", 0),
        default=d.foundation_epochs,
    )
    p.add_argument("--adapt-epochs", type=int_at_least("--adapt-epochs", 0), default=d.adapt_epochs)
    p.add_argument("--batch-size", type=int_at_least("--batch-size", 1), default=d.batch_size)
    p.add_argument(
        "--lr-foundation", type=positive_number("--lr-foundation"), default=d.foundation_lr
    )
    p.add_argument(
        "--lr-adapt",
        type=positive_number("--lr-adapt"),
        default=d.adapt_lr,
        help="learning rate of BitFit, LoRA, Full FT",
    )
    p.add_argument(
        "--lr-gates",
        type=positive_number("--lr-gates"),
        default=d.gate_lr,
        help="learning rate of TauGate, GainOnly, TauOnly",
    )
    p.add_argument("--momentum", type=nonneg_number("--momentum"), default=d.momentum)
    p.add_argument(
        "--lambda",
        dest="sparsity",
        type=number("--lambda"),
        default=d.sparsity,
        help=f"sparsity weight of the gate regulariser (default {d.sparsity:g})",
    )
    p.add_argument(
        "--sharpness", type=number("--sharpness"), default=d.sharpness, help="gate sharpness s > 0"
    )
    p.add_argument("--lora-rank", type=int_at_least("--lora-rank", 1), default=d.lora_rank)
    p.add_argument(
        "--no-overlap", action="store_true", help="skip the 0°-specialised TauGate (Table 3)"
    )
    p.add_argument(
        "--limit-train",
        type=int_at_least("--limit-train", 1),
        help="use the first N training images",
    )
    p.add_argument(
        "--limit-test", type=int_at_least("--limit-test", 1), help="use the first N test images"
    )
    p.add_argument("--no-save-models", action="store_true", help="do not write models/")
    p.add_argument(
        "--no-paper-steps",
        action="store_true",
        help="train the epochs as given; by default a data set smaller than the paper's 60k "
        "images trains more epochs, to take as many SGD steps per phase as the paper (2 x 235 "
        "foundation, 235 adaptation at batch 256)",
    )
    p.add_argument(
        "--device", default=d.device, help="auto | cpu | cuda | directml | mps (default auto)"
    )
    p.add_argument(
        "--config", metavar="JSON", help="repeat a run from its config.json (other flags ignored)"
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/<timestamp>)")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a folder that already holds results, or that taugate reproduce did not "
        "write (only the study's files are replaced)",
    )
    add_executor_args(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def config_from_args(args):
    from taugate.configs import ReproduceConfig
    from taugate.reproduce import config_from_file

    if args.config:
        return config_from_file(args.config)
    return ReproduceConfig(
        dataset=args.dataset, angle=args.angle, seeds=args.seeds, seed0=args.seed,
        methods=args.methods, hidden=args.hidden, foundation_epochs=args.foundation_epochs,
        adapt_epochs=args.adapt_epochs, batch_size=args.batch_size,
        foundation_lr=args.lr_foundation, adapt_lr=args.lr_adapt, gate_lr=args.lr_gates,
        momentum=args.momentum, sparsity=args.sparsity, sharpness=args.sharpness,
        lora_rank=args.lora_rank, overlap=not args.no_overlap, limit_train=args.limit_train,
        limit_test=args.limit_test, save_models=not args.no_save_models, device=args.device,
        paper_steps=not args.no_paper_steps,
    )  # fmt: skip


def run(args) -> int:
    from taugate.reproduce import reproduce

    cfg = config_from_args(args)
    executor = executor_from(args)  # checked before any work
    out = Path(args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    res = reproduce(cfg, out, data_dir=args.data_dir, quiet=args.quiet, force=args.force,
                    executor=executor)  # fmt: skip
    print((out / "tables" / "main.md").read_text())
    if (out / "tables" / "overlap.md").exists():
        print((out / "tables" / "overlap.md").read_text())
    if res["note"]:
        print(res["note"].replace("taugate: NOTE: ", "NOTE: "))  # again, next to the table
    print(
        f"wall time {res['seconds']:.1f} s; results in {out}/ (results.csv, tables/, figures/, models/)"
    )
    return 0
