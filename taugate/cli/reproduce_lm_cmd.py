"""``taugate reproduce-lm``: the brain-modes study on a small byte-level GPT (prose vs code)."""

from __future__ import annotations

import time
from pathlib import Path

from taugate.cli.common import (
    add_command,
    add_executor_args,
    executor_from,
    int_at_least,
    name_list,
    nonneg_number,
    positive_number,
)

EXAMPLES = """examples:
  taugate reproduce-lm --data-dir ../shared/data --out runs/lm-study
  taugate reproduce-lm --out runs/lm-embedded            # no data dir: the embedded prose and code
  taugate reproduce-lm --target prose --methods frozen,taugate,lora,fullft --seeds 3
  taugate reproduce-lm --modes quotes,code --target quotes --data-dir ../shared/data
  taugate reproduce-lm --tiny --out runs/lm-tiny         # the tests' configuration, seconds
  taugate reproduce-lm --config runs/lm-study/config.json --out runs/lm-again
  taugate reproduce-lm --data-dir ../shared/data --seeds 3 --executor ray --workers 2 --out runs/lm-ray
"""


def register(sub) -> None:
    from taugate.reproduce_lm.config import STUDY_METHODS, LMStudyConfig

    d = LMStudyConfig()
    p = add_command(
        sub, "reproduce-lm",
        help="the study on a small GPT: prose/code foundation, every method, tables, figure",
        description="Pretrain the project's byte-level GPT on a 50/50 mix of two text modes, "
        "freeze it, specialise it to the target mode with every method (and TauGate also to the "
        "other mode, for the overlap table), and write results.csv, overlap.csv, tables/, "
        "figures/, models/ and config.json. Bits per byte on both modes' test text (split by "
        "document), soft, hard-gated and compiled.",
        examples=EXAMPLES,
    )  # fmt: skip
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder holding text/*.jsonl.gz (default: $TAUGATE_DATA_DIR, else the "
                   "embedded corpora: pydoc_data.topics and the running Python's stdlib)")  # fmt: skip
    p.add_argument("--modes", type=name_list, default=d.modes,
                   help="the foundation's two text modes, of prose,code,quotes (default prose,code)")  # fmt: skip
    p.add_argument("--target", default=d.target, help="the mode to specialise to (default code)")
    p.add_argument("--methods", type=name_list, default=d.methods,
                   help=f"comma-separated subset of {','.join(STUDY_METHODS)} (default all)")  # fmt: skip
    p.add_argument("--seeds", type=int_at_least("--seeds", 1), default=d.seeds,
                   help=f"number of seeds (default {d.seeds})")  # fmt: skip
    p.add_argument("--seed", type=int_at_least("--seed", 0), default=d.seed0, help="first seed")
    p.add_argument("--activation", default=d.activation,
                   help="FFN activation: relu, gelu, gelu-tanh, silu, swiglu (default relu)")  # fmt: skip
    p.add_argument("--layers", type=int_at_least("--layers", 1), default=d.n_layer)
    p.add_argument("--heads", type=int_at_least("--heads", 1), default=d.n_head)
    p.add_argument("--d-model", type=int_at_least("--d-model", 1), default=d.d_model)
    p.add_argument("--ffn", type=int_at_least("--ffn", 1), default=d.d_ffn,
                   help=f"FFN hidden units per block (default {d.d_ffn})")  # fmt: skip
    p.add_argument("--max-bytes", type=int_at_least("--max-bytes", 1), default=d.max_bytes,
                   help=f"bytes per mode at most, whole documents (default {d.max_bytes:,})")  # fmt: skip
    p.add_argument("--foundation-steps", type=int_at_least("--foundation-steps", 0),
                   default=d.foundation_steps)  # fmt: skip
    p.add_argument("--adapt-steps", type=int_at_least("--adapt-steps", 0), default=d.adapt_steps)
    p.add_argument("--lambda", dest="sparsity", type=nonneg_number("--lambda"), default=d.sparsity,
                   help=f"weight of the gate regulariser (default {d.sparsity:g})")  # fmt: skip
    p.add_argument("--lr-gates", type=positive_number("--lr-gates"), default=d.gate_lr)
    p.add_argument("--lr-adapter", type=positive_number("--lr-adapter"), default=d.adapter_lr,
                   help="learning rate of BitFit and LoRA")  # fmt: skip
    p.add_argument("--lr-full", type=positive_number("--lr-full"), default=d.full_lr)
    p.add_argument("--lora-rank", type=int_at_least("--lora-rank", 1), default=d.lora_rank)
    p.add_argument("--no-overlap", action="store_true",
                   help="skip TauGate on the other mode (the overlap table)")  # fmt: skip
    p.add_argument("--no-compile", action="store_true", help="skip the compiled evaluation")
    p.add_argument("--no-save-models", action="store_true", help="do not write models/")
    p.add_argument("--tiny", action="store_true",
                   help="the tests' tiny configuration (a 2-block GPT of width 32; seconds)")  # fmt: skip
    p.add_argument("--config", metavar="JSON",
                   help="repeat a run from its config.json (other flags ignored)")  # fmt: skip
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/lm-<timestamp>)")
    p.add_argument("--force", action="store_true",
                   help="write into a folder that holds results or that this command did not "
                   "write (only the study's files are replaced)")  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_executor_args(p)
    p.set_defaults(func=run)


def config_from_args(args):
    from taugate.reproduce_lm import LMStudyConfig, config_from_file

    if args.config:
        return config_from_file(args.config)
    kw = dict(modes=args.modes, target=args.target, methods=args.methods, seeds=args.seeds,
              seed0=args.seed, activation=args.activation, n_layer=args.layers, n_head=args.heads,
              d_model=args.d_model, d_ffn=args.ffn, max_bytes=args.max_bytes,
              foundation_steps=args.foundation_steps, adapt_steps=args.adapt_steps,
              sparsity=args.sparsity, gate_lr=args.lr_gates, adapter_lr=args.lr_adapter,
              full_lr=args.lr_full, lora_rank=args.lora_rank, overlap=not args.no_overlap,
              compile=not args.no_compile, save_models=not args.no_save_models)  # fmt: skip
    if args.tiny:
        return LMStudyConfig.tiny(**{k: kw[k] for k in ("modes", "target", "methods", "seeds",
                                                        "seed0", "activation", "overlap",
                                                        "compile", "save_models", "sparsity")})  # fmt: skip
    return LMStudyConfig(**kw)


def run(args) -> int:
    from taugate.reproduce_lm import reproduce_lm

    cfg = config_from_args(args)
    executor = executor_from(args)  # checked before any work
    out = Path(args.out or Path("runs") / time.strftime("lm-%Y%m%d-%H%M%S"))
    res = reproduce_lm(cfg, out, data_dir=args.data_dir, quiet=args.quiet, force=args.force,
                       executor=executor)  # fmt: skip
    for name in ("main", "ablations", "overlap"):
        if (out / "tables" / f"{name}.md").exists():
            print((out / "tables" / f"{name}.md").read_text())
    print(f"wall time {res['seconds']:.1f} s; results in {out}/ (results.csv, tables/, figures/, "
          "models/)")  # fmt: skip
    return 0
