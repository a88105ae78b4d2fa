"""``taugate bench-bank``: what a mode bank saves, measured (``taugate.bank.cost.switch_cost``)."""

from __future__ import annotations

from taugate.cli.bank_texts import add_text_args, mode_texts
from taugate.cli.common import add_command, add_random_lm_args, int_at_least, positive_number

EXAMPLES = """examples:
  taugate bench-bank fmnist.taugate-bank --threads 1
  taugate bench-bank fmnist.taugate-bank --batch 256 --repeats 100 --json runs/bank-cost.json
  taugate bench-bank runs/lm/base --adapter code=runs/lm/code --adapter prose=runs/lm/prose
  taugate bench-bank --random --d-model 1024 --ffn 4096 --layers 4 --modes 2 --batch 8 --compiled
  taugate bench-bank runs/lm-study/foundation --adapter code=runs/lm-study/adapters/taugate-code \
      --adapter prose=runs/lm-study/adapters/taugate-prose --compiled --data-dir ../shared/data
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
        "call per row, prompted with each mode's text (--corpus); with --compiled the two decode "
        "steps again on a compiled copy of the bank.",
        examples=EXAMPLES,
    )  # fmt: skip
    p.add_argument("bank", metavar="BANK", nargs="?",
                   help="a mode bank directory NAME.taugate-bank, or with --adapter an own GPT")  # fmt: skip
    add_random_lm_args(p)
    p.add_argument("--modes", type=int_at_least("--modes", 1), default=2,
                   help="--random: modes of the random bank (default 2)")  # fmt: skip
    p.add_argument("--active", type=positive_number("--active"), default=0.2,
                   help="--random: mean share of FFN units firing per mode (default 0.2)")  # fmt: skip
    p.add_argument("--adapter", action="append", metavar="NAME=DIR", default=[],
                   help="a TauGate adapter as a mode of the language model BANK (repeat)")  # fmt: skip
    p.add_argument("--batch", type=int_at_least("--batch", 1),
                   help="rows of the mixed-mode batch (default 64; language models: one per mode)")  # fmt: skip
    p.add_argument("--repeats", type=int_at_least("--repeats", 1), default=50,
                   help="timed samples per quantity (default 50)")  # fmt: skip
    p.add_argument("--threads", type=int_at_least("--threads", 1), default=1,
                   help="Numba threads (default 1)")  # fmt: skip
    p.add_argument("--compiled", action="store_true",
                   help="language models: also time a compiled copy of the bank (hard gates, the "
                   "Numba FFN kernel with every mode's tau and gamma), compiled on --corpus text")  # fmt: skip
    add_text_args(p)
    p.add_argument("--seed", type=int_at_least("--seed", 0), default=0)
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=run)


def run(args) -> int:
    from taugate.io import atomic_write_json, check_owned_file

    if args.json:
        check_owned_file(args.json, "taugate bench-bank", force=args.force)
    from taugate.errors import TauGateError

    if (args.bank is None) == (not args.random):
        raise TauGateError("give BANK, or --random for a random language-model bank (not both)")
    if args.compiled and not (args.adapter or args.random):
        raise TauGateError("--compiled is for a language-model bank (give --adapter NAME=DIR)")
    r, t = _lm(args) if args.adapter or args.random else _mlp(args)
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

    if args.random:
        from taugate.lm.bank import LMBank
        from taugate.lm.synthetic import random_lm_bank

        base, models, calib = random_lm_bank(modes=args.modes, d_model=args.d_model,
                                             d_ffn=args.ffn, n_layer=args.layers,
                                             activation=args.activation, active=args.active,
                                             seed=args.seed)  # fmt: skip
        bank, prompts, texts = LMBank.from_models(base, models), None, None
        what = (f"random GPT d_model {args.d_model}, FFN {args.ffn} ({args.activation}), "
                f"{args.layers} layers, {args.modes} modes, mean active {args.active:g}")  # fmt: skip
    else:
        pairs = [adapter_arg(a) for a in args.adapter]
        if any(n is None for n, _ in pairs):
            raise TauGateError("--adapter must be NAME=DIR for a language-model bank")
        bank, what = load_lm_bank(args.bank, pairs), args.bank
        calib, prompts, texts = mode_texts(bank.modes, args.corpus, args.data_dir)
    r = lm_switch_cost(bank, repeats=args.repeats, threads=args.threads, batch=args.batch,
                       seed=args.seed, prompt_tokens=prompts,
                       calib_tokens=calib if args.compiled else None)  # fmt: skip
    r["texts"], r["bank"] = texts, what
    return r, _lm_table(r, what)


def _lm_table(r: dict, what: str):
    from taugate.tables import Table

    c, B, M = r.get("compiled"), r["batch"], len(r["modes"])

    def cells(res, key, base):
        return [f"{res[key]:.1f} µs", f"{res[key] / res[base]:.2f}x"] if res else ["-", "-"]

    rows = [["switch mode", f"{r['switch_us']:.2f} µs", "-", "-", "-"],
            ["load the mode's adapter (load_adapter_)", f"{r['load_adapter_us']:.1f} µs",
             f"{r['load_vs_switch']:.0f}x the switch", "-", "-"]]  # fmt: skip
    for label, key in ((f"mixed-mode decode step of {B} rows", "mixed_step_us"),
                       (f"{M} decode steps, one per mode on its rows", "mode_groups_us"),
                       (f"{B} one-row decode steps, each in its mode", "single_steps_us")):  # fmt: skip
        rows.append([label, *cells(r, key, "mixed_step_us"), *cells(c, key, "mixed_step_us")])
    note = (f"largest logit difference, mixed vs one row at a time: "
            f"{r['max_abs_diff_mixed_vs_single']:.2g}")  # fmt: skip
    if c:
        rows.append([f"{B} rows all in mode {r['modes'][0]}: the compiled bank / that mode "
                     "compiled alone", "-", "-", f"{c['one_mode_step_us']:.1f} µs / "
                     f"{c['single_mode_model_step_us']:.1f} µs",
                     f"{c['bank_vs_single_mode_model']:.2f}x"])  # fmt: skip
        note += (f"; compiled: FFN units kept {c['units_kept']}/{c['units_original']}, active "
                 f"{100 * c['active_share']:.1f} %, torch / compiled mixed step "
                 f"**{c['torch_vs_compiled_mixed']:.2f}x**, kernel vs torch math "
                 f"{c['max_abs_diff_kernel_vs_torch_math']:.2g}")  # fmt: skip
    prompts = "random prompts" if r["prompts"] != "text" else "prompts from each mode's text"
    return Table(f"Language-model bank {what}: modes {', '.join(r['modes'])}; {r['threads']} "
                 f"thread(s), median of {r['repeats']}, {r['prompt_len']}-token {prompts}",
                 ["what", "torch bank", "time / its mixed step", "compiled bank",
                  "time / its mixed step"], rows, note)  # fmt: skip
