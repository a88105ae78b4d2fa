"""``taugate bench-lm``: decode tokens/s of a language model, dense vs hard-gated vs compiled."""

from __future__ import annotations

from taugate.cli.common import add_command, add_random_lm_args, float_list, int_at_least, int_list

EXAMPLES = """examples:
  taugate bench-lm --random --d-model 1024 --ffn 4096 --layers 4 --activation relu --active 0.2 --threads 1
  taugate bench-lm --random --activation swiglu --active 0.2 --batch-sizes 1,8 --json lm.json
  taugate bench-lm runs/lm/base --adapter runs/lm/taugate --corpus prose --threads 1
  taugate bench-lm --random --active 0.2 --threads 1 --batch-sizes 1 --predictor 64 --margins 0,1,2
"""


def register(sub) -> None:
    p = add_command(
        sub,
        "bench-lm",
        help="decode speed of a language model: dense torch vs hard-gated torch vs compiled FFNs",
        description="Times one decode step (with the KV cache) of the base model in eager torch, "
        "of the hard-gated model in eager torch and of the compiled model (Numba FFN kernels), "
        "interleaved, at each batch size; reports tokens/s, the FFN's share of decode time, the "
        "FFN work cap (dense FFN multiply-adds / those still needed, the z pass counted dense), "
        "the end-to-end (Amdahl) cap and the share of each reached, and the FFN kernel alone "
        "against the project's own dense FFN kernel. Every path is checked to agree first.",
        examples=EXAMPLES,
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        help="base model: an own-GPT checkpoint or a Hugging Face directory",
    )
    p.add_argument(
        "--adapter", metavar="DIR", help="TauGate adapter of MODEL (taugate.lm.adapters)"
    )
    add_random_lm_args(p)
    p.add_argument(
        "--active", type=float_list("--active"), default=(0.2,), help="share(s) of FFN units firing"
    )
    p.add_argument(
        "--corpus",
        default=None,
        help="calibration text for MODEL: prose | code | quotes (default prose)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder holding text/ (default: $TAUGATE_DATA_DIR or the embedded corpus)",
    )
    p.add_argument("--batch-sizes", type=int_list("--batch-sizes"), default=(1, 8))
    p.add_argument(
        "--prompt-len",
        type=int_at_least("--prompt-len", 1),
        default=64,
        help="tokens in the KV cache",
    )
    p.add_argument(
        "--threads", type=int_at_least("--threads", 1), help="threads for torch, BLAS and Numba"
    )
    p.add_argument(
        "--rounds", type=int_at_least("--rounds", 3), default=15, help="timing samples per path"
    )
    p.add_argument(
        "--json", metavar="FILE", help="write rows and caps as strict JSON (checked before timing)"
    )
    p.add_argument("--force", action="store_true", help="overwrite --json FILE whoever wrote it")
    p.add_argument(
        "--predictor",
        metavar="RANK",
        type=int_at_least("--predictor", 1),
        help="also fit rank-RANK gate predictors and time the predicted (approximate) path",
    )
    p.add_argument(
        "--margins",
        type=_margins,
        default=(1.0, 2.0, 3.0),
        help="margins (prediction-error stds, or inf) for --predictor (default 1,2,3)",
    )
    p.set_defaults(func=run)


WRITTEN_BY = "taugate bench-lm"


def _margins(text: str) -> tuple[float, ...]:
    """Comma-separated margins: numbers or inf (torch-free: parsed at the command line)."""
    import argparse
    import math

    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers or inf, got {text!r}") from None
    if any(math.isnan(v) or v == -math.inf for v in vals):
        raise argparse.ArgumentTypeError(f"expected numbers or inf, got {text!r}")
    return vals


def run(args) -> int:
    from taugate.bench.machine import machine_info
    from taugate.bench.timing import TimingConfig
    from taugate.errors import TauGateError
    from taugate.io import atomic_write_json, check_owned_file
    from taugate.lm.bench import bench_lm
    from taugate.lm.report import print_lm_bench

    if args.random == (args.model is not None):
        raise TauGateError("give either MODEL or --random")
    if args.json:
        check_owned_file(args.json, WRITTEN_BY, force=args.force)
    results = []
    for what, base, gated, calib, text in _models(args):
        rows, info = bench_lm(base, gated, calib, batch_sizes=args.batch_sizes, prompt_len=args.prompt_len,
                              threads=args.threads, timing=TimingConfig(rounds=args.rounds),
                              prompt_tokens=text, predictor=args.predictor,
                              margins=args.margins)  # fmt: skip
        print_lm_bench(what, rows, info)
        results.append({"model": what, "rows": rows, **info})
    if args.json:
        atomic_write_json(args.json, {"written_by": WRITTEN_BY, "machine": machine_info(args.threads),
                                      "runs": results})  # fmt: skip
        print(f"wrote {args.json}")
    return 0


def _models(args):
    """(description, base, gated, calibration tokens, prompt text or None) per model to time."""
    import copy

    from taugate.errors import TauGateError

    if args.random:
        from taugate.lm.synthetic import random_lm

        for a in args.active:
            base, gated, calib = random_lm(d_model=args.d_model, d_ffn=args.ffn, n_layer=args.layers,
                                           activation=args.activation, active=a)  # fmt: skip
            what = (f"random GPT d_model {args.d_model}, FFN {args.ffn} ({args.activation}), "
                    f"{args.layers} layers, target active {a:g}")  # fmt: skip
            yield what, base, gated, calib, None  # random prompts, as the calibration
        return
    if not args.adapter:
        raise TauGateError("MODEL needs --adapter DIR (the gates to compile)")
    from taugate.data.text import load_text
    from taugate.lm.adapters import load_adapter_
    from taugate.lm.checkpoint import load_lm

    base = load_lm(args.model)
    gated = copy.deepcopy(base)
    load_adapter_(gated, args.adapter)
    text = load_text(args.corpus or "prose", args.data_dir, max_bytes=1 << 17).tokens()
    # calibration on the first 64 KiB, prompts drawn from the text after it
    yield f"{args.model} + {args.adapter}", base, gated, text[: 1 << 16], text[1 << 16 :]
