"""``taugate bench-plot``: the figure of a ``taugate bench --json`` file (``taugate.bench.plot``)."""

from __future__ import annotations

from taugate.cli.common import add_command

EXAMPLES = """examples:
  taugate bench-plot runs/bench-batched.json --out runs/bench-batched
  taugate bench-plot runs/bench-wide-t1.json --out runs/wide --candidate rowskip --force
"""


def register(sub) -> None:
    p = add_command(
        sub, "bench-plot",
        help="draw a taugate bench --json file: time per input vs batch, and the crossover",
        description="Read the rows of a `taugate bench --json` file and draw OUT.png and OUT.pdf: "
        "the median time per input against the batch size, one line per backend and one panel "
        "per (width, active share) of a --random run (one panel for an artifact). Each panel's "
        "title gives the batch sizes at which --candidate beats both compact and onnxruntime "
        "(so where it stops paying), also printed.",
        examples=EXAMPLES,
    )  # fmt: skip
    p.add_argument("json", metavar="JSON", help="a file written by taugate bench --json")
    p.add_argument("--out", required=True, metavar="STEM", help="writes STEM.png and STEM.pdf")
    p.add_argument("--candidate", default="rowskip-batched",
                   help="the backend whose crossover is reported (default rowskip-batched)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace existing STEM.png / STEM.pdf")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from taugate.bench.plot import plot_bench, said
    from taugate.errors import TauGateError
    from taugate.io import check_owned_file

    stem = Path(args.out)
    for ext in ("png", "pdf"):  # a figure cannot be marked: an existing one needs --force
        check_owned_file(stem.parent / f"{stem.name}.{ext}", None, force=args.force)
    try:
        data = json.loads(Path(args.json).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TauGateError(f"{args.json}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise TauGateError(f"{args.json}: not a JSON file ({type(e).__name__})") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    need = ("backend", "batch", "median_ms")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and all(k in r for k in need)
                                             for r in rows):  # fmt: skip
        raise TauGateError(
            f"{args.json}: not a taugate bench --json file (needs rows with {', '.join(need)})"
        )
    found = plot_bench(rows, stem, candidate=args.candidate)
    for title, w in found.items():
        print(f"{title}: {args.candidate} {said(w)} than compact and onnxruntime")
    print(f"wrote {stem}.png and {stem}.pdf")
    return 0
