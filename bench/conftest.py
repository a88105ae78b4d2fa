"""Kernel benchmarks: skipped unless pytest runs with ``--benchmark-only`` (``make bench``), so they
never slow down or flake the unit run."""

import pytest


def pytest_collection_modifyitems(config, items):
    if config.getoption("--benchmark-only", default=False):
        return
    skip = pytest.mark.skip(
        reason="benchmarks run with `make bench` (pytest bench/ --benchmark-only)"
    )
    for item in items:
        item.add_marker(skip)
