"""No command loses a user's files, for the commands that write a folder: every output target is
checked before any work.

For each of ``reproduce --out DIR`` and ``sweep --out DIR`` this checks

- a new path is written;
- a target holding a user's files that the command did not write (a non-empty folder without the
  command's marker, or a file as --out) is refused with exit 2 and one line ``taugate: error: ...``
  naming the path and mentioning --force, before any expensive work (the training entry point is
  replaced by one that raises), leaving the user's files byte-for-byte unchanged and no temp file
  behind;
- with ``--force`` the command runs, and the user's files that are not outputs of the command
  survive;
- a target the command wrote itself is accepted without --force, as each command documents it:
  reproduce continues a folder holding its ``config.json`` but needs --force once it holds
  ``results.csv``; sweep resumes;
- a reproduce folder is not a sweep's and vice versa.

The commands that write one file are checked in tests/test_outputs_files.py.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from taugate.cli import main

try:
    from outputs_helpers import _assert_refused, _error, _fill, _forbid, _leftovers, _snapshot
except ImportError:  # tests/ imported as a package
    from tests.outputs_helpers import (
        _assert_refused,
        _error,
        _fill,
        _forbid,
        _leftovers,
        _snapshot,
    )

REPRODUCE = ["reproduce", "--dataset", "digits", "--hidden", "8", "--seeds", "1", "--methods",
             "frozen", "--no-overlap", "--limit-train", "300", "--limit-test", "100",
             "--no-paper-steps", "-q", "--device", "cpu"]  # fmt: skip
SWEEP = ["sweep", "--dataset", "digits", "--widths", "8", "--lambdas", "0", "--seeds", "1",
         "--batch-sizes", "1", "--rounds", "3", "--foundation-epochs", "1", "--limit-test", "60",
         "--no-paper-steps", "--backends", "dense,rowskip", "-q"]  # fmt: skip

# what a user may have left in a folder given as --out (none of it written by the command)
USER_FOLDERS = {
    "sweep.csv": {"sweep.csv": "width,lambda\n8,0\n"},
    "results.csv": {"results.csv": "method,acc\nmine,0.99\n"},
    "notes.txt": {"notes.txt": "keep me\n"},
    "nested": {"data/raw.bin": "\x00\x01binary", "README": "mine"},
}


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """The conftest's offline settings, also for the module-scoped runs below."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAUGATE_OFFLINE", "1")
        mp.setenv("TAUGATE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


# ------------------------------------------------------------------------------------ reproduce

REPRO_WORK = (
    "taugate.reproduce.run.load_study_data",
    "taugate.reproduce.run.run_seed",
    "taugate.device.select_device",
)


def _results(run: Path) -> list[dict]:
    """results.csv without its timing columns."""
    with open(run / "results.csv", newline="") as f:
        return [
            {k: v for k, v in r.items() if not k.endswith("_seconds")} for r in csv.DictReader(f)
        ]


def _reproduce(out, *extra) -> int:
    return main([*REPRODUCE, "--out", str(out), *map(str, extra)])


@pytest.fixture(scope="module")
def repro_run(tmp_path_factory, offline):
    """A finished reproduce run, into a path that did not exist (nor its parent)."""
    out = tmp_path_factory.mktemp("repro") / "new" / "run"
    assert _reproduce(out) == 0
    return out


def test_reproduce_writes_a_new_folder(repro_run):
    for rel in ("config.json", "results.csv", "tables/main.md", "figures/accuracy.png"):
        assert (repro_run / rel).stat().st_size > 0, rel
    meta = json.loads((repro_run / "config.json").read_text())
    assert isinstance(meta["config"], dict) and "data" in meta  # the marker of its folders
    assert not _leftovers(repro_run)


@pytest.mark.parametrize(
    "files",
    [*USER_FOLDERS.values(), {"config.json": '{"lr": 0.1}\n'}],  # a user's config.json
    ids=[*USER_FOLDERS, "user-config.json"],
)
def test_reproduce_refuses_a_users_folder(tmp_path, capsys, monkeypatch, files):
    _forbid(monkeypatch, *REPRO_WORK)
    out = _fill(tmp_path / "mine", files)
    before = _snapshot(tmp_path)
    _assert_refused(
        capsys, _reproduce(out), out, "was not written by taugate reproduce", "config.json"
    )
    assert _snapshot(tmp_path) == before
    assert not _leftovers(tmp_path)


def test_reproduce_refuses_a_file_as_out_even_with_force(tmp_path, capsys, monkeypatch):
    _forbid(monkeypatch, *REPRO_WORK)
    out = tmp_path / "run"
    out.write_text("a user's file\n")
    assert _reproduce(out, "--force") == 2
    err = _error(capsys)
    assert str(out) in err and "not a directory" in err, err
    assert out.read_text() == "a user's file\n" and not _leftovers(tmp_path)


def test_reproduce_force_writes_into_a_users_folder(tmp_path, capsys):
    out = _fill(tmp_path / "mine", {"notes.txt": "keep me\n", "data/raw.bin": "\x00mine",
                                    "results.csv": "method,acc\nmine,0.99\n"})  # fmt: skip
    assert _reproduce(out, "--force") == 0
    assert (out / "notes.txt").read_text() == "keep me\n"  # not a file the study writes
    assert (out / "data/raw.bin").read_text() == "\x00mine"
    assert (out / "results.csv").read_text().startswith("seed,method,")  # the study's (documented)
    assert "mine,0.99" not in (out / "results.csv").read_text()
    assert json.loads((out / "config.json").read_text())["config"]["hidden"] == [8]
    assert not _leftovers(tmp_path)


def test_reproduce_refuses_its_own_finished_run_without_force(repro_run, capsys, monkeypatch):
    # documented in taugate/reproduce/run.py: a folder it wrote that has no results.csv yet
    _forbid(monkeypatch, *REPRO_WORK)
    before = _snapshot(repro_run)
    _assert_refused(capsys, _reproduce(repro_run), repro_run, "already holds results.csv")
    assert _snapshot(repro_run) == before
    assert not _leftovers(repro_run)


def test_reproduce_continues_its_own_interrupted_run_without_force(tmp_path, capsys, monkeypatch):
    import taugate.reproduce.run as run_mod

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    with monkeypatch.context() as mp:
        mp.setattr(run_mod, "run_seed", interrupted)
        assert _reproduce(out) == 130
    assert (out / "config.json").is_file() and not (out / "results.csv").exists()
    (out / "notes.txt").write_text("added by the user\n")
    assert _reproduce(out) == 0  # its own folder (config.json), no results yet: no --force
    assert (out / "results.csv").stat().st_size > 0
    assert (out / "notes.txt").read_text() == "added by the user\n"


def test_reproduce_force_replaces_its_own_results(repro_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(repro_run, out)
    (out / "results.csv").write_text("stale\n")
    (out / "notes.txt").write_text("added by the user\n")
    assert _reproduce(out, "--force") == 0
    assert _results(out) == _results(repro_run)  # rewritten, to the same (deterministic) rows
    assert (out / "notes.txt").read_text() == "added by the user\n"
    assert not _leftovers(tmp_path)


def test_reproduce_refuses_a_sweep_folder(sweep_run, tmp_path, capsys, monkeypatch):
    _forbid(monkeypatch, *REPRO_WORK)
    out = tmp_path / "sweep"
    shutil.copytree(sweep_run, out)
    before = _snapshot(out)
    for extra in ([], ["--no-save-models"]):
        _assert_refused(
            capsys, _reproduce(out, *extra), out, "was not written by taugate reproduce"
        )
    assert _snapshot(out) == before and not _leftovers(tmp_path)


# ------------------------------------------------------------------------------------ sweep

SWEEP_WORK = ("taugate.sweep.cells.CellRunner.__init__", "taugate.sweep.cells.CellRunner.run")


def _sweep(out, *extra) -> int:
    return main([*SWEEP, "--out", str(out), *map(str, extra)])


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory, offline):
    out = tmp_path_factory.mktemp("sweep") / "new" / "sweep"
    assert _sweep(out) == 0
    return out


def test_sweep_writes_a_new_folder(sweep_run):
    for rel in ("sweep_config.json", "sweep.csv", "sweep.json", "summary.md"):
        assert (sweep_run / rel).stat().st_size > 0, rel
    assert isinstance(json.loads((sweep_run / "sweep_config.json").read_text())["config"], dict)
    assert len(list((sweep_run / "cells").glob("*.json"))) == 1
    assert not _leftovers(sweep_run)


@pytest.mark.parametrize(
    "files",
    [*USER_FOLDERS.values(), {"sweep_config.json": "[1, 2]\n"}],  # a user's sweep_config.json
    ids=[*USER_FOLDERS, "user-sweep_config.json"],
)
@pytest.mark.parametrize("extra", [[], ["--resume"]], ids=["plain", "resume"])
def test_sweep_refuses_a_users_folder(tmp_path, capsys, monkeypatch, files, extra):
    _forbid(monkeypatch, *SWEEP_WORK)
    out = _fill(tmp_path / "mine", files)
    before = _snapshot(tmp_path)
    _assert_refused(
        capsys, _sweep(out, *extra), out, "was not written by taugate sweep", "sweep_config.json"
    )
    assert _snapshot(tmp_path) == before
    assert not _leftovers(tmp_path)


def test_sweep_refuses_a_file_as_out_even_with_force(tmp_path, capsys, monkeypatch):
    _forbid(monkeypatch, *SWEEP_WORK)
    out = tmp_path / "sweep"
    out.write_text("a user's file\n")
    assert _sweep(out, "--force") == 2
    err = _error(capsys)
    assert str(out) in err and "not a directory" in err, err
    assert out.read_text() == "a user's file\n" and not _leftovers(tmp_path)


def test_sweep_force_starts_over_in_a_users_folder(tmp_path, capsys):
    out = _fill(tmp_path / "mine", {"notes.txt": "keep me\n", "data/raw.bin": "\x00mine",
                                    "sweep.csv": "mine\n", "cells/old.json": "{}"})  # fmt: skip
    assert _sweep(out, "--force") == 0
    assert (out / "notes.txt").read_text() == "keep me\n"  # not a file the sweep writes
    assert (out / "data/raw.bin").read_text() == "\x00mine"
    assert (out / "sweep.csv").read_text().startswith("width,lambda,")
    assert not (out / "cells/old.json").exists()  # documented: --force deletes cells/ and co.
    assert len(list((out / "cells").glob("*.json"))) == 1
    assert not _leftovers(tmp_path)


def test_sweep_resumes_its_own_folder_without_force(sweep_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    shutil.copytree(sweep_run, out)
    (out / "notes.txt").write_text("added by the user\n")
    cells = _snapshot(out / "cells")
    monkeypatch.setattr(
        "taugate.sweep.cells.CellRunner.run",
        lambda *_a: pytest.fail("a finished cell was computed again"),
    )
    assert _sweep(out) == 0
    assert _snapshot(out / "cells") == cells
    assert (out / "notes.txt").read_text() == "added by the user\n"
    assert not _leftovers(tmp_path)


def test_sweep_refuses_its_own_folder_with_other_arguments_before_work(
    sweep_run, tmp_path, capsys, monkeypatch
):
    _forbid(monkeypatch, *SWEEP_WORK)
    out = tmp_path / "sweep"
    shutil.copytree(sweep_run, out)
    before = _snapshot(out)
    code = main([*SWEEP[:-1], "--lambdas", "0,0.1", "-q", "--out", str(out)])
    _assert_refused(capsys, code, out, "different arguments", "--resume")
    assert _snapshot(out) == before


def test_sweep_refuses_a_reproduce_folder(repro_run, tmp_path, capsys, monkeypatch):
    _forbid(monkeypatch, *SWEEP_WORK)
    out = tmp_path / "repro"
    shutil.copytree(repro_run, out)
    before = _snapshot(out)
    for extra in ([], ["--resume"]):
        _assert_refused(capsys, _sweep(out, *extra), out, "was not written by taugate sweep")
    assert _snapshot(out) == before and not _leftovers(tmp_path)
