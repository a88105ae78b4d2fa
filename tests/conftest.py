"""Shared fixtures: tests never download, and real-data tests run only when a data dir is set."""

from __future__ import annotations

import os

import pytest

DATA_DIR = os.environ.get("TAUGATE_DATA_DIR")
needs_data = pytest.mark.skipif(
    not DATA_DIR or not os.path.isdir(DATA_DIR), reason="TAUGATE_DATA_DIR not set to the real data"
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("TAUGATE_OFFLINE", "1")
    monkeypatch.setenv("TAUGATE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
