"""``taugate datasets``: which data sets exist and where each would be loaded from."""

from __future__ import annotations

from taugate.cli.common import add_command, add_data_args


def register(sub) -> None:
    p = add_command(
        sub,
        "datasets",
        help="list the data sets and load each to show its source and split",
        description="Load every known data set (downloads disabled) and print its source and split.",
    )
    add_data_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from taugate.data import list_datasets, load_dataset

    for name in list_datasets():
        ds = load_dataset(name, args.data_dir, download=False, quiet=True)
        print(f"{name:14s} {len(ds.y_train):6d}/{len(ds.y_test):<6d} {ds.split}  <- {ds.source}")
    return 0
