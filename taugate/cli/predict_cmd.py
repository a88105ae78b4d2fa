"""``taugate predict``: run an artifact on an .npy file or on a data set, without torch."""

from __future__ import annotations

from taugate.cli.common import add_command, add_data_args, int_at_least, number

EXAMPLES = """examples:
  taugate predict m.taugate --input x.npy --output logits.npy --backend rowskip
  taugate predict m.taugate --dataset fashion-mnist --angle 45 --data-dir ../shared/data
  taugate predict m.taugate-bank --mode deg45 --input x.npy --output logits.npy
"""


def register(sub) -> None:
    p = add_command(
        sub,
        "predict",
        help="logits for an .npy input, or accuracy and active shares on a data set",
        description="Run a compiled artifact with the torch-free runtime. --input: an .npy file, or "
        "an .npz file holding exactly one array, of shape (N, features), (features,) for one row, "
        "or images (N, H, W) with H*W == features; float, integer and bool values are converted to "
        "float32, complex / datetime / timedelta / object / string arrays are refused, and NaN or "
        "inf (or a value beyond float32) is an error naming the row. --output is checked before "
        "any work and written atomically (through a symlink to its target; a directory, FIFO or "
        "device is refused); an existing file is replaced only with --force.",
        examples=EXAMPLES,
    )
    p.add_argument(
        "model", metavar="MODEL", help="artifact directory NAME.taugate, or a mode bank with --mode"
    )
    p.add_argument(
        "--mode",
        metavar="NAME",
        help="the mode to run of a mode bank NAME.taugate-bank (see `taugate bank`)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--input",
        metavar="X.npy",
        help="inputs (N, features), (features,) or (N, H, W): .npy, or .npz with one array",
    )
    src.add_argument("--dataset", help="evaluate on this data set's test split")
    p.add_argument(
        "--output", metavar="Y.npy", help="where to write the logits (needed with --input only)"
    )
    p.add_argument(
        "--angle",
        type=number("--angle"),
        default=None,
        help="mode of the data set (with --dataset only; default: the model's target angle, else 0)",
    )
    p.add_argument("--backend", default="auto", help=_backend_help())
    p.add_argument("--force", action="store_true", help="overwrite an existing --output file")
    p.add_argument("--threads", type=int_at_least("--threads", 1), help="Numba threads")
    p.add_argument("--batch-size", type=int_at_least("--batch-size", 1), default=1024)
    add_data_args(p)
    p.set_defaults(func=run)


def _backend_help() -> str:
    from taugate import backends as registry

    names = registry.names(runtime=True)
    return (f"{' | '.join(names)} | auto (default auto: rowskip for batches of up to 8 inputs; "
            "larger ones compact, or a row-skip path once an earlier call measured at most 20 %% "
            "of the hidden units active: CompiledModel.auto_backend). "
            + registry.help_lines(names))  # fmt: skip


def _check_flags(args) -> None:
    """Refuse flags the chosen input source would silently ignore."""
    from taugate.errors import TauGateError

    if args.input is not None:
        if not args.output:
            raise TauGateError("--input needs --output Y.npy")
        for flag, value in (("--angle", args.angle), ("--data-dir", args.data_dir)):
            if value is not None:
                raise TauGateError(f"{flag} applies to --dataset only, not to --input")
    elif args.output is not None:
        raise TauGateError("--output applies to --input only (--dataset prints the accuracy)")


def run(args) -> int:
    from taugate.io import atomic_write_with, check_owned_file
    from taugate.runtime import load

    _check_flags(args)
    if args.output:
        check_owned_file(args.output, None, force=args.force)  # before loading anything
    model = _load(args.model, args.mode, load)
    if args.input is not None:
        from taugate.inputs import load_inputs

        x = load_inputs(args.input, model.n_in)
        logits, counts = _batched(model, x, args)
        atomic_write_with(args.output, lambda tmp: _save_npy(tmp, logits))
        print(f"wrote {args.output}: logits {logits.shape} ({args.backend})")
        _print_active(model, counts)
        return 0
    from taugate.data import rotated_split
    from taugate.inputs import load_checked, target_angle

    prov = model.manifest.get("provenance")
    angle = args.angle if args.angle is not None else target_angle(prov)
    ds = load_checked(args.dataset, args.data_dir, model.n_in)
    x = rotated_split(ds, "test", angle)
    logits, counts = _batched(model, x, args)
    acc = float((logits.argmax(1) == ds.y_test).mean())
    print(
        f"{ds.name} test at {angle:g}°: accuracy {100 * acc:.2f}% on {len(x)} images ({args.backend})"
    )
    _print_active(model, counts)
    return 0


def _load(path, mode, load):
    """The artifact at ``path`` (no ``mode``), or mode ``mode`` of the mode bank there."""
    from taugate.bank.format import FORMAT, manifest_format, read_manifest
    from taugate.errors import TauGateError

    fmt = manifest_format(path)
    if mode is None:
        if fmt == FORMAT:
            modes = read_manifest(path)["modes"]
            names = ", ".join(map(str, modes)) if isinstance(modes, list) else "?"
            raise TauGateError(f"{path} is a mode bank; pass --mode NAME (one of: {names})")
        return load(path)
    if fmt is not None and fmt != FORMAT:
        raise TauGateError(
            f"--mode applies to a mode bank (NAME.taugate-bank), but {path} is a {fmt!r} "
            "directory (a single-model artifact?); run it without --mode"
        )
    from taugate.bank.model import load_bank

    return load_bank(path).select(mode)


def _batched(model, x, args):
    import numpy as np

    from taugate.errors import TauGateError

    if len(x) == 0:
        raise TauGateError("input is an empty batch (0 rows)")
    outs, counts = [], []
    for s in range(0, len(x), args.batch_size):
        outs.append(
            model.predict(x[s : s + args.batch_size], backend=args.backend, threads=args.threads)
        )
        counts.append(np.asarray(model.last_stats["active_counts"], dtype=np.float64).T)  # (b, L-1)
    return np.concatenate(outs), np.concatenate(counts)  # (N, C), (N, L-1)


def _print_active(model, counts) -> None:
    if counts.size == 0:
        return
    widths = model.original_sizes[1:-1]
    shares = ", ".join(f"{100 * counts[:, i].mean() / w:.1f}%" for i, w in enumerate(widths))
    print(f"active share per hidden layer (of the original units): {shares}")


def _save_npy(tmp, arr) -> None:
    import numpy as np

    with open(tmp, "wb") as f:
        np.save(f, arr)
