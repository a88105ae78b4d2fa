"""Where Numba keeps the compiled kernels between processes (decided once, before any compile).

Numba's ``cache=True`` writes next to the source (``taugate/kernels/__pycache__``). When that is
read-only (a system-wide install), Numba would try its own per-user dir; we pick the location
ourselves, in this order, and point ``NUMBA_CACHE_DIR`` (env + ``numba.config.CACHE_DIR``) at it:

1. ``NUMBA_CACHE_DIR`` if the user set it and it is writable;
2. the package's own ``__pycache__`` (Numba's default) if writable;
3. ``$TAUGATE_CACHE_DIR/numba`` if ``TAUGATE_CACHE_DIR`` is set and writable;
4. ``$XDG_CACHE_HOME/taugate/numba`` (default ``~/.cache/taugate/numba``) if writable;
5. nowhere: the kernels compile without a disk cache (every process pays the compile time) and
   one ``RuntimeWarning`` says so.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def choose_cache_dir(environ, package_dir: Path = PACKAGE_DIR) -> tuple[str, Path | None]:
    """Return ``(source, directory)``; source is numba-env, in-tree, taugate-env, user or off."""
    if environ.get("NUMBA_CACHE_DIR") and _writable(Path(environ["NUMBA_CACHE_DIR"])):
        return "numba-env", Path(environ["NUMBA_CACHE_DIR"])
    if _writable(package_dir / "__pycache__"):
        return "in-tree", package_dir / "__pycache__"
    if environ.get("TAUGATE_CACHE_DIR"):
        p = Path(environ["TAUGATE_CACHE_DIR"]) / "numba"
        if _writable(p):
            return "taugate-env", p
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    p = Path(base) / "taugate" / "numba"
    if _writable(p):
        return "user", p
    return "off", None


def configure(environ=os.environ, package_dir: Path = PACKAGE_DIR) -> bool:
    """Apply :func:`choose_cache_dir` to Numba; return whether kernels may use ``cache=True``."""
    import numba

    source, path = choose_cache_dir(environ, package_dir)
    if source == "off":
        warnings.warn(
            "taugate: no writable Numba cache directory (set TAUGATE_CACHE_DIR); "
            "kernels are compiled in every process",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    if source in ("numba-env", "taugate-env", "user"):
        environ["NUMBA_CACHE_DIR"] = str(path)  # numba re-reads its config from the env on compile
        numba.config.CACHE_DIR = str(path)
    return True


CACHE_ENABLED = configure()
