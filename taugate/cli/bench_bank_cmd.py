"""``taugate bench-bank``: what a mode bank saves, measured (``taugate.bank.cost.switch_cost``)."""

from __future__ import annotations

from taugate.cli.common import add_command, int_at_least

EXAMPLES = """examples:
  taugate bench-bank fmnist.taugate-bank --threads 1
  taugate bench-bank fmnist.taugate-bank --batch 256 --repeats 100 --json runs/bank-cost.json
  taugate bench-bank runs/lm/base --adapter code=runs/lm/code --adapter prose=runs/lm/prose
"""


def register(sub) -> None:
    p = add_command(
        sub, "bench-bank",
        help="a mode bank's switch cost and mixed-mode batch, against separate artifacts",
        description="Time, interleaved after warm-up (medians): a batch-1 predict that switches "
        "mode against one in the same mode and against loading the mode's separate single-mode "
        "artifact (from the page cache: a lower bound); and one mixed-mode batch (modes "
        "round-robin over the rows) against one call per mode on its own artifact. With "
        "--adapter, BANK is a language model (an own GPT checkpoint) and its adapters the modes: "
        "a mode switch against loading the adapter, and one mixed-mode decode step against one "
        "call per row.",
        examples=EXAMPLES,
    )  # fmt: skip
    p.add_argument("bank", metavar="BANK",
                   help="a mode bank directory NAME.taugate-bank, or with --adapter an own GPT")  # fmt: skip
    p.add_argument("--adapter", action="append", metavar="NAME=DIR", default=[],
                   help="a TauGate adapter as a mode of the language model BANK (repeat)")  # fmt: skip
    p.add_argument("--batch", type=int_at_least("--batch", 1),
                   help="rows of the mixed-mode batch (default 64; language models: one per mode)")  # fmt: skip
    p.add_argument("--repeats", type=int_at_least("--repeats", 1), default=50,
                   help="timed samples per quantity (default 50)")  # fmt: skip
    p.add_argument("--threads", type=int_at_least("--threads", 1), default=1,
                   help="Numba threads (default 1)")  # fmt: skip
    p.add_argument("--seed", type=int_at_least("--seed", 0), default=0)
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=run)


def run(args) -> int:
    from taugate.io import atomic_write_json, check_owned_file

    if args.json:
        check_owned_file(args.json, "taugate bench-bank", force=args.force)
    r, t = _lm(args) if args.adapter else _mlp(args)
    print(t.markdown())
    if args.json:
        atomic_write_json(args.json, {"written_by": "taugate bench-bank", **r})
        print(f"wrote {args.json}")
    return 0


def _mlp(args):
    from taugate.bank.cost import SwitchCostConfig, switch_cost
    from taugate.tables import Table

    cfg = SwitchCostConfig(repeats=args.repeats, batch=args.batch or 64, threads=args.threads,
                           seed=args.seed)  # fmt: skip
    r = switch_cost(args.bank, cfg)
    rows = [["switch mode, batch 1", f"{r['switch_us']:.1f} µs", "1.00x"],
            ["same mode, batch 1", f"{r['same_mode_us']:.1f} µs", f"{r['same_mode_us'] / r['switch_us']:.2f}x"],
            ["load the mode's own artifact, batch 1", f"{r['reload_us']:.1f} µs",
             f"{r['reload_vs_switch']:.2f}x"],
            [f"mixed-mode batch of {r['batch']}", f"{r['mixed_batch_us']:.1f} µs", "1.00x"],
            [f"{len(r['modes'])} separate calls, one per mode", f"{r['separate_calls_us']:.1f} µs",
             f"{r['separate_vs_mixed']:.2f}x"]]  # fmt: skip
    t = Table(f"Mode bank {args.bank}: modes {', '.join(r['modes'])}; {r['threads']} thread(s), "
              f"median of {r['repeats']}", ["what", "median", "time / the bank's"], rows,
              f"largest logit difference, mixed vs separate: {r['max_abs_diff_mixed_vs_separate']:.2g}")  # fmt: skip
    return r, t


def _lm(args):
    from taugate.cli.generate_cmd import adapter_arg
    from taugate.errors import TauGateError
    from taugate.lm.bank import load_lm_bank
    from taugate.lm.bank_cost import lm_switch_cost
    from taugate.tables import Table

    pairs = [adapter_arg(a) for a in args.adapter]
    if any(n is None for n, _ in pairs):
        raise TauGateError("--adapter must be NAME=DIR for a language-model bank")
    bank = load_lm_bank(args.bank, pairs)
    r = lm_switch_cost(bank, repeats=args.repeats, threads=args.threads, batch=args.batch,
                       seed=args.seed)  # fmt: skip
    rows = [["switch mode", f"{r['switch_us']:.2f} µs", "1.00x"],
            ["load the mode's adapter (load_adapter_)", f"{r['load_adapter_us']:.1f} µs",
             f"{r['load_vs_switch']:.0f}x"],
            [f"mixed-mode decode step of {r['batch']} rows", f"{r['mixed_step_us']:.1f} µs", "1.00x"],
            [f"{r['batch']} one-row decode steps, each in its mode", f"{r['single_steps_us']:.1f} µs",
             f"{r['single_vs_mixed']:.2f}x"]]  # fmt: skip
    t = Table(f"Language-model bank {args.bank}: modes {', '.join(r['modes'])}; "
              f"{r['threads']} thread(s), median of {r['repeats']}, prompt {r['prompt_len']} tokens",
              ["what", "median", "time / the bank's"], rows,
              f"largest logit difference, mixed vs one row at a time: {r['max_abs_diff_mixed_vs_single']:.2g}")  # fmt: skip
    return r, t
