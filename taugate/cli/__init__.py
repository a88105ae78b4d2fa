"""``taugate`` command line: subcommands parse arguments, call the library and print; no logic here."""

from __future__ import annotations

import argparse
import os
import sys

from taugate import __version__
from taugate.errors import TauGateError

EPILOG = """examples:
  taugate reproduce --dataset mnist-10k --data-dir ../shared/data
  taugate reproduce --dataset fashion-mnist --seeds 1 --out runs/fmnist
  taugate reproduce-lm --data-dir ../shared/data --out runs/lm-study
  taugate compile runs/x/models/seed0/taugate.safetensors --out m.taugate
  taugate export m.taugate --out m.onnx
  taugate bench m.taugate --threads 1
  taugate datasets --data-dir ../shared/data
"""


def build_parser() -> argparse.ArgumentParser:
    from taugate.cli import (
        bank_cmd,
        bench_bank_cmd,
        bench_cmd,
        bench_lm_cmd,
        bench_plot_cmd,
        compile_cmd,
        datasets,
        export_cmd,
        generate_cmd,
        predict_cmd,
        reproduce,
        reproduce_lm_cmd,
        sweep_cmd,
        sweep_lm_cmd,
    )

    parser = argparse.ArgumentParser(
        prog="taugate",
        description="Learned hard activation gates: train, compile, run and benchmark.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"taugate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in (
        reproduce,
        reproduce_lm_cmd,
        compile_cmd,
        bank_cmd,
        bench_bank_cmd,
        export_cmd,
        predict_cmd,
        bench_cmd,
        bench_plot_cmd,
        sweep_cmd,
        sweep_lm_cmd,
        bench_lm_cmd,
        generate_cmd,
        datasets,
    ):
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows up here rather than at interpreter exit
    except BrokenPipeError:
        # the reader of stdout went away (`taugate predict ... | head -1`): stop quietly, as the
        # Python docs recommend (docs.python.org/3/library/signal.html#note-on-sigpipe)
        _stdout_to_devnull()
        return 1


# OpenBLAS's idle workers busy-wait 2^28 cycles (~0.1 s) after each call before they sleep; on a
# 2-core machine that steals a core from whatever runs next (the next backend in an interleaved
# benchmark, a Numba parallel region). 2^22 cycles (~2 ms) keeps back-to-back calls fast. Read
# once, when numpy loads OpenBLAS: so set here, before any subcommand imports numpy.
OPENBLAS_THREAD_TIMEOUT = "22"


def _main(argv: list[str] | None) -> int:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TauGateError as e:
        print(f"taugate: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("taugate: interrupted; files already written are complete", file=sys.stderr)
        return 130


def _stdout_to_devnull() -> None:
    """Point stdout's descriptor at devnull so the exit-time flush cannot raise again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a test harness: nothing to do
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
