"""``taugate sweep-lm``: TauGate on the own GPT across lambda: bits per byte against the hard FFN
active share and against the compiled model's decode speed (the sweep machinery of ``taugate
sweep``, its language-model kind)."""

from __future__ import annotations

from taugate.cli.common import add_command, int_at_least, int_list, name_list

EXAMPLES = """examples:
  taugate sweep-lm --data-dir ../shared/data --out runs/lm-sweep
  taugate sweep-lm --lambdas 0,1e-2,1e-1 --widths 512,2048 --seeds 2 --out runs/lm-wide
  taugate sweep-lm --tiny --lambdas 0,0.1 --out runs/lm-sweep-tiny     # seconds
  taugate sweep-lm ... --out runs/lm-sweep            # rerun: finished cells are skipped
"""


def register(sub) -> None:
    from taugate.cli.sweep_cmd import lambda_list
    from taugate.reproduce_lm.config import LMStudyConfig
    from taugate.sweep.lm import DEFAULT_LM_LAMBDAS

    d = LMStudyConfig()
    p = add_command(
        sub, "sweep-lm",
        help="TauGate on the own GPT across lambda: bits per byte vs active share vs decode speed",
        description="Per FFN width and seed one foundation (pretrained on the 50/50 mix of the "
        "two text modes, reused), then TauGate specialised to the target mode at each lambda; "
        "bits per byte (soft, hard, compiled) on both modes' test text, the hard FFN active "
        "share, and decode steps of eager torch, the hard-gated model and the compiled model "
        "timed side by side (as taugate bench-lm). Writes sweep.csv, sweep.json, summary.md and "
        "figures/; finished cells are kept, so a rerun resumes.",
        examples=EXAMPLES,
    )  # fmt: skip
    p.add_argument("--lambdas", type=lambda_list, default=DEFAULT_LM_LAMBDAS)
    p.add_argument("--widths", type=int_list("--widths"),
                   help=f"FFN hidden units per block (default {d.d_ffn}; --tiny: 64)")  # fmt: skip
    p.add_argument("--seeds", type=int_at_least("--seeds", 1), default=1)
    p.add_argument("--seed", type=int_at_least("--seed", 0), default=0, help="first seed")
    p.add_argument("--modes", type=name_list, default=d.modes)
    p.add_argument("--target", default=d.target)
    p.add_argument("--activation", default=d.activation)
    p.add_argument("--foundation-steps", type=int_at_least("--foundation-steps", 0),
                   help=f"default {d.foundation_steps} (--tiny: 40)")  # fmt: skip
    p.add_argument("--adapt-steps", type=int_at_least("--adapt-steps", 1),
                   help=f"default {d.adapt_steps} (--tiny: 10)")  # fmt: skip
    p.add_argument("--batch-sizes", type=int_list("--batch-sizes"), default=(1, 8))
    p.add_argument("--threads", type=int_at_least("--threads", 1), default=1,
                   help="threads for torch, BLAS and Numba while timing (default 1)")  # fmt: skip
    p.add_argument("--rounds", type=int_at_least("--rounds", 3), default=15, help="timing samples")
    p.add_argument("--tiny", action="store_true", help="the tests' tiny GPT (seconds)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder holding text/*.jsonl.gz (default: $TAUGATE_DATA_DIR, else the "
                   "embedded corpora)")  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="reuse matching cells of a sweep with other arguments")  # fmt: skip
    g.add_argument("--force", action="store_true",
                   help="start over: delete cells/, foundations/ and figures/ in --out")  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from taugate.reproduce_lm.config import LMStudyConfig
    from taugate.sweep.lm import LMSweepConfig
    from taugate.sweep.run import run_sweep

    kw = dict(modes=args.modes, target=args.target, activation=args.activation,
              methods=("taugate",), overlap=False, save_models=False)  # fmt: skip
    steps = {"foundation_steps": (args.foundation_steps, 40), "adapt_steps": (args.adapt_steps, 10)}
    if args.tiny:
        study = LMStudyConfig.tiny(**kw, **{k: tiny if v is None else v
                                            for k, (v, tiny) in steps.items()})  # fmt: skip
    else:
        study = LMStudyConfig(**kw, **{k: v for k, (v, _) in steps.items() if v is not None})
    widths = args.widths or (study.d_ffn,)
    cfg = LMSweepConfig(study=study, lambdas=args.lambdas, widths=widths, seeds=args.seeds,
                        seed0=args.seed, batch_sizes=args.batch_sizes, threads=args.threads,
                        rounds=args.rounds, prompt_len=min(64, study.seq_len // 2))  # fmt: skip
    rows = run_sweep(cfg, args.out, args.data_dir, args.resume, args.force, args.quiet)
    out = Path(args.out)
    print((out / "summary.md").read_text())
    print(f"{len(rows)} rows; wrote {out}/sweep.csv, sweep.json, summary.md, figures/")
    return 0
