"""Helpers shared by tests/test_outputs_folders.py and tests/test_outputs_files.py.

Filling a folder with a user's files, snapshotting a tree byte for byte, finding temp files left
behind, reading the one-line error, asserting a refusal, and replacing the expensive entry points
by ones that fail if they are reached.
"""

from __future__ import annotations

from pathlib import Path


def _fill(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a folder)."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def _leftovers(root: Path) -> list[str]:
    """Temp files or folders the atomic writers and probes would leave behind."""
    return [
        str(p)
        for p in root.rglob("*")
        if p.name.startswith(".") or p.name.endswith((".tmp", ".old"))
    ]


def _error(capsys) -> str:
    """The one-line error on stderr."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taugate: error: "), err
    return lines[0]


def _assert_refused(capsys, code: int, target: Path, *phrases: str) -> str:
    assert code == 2
    err = _error(capsys)
    assert str(target) in err, err
    assert "--force" in err, err
    for phrase in phrases:
        assert phrase in err, err
    return err


def _forbid(monkeypatch, *targets: str) -> None:
    def never(*_a, **_k):
        raise AssertionError("expensive work started before the output target was checked")

    for t in targets:
        monkeypatch.setattr(t, never)
