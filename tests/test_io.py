"""Atomic writes: complete files only, normal permissions, clear errors."""

import os
import stat

import pytest

from taugate.errors import TauGateError
from taugate.io import atomic_write_json, atomic_write_text, atomic_write_with


def test_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "hi")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == "hi"


def test_failed_write_leaves_nothing(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"old": 1})

    def boom(tmp):
        with open(tmp, "w") as f:
            f.write("{half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        atomic_write_with(tmp_path / "r.json", boom)
    assert (tmp_path / "r.json").read_text().strip().startswith("{")
    assert '"old": 1' in (tmp_path / "r.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_unwritable_parent(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(TauGateError, match="not writable"):
        atomic_write_text(tmp_path / "f" / "a.txt", "x")
