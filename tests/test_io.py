"""Atomic writes: complete files only, normal permissions, clear errors."""

import json
import os
import stat

import pytest

from taugate.errors import TauGateError
from taugate.io import (
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
    check_output_file,
    ensure_writable_dir,
)


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


def test_unwritable_parent_message_says_what_went_wrong(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    with pytest.raises(TauGateError, match=r"cannot create output directory .*f/sub .*f is not a"):
        ensure_writable_dir(tmp_path / "f" / "sub")

    def no_files_here(*a, **k):  # what /proc does: the folder exists but takes no new files
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr("taugate.io.tempfile.mkstemp", no_files_here)
    with pytest.raises(TauGateError) as e:
        ensure_writable_dir(tmp_path)
    assert str(e.value) == (
        f"output directory {tmp_path} is not writable: cannot create a file there "
        "(No such file or directory)"
    )


def test_json_is_strict_nan_and_inf_become_null(tmp_path):
    obj = {"a": float("nan"), "b": [1.5, float("inf"), {"c": -float("inf")}], "d": (2, "x")}
    path = atomic_write_json(tmp_path / "r.json", obj)

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    back = json.loads(path.read_text(), parse_constant=refuse)
    assert back == {"a": None, "b": [1.5, None, {"c": None}], "d": [2, "x"]}


def test_json_that_cannot_be_encoded_fails_before_writing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "r.json", {"a": object()})
    assert list(tmp_path.iterdir()) == []


def test_a_fifo_is_refused_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for write in (lambda p: atomic_write_text(p, "x"), check_output_file):
        with pytest.raises(TauGateError, match="not a regular file.*refusing to replace"):
            write(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_directory_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "d")
    for name in ("d", "link"):
        for write in (lambda p: atomic_write_json(p, {}), check_output_file):
            with pytest.raises(TauGateError, match=f"output path .*{name} is a directory"):
                write(tmp_path / name)
    assert list((tmp_path / "d").iterdir()) == []


def test_writes_go_through_a_symlink(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "r.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert check_output_file(link) == target
    atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"

    def boom(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):  # still all or nothing, in the target's folder
        atomic_write_with(link, boom)
    assert target.read_text() == "new" and link.is_symlink()
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["r.txt"]
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "real" / "new.txt")
    atomic_write_text(dangling, "made")  # like open(path, "w"): the target is created
    assert dangling.is_symlink() and (tmp_path / "real" / "new.txt").read_text() == "made"


def test_check_output_file_creates_nothing(tmp_path):
    assert check_output_file(tmp_path / "a" / "b" / "y.npy") == tmp_path / "a" / "b" / "y.npy"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(TauGateError, match=r"cannot write .*f/sub/y.npy .*f is not a directory"):
        check_output_file(tmp_path / "f" / "sub" / "y.npy")
