"""Argument types shared by the subcommands: each bad value gets a one-line message naming it."""

from __future__ import annotations

import argparse
import math


def add_command(sub, name: str, help: str, description: str, examples: str | None = None):
    """A subcommand whose ``--help`` ends with its examples, printed as written."""
    return sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def number(what: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{what} must be finite, got {text!r}")
        return v

    return parse


def nonneg_number(what: str):
    base = number(what)

    def parse(text: str) -> float:
        v = base(text)
        if v < 0:
            raise argparse.ArgumentTypeError(f"{what} must be >= 0, got {text!r}")
        return v

    return parse


def positive_number(what: str):
    base = number(what)

    def parse(text: str) -> float:
        v = base(text)
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be > 0, got {text!r}")
        return v

    return parse


def int_at_least(what: str, lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{what} must be >= {lo}, got {text!r}")
        return v

    return parse


def list_of(what: str, one):
    """Parse ``a,b,c`` with ``one`` per item; an empty list or an empty item is an error."""

    def parse(text: str) -> tuple:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"{what} must be a comma-separated list, got {text!r}")
        return tuple(one(p) for p in parts)

    return parse


def int_list(what: str, lo: int = 1):
    return list_of(what, int_at_least(what, lo))


def float_list(what: str):
    return list_of(what, number(what))


def name_list(text: str) -> tuple[str, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return tuple(parts)


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder holding mnist/ and fashion-mnist/ IDX files (default: $TAUGATE_DATA_DIR, "
        "then the user cache, then a download, then the built-in 8x8 digits)",
    )


def add_random_lm_args(p) -> None:
    """``--random`` and the shape of the random own GPT it builds (``taugate.lm.synthetic``)."""
    p.add_argument("--random", action="store_true", help="a random own GPT instead of MODEL")
    p.add_argument("--d-model", type=int_at_least("--d-model", 8), default=1024)
    p.add_argument("--ffn", type=int_at_least("--ffn", 1), default=4096, help="FFN width")
    p.add_argument("--layers", type=int_at_least("--layers", 1), default=4)
    p.add_argument("--activation", default="relu", help="relu | gelu | gelu-tanh | silu | swiglu")


def margin(text: str) -> float:
    """A predictor margin: a real number or 'inf' (every unit computed: exact)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'inf', got {text!r}") from None
    if math.isnan(v) or v == -math.inf:
        raise argparse.ArgumentTypeError(f"must be a number or 'inf', got {text!r}")
    return v


def margin_list(flag: str):
    """A comma list of margins (each a number or 'inf') for ``flag``."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            items = tuple(margin(t.strip()) for t in text.split(","))
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"{flag}: {e}") from None
        return items

    return parse


def add_predictor_args(p, *, what: str) -> None:
    """``--predictor RANK`` and ``--margins M[,M...]`` of the commands that time the approximate
    rowskip-predicted backend; ``what`` says what the predictor is fitted on."""
    p.add_argument(
        "--predictor",
        type=int_at_least("--predictor", 1),
        metavar="RANK",
        help=f"fit a low-rank predictor of rank RANK per hidden layer on {what} and time the "
        "APPROXIMATE rowskip-predicted backend beside the exact ones, with its recall, "
        "top-1 agreement and accuracy change",
    )
    p.add_argument(
        "--margins",
        type=margin_list("--margins"),
        metavar="M[,M...]",
        help="predictor margins to time, in stds of each unit's prediction error ('inf': every "
        "unit computed, exact; default: the predictor's own, 2 when fitted here)",
    )


def add_executor_args(p) -> None:
    """``--executor local|ray``, ``--ray-address``, ``--workers`` (see taugate.executor)."""
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local (default): every task in this process; ray: the training tasks on Ray "
        "(needs taugate[ray]), timing afterwards on this machine alone",
    )
    p.add_argument(
        "--ray-address",
        metavar="auto|HOST:PORT",
        help="with --executor ray: join this running cluster (auto: the one `ray start` made "
        "here); default: start a local Ray",
    )
    p.add_argument(
        "--workers",
        type=int_at_least("--workers", 1),
        help="with --executor ray and no --ray-address: CPUs of the local Ray (default all)",
    )
    p.add_argument(
        "--task-threads",
        type=int_at_least("--task-threads", 1),
        help="with --executor ray: torch threads (and reserved CPUs) of each training task "
        "(default: this machine's torch threads, so results equal a local run's; fewer runs more "
        "tasks at once, with other float rounding)",
    )


def executor_from(args):
    """The :class:`taugate.executor.ExecutorConfig` of the parsed executor flags."""
    from taugate.executor import ExecutorConfig

    return ExecutorConfig(args.executor, args.ray_address, args.workers, args.task_threads)
