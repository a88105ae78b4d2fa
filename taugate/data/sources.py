"""Where a data set's IDX files come from: data dir, user cache, download, or nowhere (fallback).

Resolution order for a data set stored in folder ``<folder>/`` (e.g. ``mnist/``):

1. the data dir: the ``data_dir`` argument, else env ``TAUGATE_DATA_DIR``;
2. the user cache: ``cache_dir`` argument, else env ``TAUGATE_CACHE_DIR``, else
   ``$XDG_CACHE_HOME/taugate``, else ``~/.cache/taugate``;
3. a download of the missing files into the cache (unless disabled: ``download=False``, or
   ``download=None`` with env ``TAUGATE_OFFLINE=1``);
4. nothing: :func:`resolve_files` returns ``None`` and the caller falls back (see
   :func:`fallback_warning`).

A source is used only if it holds *all* the needed files (``name.gz`` or the raw ``name``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from taugate.data import download as dl
from taugate.errors import TauGateError
from taugate.io import ensure_writable_dir

__all__ = [
    "ENV_CACHE_DIR",
    "ENV_DATA_DIR",
    "ENV_OFFLINE",
    "Resolved",
    "default_cache_dir",
    "downloads_enabled",
    "fallback_warning",
    "find_files",
    "resolve_data_dir",
    "resolve_files",
]

ENV_DATA_DIR = "TAUGATE_DATA_DIR"
ENV_CACHE_DIR = "TAUGATE_CACHE_DIR"
ENV_OFFLINE = "TAUGATE_OFFLINE"
_TRUE = {"1", "true", "yes", "on"}


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def default_cache_dir() -> Path:
    """``$TAUGATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/taugate``, else ``~/.cache/taugate``."""
    if explicit := _env(ENV_CACHE_DIR):
        return Path(explicit).expanduser()
    if xdg := _env("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "taugate"
    return Path.home() / ".cache" / "taugate"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> tuple[Path | None, str]:
    """The data dir to search and how it was chosen; raises if one was named but is missing."""
    if data_dir is not None:
        how = "--data-dir / data_dir argument"
        p = Path(data_dir).expanduser()
    elif env := _env(ENV_DATA_DIR):
        how = f"env {ENV_DATA_DIR}"
        p = Path(env).expanduser()
    else:
        return None, "not set"
    if not p.exists():
        raise TauGateError(f"data dir {p} does not exist (from {how})")
    if not p.is_dir():
        raise TauGateError(f"data dir {p} is not a directory (from {how})")
    return p, how


def downloads_enabled(download: bool | None) -> tuple[bool, str]:
    """Whether to download, and why: ``download`` if given, else not when TAUGATE_OFFLINE=1."""
    if download is not None:
        return bool(download), f"download={bool(download)}"
    offline = _env(ENV_OFFLINE)
    if offline is not None and offline.lower() in _TRUE:
        return False, f"{ENV_OFFLINE}={offline}"
    return True, f"{ENV_OFFLINE} not set"


def find_files(folder: Path, names: tuple[str, ...]) -> tuple[dict[str, Path], list[str]]:
    """Map each wanted ``*.gz`` name to ``folder/name`` or ``folder/name-without-.gz``; list misses."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in names:
        candidates = [folder / name]
        if name.endswith(".gz"):
            candidates.append(folder / name[: -len(".gz")])
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            missing.append(name)
        else:
            found[name] = hit
    return found, missing


@dataclass(frozen=True)
class Resolved:
    """The files of one data set, all from one place."""

    paths: dict[str, Path]  # canonical '*.gz' name -> the file to read
    source: str  # 'data-dir:/abs/folder' | 'cache:/abs/folder' | 'download:<base url>[,...]'


def _missing_text(missing: list[str]) -> str:
    return ", ".join(missing)


def resolve_files(
    dataset: str,
    folder_name: str,
    names: tuple[str, ...],
    *,
    data_dir: str | os.PathLike | None,
    cache_dir: str | os.PathLike | None,
    download: bool | None,
    mirrors: dict[str, list[str]] | None,
    checksums: dict[str, dict[str, str]] | None,
    tried: list[str],
) -> Resolved | None:
    """Find (or download) every file in ``names``; ``None`` if impossible. Appends one line per
    place looked at to ``tried`` (used in the fallback warning)."""
    # (1) data dir
    root, how = resolve_data_dir(data_dir)
    if root is None:
        tried.append(f"data dir: not given (no --data-dir, {ENV_DATA_DIR} not set)")
    else:
        folder = root / folder_name
        if not folder.is_dir():
            tried.append(f"data dir {root} ({how}): no folder {folder}")
        else:
            found, missing = find_files(folder, names)
            if not missing:
                return Resolved(found, f"data-dir:{os.path.abspath(folder)}")
            tried.append(f"data dir {root} ({how}): {folder} lacks {_missing_text(missing)}")

    # (2) user cache
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache = cache_root / folder_name
    found, missing = find_files(cache, names) if cache.is_dir() else ({}, list(names))
    if not missing:
        return Resolved(found, f"cache:{os.path.abspath(cache)}")
    tried.append(f"cache {cache}: missing {_missing_text(missing)}")

    # (3) download the missing files into the cache
    enabled, why = downloads_enabled(download)
    if not enabled:
        tried.append(f"download: disabled ({why})")
        return None
    # mirrors / checksums are keyed by folder ('mnist' serves mnist-10k too); overrides may
    # also use the data set name
    mirrors, checksums = mirrors or {}, checksums or {}
    bases = mirrors.get(dataset, mirrors.get(folder_name, dl.MIRRORS.get(folder_name, [])))
    sums = {
        **dl.CHECKSUMS.get(folder_name, {}),
        **checksums.get(folder_name, {}),
        **checksums.get(dataset, {}),
    }
    try:
        ensure_writable_dir(cache)
    except TauGateError as e:
        tried.append(f"download: skipped: {e}")
        return None
    used: list[str] = []
    for name in missing:
        try:
            base = dl.fetch(name, cache, bases, sums.get(name, ""))
        except dl.DownloadFailed as e:
            tried.append(f"download: {e}")
            return None  # the set is incomplete anyway; do not wait on the other files
        found[name] = cache / name
        if base not in used:
            used.append(base)
    return Resolved(found, "download:" + ",".join(used))


def fallback_warning(
    dataset: str,
    folder_name: str,
    names: tuple[str, ...],
    tried: list[str],
    fallback: str,
    cache_dir: str | os.PathLike | None = None,
) -> str:
    """The loud multi-line stderr message printed when ``dataset`` is replaced by ``fallback``."""
    bar = "=" * 78
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    lines = [
        bar,
        f"taugate: WARNING: data set '{dataset}' is not available; using the embedded "
        f"'{fallback}' instead.",
        f"  Results on '{fallback}' (8x8 images) are NOT comparable to '{dataset}'.",
        "  Tried, in order:",
        *(f"    - {t}" for t in tried),
        "  To fix: pass --data-dir DIR (or set TAUGATE_DATA_DIR=DIR) where",
        f"    DIR/{folder_name}/ holds {', '.join(names)}",
        "    (the same names without .gz also work);",
        f"  or allow downloads (unset {ENV_OFFLINE}, have network access); files are cached in",
        f"    {cache_root / folder_name} (change with {ENV_CACHE_DIR}).",
        bar,
    ]
    return "\n".join(lines)
