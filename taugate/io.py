"""Atomic file writes, and the rule that no command overwrites what it did not write.

The writers put a temp file in the same dir and ``os.replace`` it, so a reader never sees a
half-written file; they write through a symlink to its target, and refuse an existing path that is
not a regular file (a directory, FIFO, device or socket is never replaced by a regular file).

Ownership: an output folder is a command's when it holds that command's marker file
(:func:`claim_output_dir`); an output file when it says who wrote it (:func:`check_owned_file`).
Anything else that exists is refused unless the user passes ``--force``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from taugate.errors import TauGateError


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) and check that files can be written there."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TauGateError(
            f"cannot create output directory {p} (not writable): {_why_no_dir(p, e)}"
        ) from None
    _probe(p, f"output directory {p} is not writable")
    return p


def nearest_existing(p: Path) -> Path:
    """``p`` itself if it exists, else its closest ancestor that does (what ``mkdir -p`` builds on)."""
    for q in (p, *p.parents):
        if os.path.exists(q):
            return q
    return Path(p.anchor or ".")


def check_output_file(path: str | os.PathLike) -> Path:
    """Fail fast, before any expensive work, when the atomic writers could not write ``path``:
    a directory or special file there, or a folder that cannot be created or written. Creates
    nothing. Returns the file that would be written (a symlink resolved to its target)."""
    target = _target(path)
    d = target.parent
    q = nearest_existing(d)
    if not q.is_dir():
        raise TauGateError(f"cannot write {path} (not writable): {q} is not a directory")
    if q == d:
        _probe(d, f"output directory {d} is not writable")
    else:
        _probe(q, f"cannot create output directory {d}: {q} is not writable")
    return target


def _why_no_dir(p: Path, e: OSError) -> str:
    """Why ``p`` could not be created: a path component that is a file, else the OS's reason."""
    q = nearest_existing(p)
    if os.path.exists(q) and not q.is_dir():
        return "a file of that name exists" if q == p else f"{q} is not a directory"
    return e.strerror or str(e)


def _probe(d: Path, message: str) -> None:
    """Create and remove a temp file in ``d``; raise ``message: <reason>`` when that fails."""
    try:
        fd, probe = tempfile.mkstemp(dir=d, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise TauGateError(f"{message}: cannot create a file there ({e.strerror or e})") from None


def _target(path: str | os.PathLike) -> Path:
    """The regular file to (re)place for ``path``: a symlink is followed to its target; an existing
    directory, FIFO, device or socket is refused."""
    p = Path(path)
    if p.is_symlink():
        p = Path(os.path.realpath(p))  # write through the link, like open(path, "w")
    try:
        mode = os.stat(p).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return p  # a new file (or a dangling link's target); its folder is checked by the caller
    except OSError as e:  # a symlink loop, a file used as a folder, ...
        raise TauGateError(f"cannot write {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        raise TauGateError(f"output path {path} is a directory; give a file name")
    if not stat.S_ISREG(mode):
        raise TauGateError(
            f"output path {path} exists and is not a regular file (a FIFO, device or socket); "
            "refusing to replace it"
        )
    return p


def _file_mode() -> int:
    """What ``open(path, "w")`` would give: 0o666 less the umask (mkstemp alone gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_with(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then move the temp file onto ``path`` in one step.

    ``path`` may be a symlink (its target is replaced) but not a directory or special file."""
    target = _target(path)
    ensure_writable_dir(target.parent)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write_with(path, _w)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj):
    """``obj`` with every NaN / inf float (in nested dicts, lists, tuples) replaced by ``None``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    """Strict JSON (RFC 8259): NaN and inf are written as ``null``."""
    text = json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def claim_output_dir(path: str | os.PathLike, marker: str, command: str,
                     is_ours: Callable[[object], bool], *, force: bool = False):  # fmt: skip
    """Make ``path`` the output folder of ``command``; return the parsed ``marker`` file if the
    folder is already one of its runs (else None).

    Accepted: a new or empty folder, or one whose ``marker`` (JSON) passes ``is_ours``. Any other
    existing folder is refused unless ``force``; a file at ``path`` always is."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise TauGateError(f"output folder {p} exists and is not a directory")
    ensure_writable_dir(p)
    prev = _read_json(p / marker) if (p / marker).is_file() else None
    if prev is not None and is_ours(prev):
        return prev
    if force or not any(p.iterdir()):
        return None
    raise TauGateError(
        f"{p} exists and was not written by {command} (it holds no {marker} of one); refusing to "
        "write into it: choose a new or empty folder, or pass --force"
    )


def check_owned_file(
    path: str | os.PathLike, written_by: str | None, *, force: bool = False
) -> Path:
    """:func:`check_output_file`, and refuse an existing file unless ``force`` or it is a JSON
    object whose ``written_by`` is ``written_by`` (None: no file can be recognised)."""
    target = check_output_file(path)
    if target.exists() and not force:
        d = _read_json(target) if written_by is not None else None
        if not (isinstance(d, dict) and d.get("written_by") == written_by):
            who = f" and was not written by {written_by}" if written_by else ""
            raise TauGateError(
                f"{path} exists{who}; refusing to overwrite it (pass --force to replace it)"
            )
    return target


@contextmanager
def atomic_directory(path: str | os.PathLike, what: str = "output") -> Iterator[Path]:
    """Yield a new temp directory beside ``path`` to fill; when the block ends without an error it
    takes ``path``'s place in one rename (an existing ``path`` is moved aside first, then deleted),
    so a reader never sees half a directory. On an error nothing is left behind; an ``OSError``
    becomes a one-line error naming ``what`` and ``path``. The caller decides beforehand whether
    an existing ``path`` may be replaced."""
    p = Path(path)
    parent = ensure_writable_dir(p.parent if str(p.parent) else Path("."))
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{p.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes 0o700
        if p.exists() or p.is_symlink():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{p.name}.", suffix=".old"))
            os.replace(p, old / "a")
            os.replace(tmp, p)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, p)
    except OSError as e:
        raise TauGateError(f"cannot write {what} {p}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_checked(path: str | os.PathLike, sha256: str) -> bytes:
    """The bytes of ``path`` after checking them against the manifest's hex ``sha256``."""
    import hashlib

    p = Path(path)
    data = p.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise TauGateError(f"{p}: sha256 {got[:12]}... does not match the manifest's "
                           f"{str(sha256)[:12]}... (file modified or corrupted)")  # fmt: skip
    return data


def load_safetensors(data: bytes, where: str | os.PathLike) -> dict:
    """The numpy tensors of safetensors bytes (never unpickles); a one-line error naming ``where``
    for anything else."""
    from safetensors.numpy import load

    try:
        return load(data)
    except Exception as e:  # safetensors raises its own error types; never leak them
        raise TauGateError(f"{where}: not a valid safetensors file ({e})") from None


def probe_destination(p: Path, what: str) -> None:
    """A one-line error unless a directory can be created at ``p`` (its nearest existing parent
    is a writable directory): checked before any work, as the atomic writers need it."""
    base = nearest_existing(p.absolute().parent)
    try:
        if not base.is_dir():
            raise NotADirectoryError("it is not a directory")
        tempfile.TemporaryDirectory(dir=base, prefix=f".{p.name}.").cleanup()
    except OSError as e:
        why = e.strerror or e
        raise TauGateError(f"cannot write {what} {p}: {base} is not writable ({why})") from None
