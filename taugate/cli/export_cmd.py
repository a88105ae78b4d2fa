"""``taugate export``: a compiled artifact -> a standard ONNX file (needs the ``[onnx]`` extra)."""

from __future__ import annotations

import argparse

from taugate.cli.common import add_command, int_at_least

EXAMPLES = """examples:
  taugate export fmnist.taugate --out fmnist.onnx
  taugate export fmnist.taugate --out fmnist.onnx --force       # replace a file of any origin
  taugate export fmnist.taugate --out fmnist.onnx --no-verify   # skip the onnxruntime check
"""


def _opset(text: str) -> int:
    v = int_at_least("--opset", 17)(text)
    if v > 21:
        raise argparse.ArgumentTypeError(f"--opset must be from 17 to 21, got {text!r}")
    return v


def register(sub) -> None:
    p = add_command(
        sub,
        "export",
        help="write a compiled artifact as an ONNX graph (opset 17, dynamic batch) for onnxruntime",
        description="Export the compacted subnetwork of an artifact as a standard ONNX graph: "
        "Gemm per layer, hard gates as Greater + Where, a dynamic batch axis, the manifest's "
        "provenance and compile record in the metadata. Built from the artifact's arrays with "
        "the onnx package (no torch), checked with onnx.checker, written atomically. Unless "
        "--no-verify, onnxruntime then runs the file on random inputs and the result is compared "
        "with the runtime's logits.",
        examples=EXAMPLES,
    )
    p.add_argument("model", metavar="MODEL", help="artifact directory NAME.taugate")
    p.add_argument("--out", required=True, metavar="FILE.onnx", help="ONNX file to write")
    p.add_argument("--opset", type=_opset, default=17, help="ai.onnx opset, 17 to 21 (default 17)")
    p.add_argument(
        "--force", action="store_true", help="replace --out even if taugate did not write it"
    )
    p.add_argument("--no-verify", action="store_true", help="do not check the file in onnxruntime")
    p.set_defaults(func=run)


def run(args) -> int:
    from taugate.export import check_onnx_destination, require_onnx
    from taugate.runtime import load

    require_onnx()
    check_onnx_destination(args.out, force=args.force)  # before loading anything
    model = load(args.model)
    path = model.export_onnx(args.out, opset=args.opset, force=args.force)
    sizes = "-".join(map(str, model.sizes))
    size_kb = path.stat().st_size / 1024
    print(f"wrote {path}: {sizes}, opset {args.opset}, dynamic batch, {size_kb:,.0f} KiB")
    if not args.no_verify:
        from taugate.export_check import verify

        res = verify(model, path)
        if res is None:
            print("not verified: onnxruntime is not installed (pip install 'taugate[onnx]')")
        else:
            print(f"onnxruntime {res['onnxruntime']}: max |logit diff| vs the runtime "
                  f"{res['max_abs_diff']:.2e} on {res['rows']} random inputs (batch 1 and "
                  f"{res['rows'] - 1}), argmax agrees on {100 * res['argmax_agree']:.1f} %")  # fmt: skip
    return 0
