"""``taugate bench``: time every backend of one model side by side."""

from __future__ import annotations

from taugate.cli.common import (
    add_command,
    add_data_args,
    add_predictor_args,
    float_list,
    int_at_least,
    int_list,
    name_list,
    number,
)

EXAMPLES = """examples:
  taugate bench m.taugate --batch-sizes 1,8,64,256 --json bench.json
  taugate bench --random 4096 --active 0.2 --batch-sizes 1 --threads 1
  taugate bench --random 512,1024,2048,4096 --active 0.1,0.2,0.3,0.5 --batch-sizes 1 --threads 1
  taugate bench --random 128 --active 0.5 --hidden-layers 2 --backends torch,dense,rowskip,scipy-sparse
  taugate bench m.taugate --threads 1 --backends torch,torch-compile,onnxruntime,compact,rowskip
  taugate bench m.taugate --threads 1 --batch-sizes 1 --backends rowskip,rowskip-predicted \
      --predictor 16 --margins 1,2,3,inf
"""


def _backend_help() -> str:
    from taugate import backends as registry

    usable = registry.names(needs_module=False)
    default = [n for n in usable if registry.get(n).default]
    return (f"comma list of backends (default: {','.join(default)}, those that can run here). "
            + registry.help_lines(usable))  # fmt: skip


def register(sub) -> None:
    p = add_command(
        sub,
        "bench",
        help="side-by-side latency of every backend, speedups, work cap",
        description="Warm up (Numba compile time reported separately), then time every backend on "
        "the same inputs, interleaved, and report median latency, spread (IQR), speedup vs torch "
        "(eager, dense matrices with masks) and vs dense, the work cap (dense multiply-adds / "
        "row-skip multiply-adds needed for these inputs) and the share of the cap reached.",
        examples=EXAMPLES,
    )
    p.add_argument("model", metavar="MODEL", nargs="?", help="artifact directory (or use --random)")
    p.add_argument(
        "--random",
        type=int_list("--random"),
        metavar="WIDTH[,WIDTH...]",
        help="benchmark random gated 784-WIDTH-...-10 models instead (a list scans widths)",
    )
    p.add_argument(
        "--active",
        type=float_list("--active"),
        metavar="P[,P...]",
        help="target active share(s) of each hidden layer with --random (default 0.2)",
    )
    p.add_argument(
        "--hidden-layers",
        type=int_at_least("--hidden-layers", 1),
        help="hidden layers of the --random models (default 2)",
    )
    p.add_argument("--batch-sizes", type=int_list("--batch-sizes"), default=(1, 8, 64, 256))
    p.add_argument("--backends", type=name_list, default=None, help=_backend_help())
    p.add_argument(
        "--threads",
        type=int_at_least("--threads", 1),
        help="threads for Numba, torch, BLAS and onnxruntime (intra- and inter-op)",
    )
    p.add_argument(
        "--inputs",
        metavar="X.npy",
        help="inputs to time with: .npy, or .npz with one array; (N, features), (features,) or "
        "(N, H, W); same dtype rules as predict (default: the model's test data; with --random: "
        "standard normal)",
    )
    p.add_argument(
        "--dataset", help="data set for the inputs (MODEL only; default: the model's own)"
    )
    p.add_argument(
        "--angle",
        type=number("--angle"),
        help="mode of the --dataset inputs (MODEL only; default: the model's)",
    )
    p.add_argument(
        "--rounds", type=int_at_least("--rounds", 3), default=21, help="timing samples per backend"
    )
    p.add_argument(
        "--json",
        metavar="FILE",
        help="write rows and machine info as strict JSON (missing ratios are null); the path is "
        "checked before timing, and a file that taugate bench did not write is refused",
    )
    p.add_argument("--force", action="store_true", help="overwrite --json FILE whoever wrote it")
    add_predictor_args(
        p,
        what="2000 inputs of the model's data set, train split (with --random: "
        "standard normal inputs of another seed); implies rowskip-predicted",
    )
    add_data_args(p)
    p.set_defaults(func=run)


def _inputs(args, model):
    import numpy as np

    from taugate.errors import TauGateError

    if args.inputs:
        from taugate.inputs import load_inputs

        return load_inputs(args.inputs, model.n_in), f"file {args.inputs}", None
    if args.random is not None:
        x = np.random.default_rng(1).standard_normal((1024, model.n_in)).astype(np.float32)
        return x, "standard normal (the calibration distribution)", None
    from taugate.data import rotated_split
    from taugate.inputs import load_checked, target_angle

    prov = model.manifest.get("provenance") or {}
    name = args.dataset or prov.get("dataset")
    if not name:
        raise TauGateError(
            f"{args.model}: no dataset in its provenance; pass --inputs or --dataset"
        )
    angle = args.angle if args.angle is not None else target_angle(prov)
    ds = load_checked(name, args.data_dir, model.n_in, quiet=True)
    x, y = rotated_split(ds, "test", angle)[:1024], ds.y_test[:1024]
    return x, f"{ds.name} test at {angle:g}°", y


def _fit_predictor(args, model) -> str:
    """With --predictor RANK, fit one to ``model`` (replacing a stored one); say on what."""
    import numpy as np

    from taugate.mlp_predictor import fit_mlp_predictor
    from taugate.predictor import PredictorConfig

    cfg = PredictorConfig(rank=args.predictor)
    if args.random is not None:
        x = np.random.default_rng(2).standard_normal((2000, model.n_in)).astype(np.float32)
        what = "2000 standard normal inputs (seed 2)"
    else:
        from taugate.data import rotated_split
        from taugate.inputs import load_checked, target_angle

        prov = model.manifest.get("provenance") or {}
        name = args.dataset or prov.get("dataset")
        if not name:
            from taugate.errors import TauGateError

            raise TauGateError(f"{args.model}: no dataset in its provenance to fit --predictor "
                               "on; pass --dataset")  # fmt: skip
        angle = args.angle if args.angle is not None else target_angle(prov)
        ds = load_checked(name, args.data_dir, model.n_in, quiet=True)
        x = rotated_split(ds, "train", angle)[:2000]
        what = f"{len(x)} {ds.name} train inputs at {angle:g}°"
    model.predictor = fit_mlp_predictor(model.spec, x, cfg)
    return f"rank {args.predictor} on {what}"


def _check_flags(args) -> None:
    """Refuse flags that the chosen model source or input source would silently ignore."""
    from taugate.errors import TauGateError

    if (args.model is None) == (args.random is None):
        raise TauGateError("give either MODEL or --random WIDTH")
    data_flags = (
        ("--dataset", args.dataset),
        ("--angle", args.angle),
        ("--data-dir", args.data_dir),
    )
    if args.random is not None:
        for flag, value in data_flags:
            if value is not None:
                raise TauGateError(
                    f"{flag} does not apply to --random models (they are timed on standard "
                    "normal inputs, or on --inputs X.npy)"
                )
    else:
        for flag, value in (("--active", args.active), ("--hidden-layers", args.hidden_layers)):
            if value is not None:
                raise TauGateError(f"{flag} applies to --random only, not to MODEL")
    if args.inputs is not None:
        for flag, value in data_flags:
            if value is not None:
                raise TauGateError(f"{flag} does not apply with --inputs (the file is the input)")


def _models(args):
    """(description, model) pairs: one artifact, or every --random width x --active share."""
    from taugate.errors import TauGateError
    from taugate.runtime import load, random_model

    if args.model is not None:
        m = load(args.model)
        sizes = f"{'-'.join(map(str, m.original_sizes))} -> {'-'.join(map(str, m.sizes))}"
        return [(f"{args.model} ({sizes})", {}, m)]
    out = []
    active = args.active or (0.2,)
    for a in active:
        if not 0 <= a <= 1:
            raise TauGateError(f"--active must be a share in [0, 1], got {a:g}")
    for w in args.random:
        for a in active:
            sizes = [784] + [w] * (args.hidden_layers or 2) + [10]
            what = f"random {'-'.join(map(str, sizes))}, target active {a:g}"
            out.append((what, {"width": w, "target_active": a}, random_model(sizes, a, seed=0)))
    return out


def run(args) -> int:
    from taugate import backends as registry
    from taugate.bench.machine import machine_info
    from taugate.bench.predicted import predicted_table
    from taugate.bench.run import bench_model
    from taugate.bench.tables import pivot_table, rows_table
    from taugate.bench.timing import TimingConfig
    from taugate.io import atomic_write_json, check_owned_file

    _check_flags(args)
    backends, notes = registry.select(args.backends, needs_module=False)
    if args.predictor is not None and "rowskip-predicted" not in backends:
        backends = (*backends, "rowskip-predicted")
    if args.json:
        check_owned_file(args.json, WRITTEN_BY, force=args.force)  # before the benchmark
    for n in notes:
        print(f"note: {n}")
    models = _models(args)
    all_rows, results = [], []
    for what, tags, model in models:
        x, source, labels = _inputs(args, model)
        if args.predictor is not None:
            print(f"predictor (approximate): fitted, {_fit_predictor(args, model)}")
        rows, info = bench_model(
            model, x, args.batch_sizes, backends, args.threads, TimingConfig(rounds=args.rounds),
            margins=args.margins, labels=labels,
        )  # fmt: skip
        rows = [{**tags, **r} for r in rows]
        all_rows += rows
        results.append({"model": what, "inputs": source, **info, "rows": rows})
        print(f"model: {what}; inputs: {source}")
        print(f"Numba compile / cache load: {info['compile_seconds']:.2f} s (not timed)")
        print(rows_table(rows).text())
    machine = machine_info(args.threads)
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads, "
          f"BLAS {machine['blas']}\n")  # fmt: skip
    print(pivot_table(all_rows, "Median latency per call, and row-skip's speedup").markdown())
    if any("quality" in r for r in all_rows):
        print()
        print(predicted_table(all_rows, "Predicted gates (APPROXIMATE): speed against exact "
                              "row-skip, and what they cost").markdown())  # fmt: skip
    if args.json:
        payload = results[0] if len(results) == 1 else {"runs": results, "rows": all_rows}
        atomic_write_json(args.json, {"written_by": WRITTEN_BY, "machine": machine, **payload})
        print(f"wrote {args.json}")
    return 0


WRITTEN_BY = "taugate bench"
