"""matplotlib without a screen, and figures saved as PNG + PDF atomically."""

from __future__ import annotations

import os
from pathlib import Path

from taugate.io import atomic_write_with


def plt():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def save_figure(fig, out_stem: str | os.PathLike) -> list[Path]:
    """Write ``out_stem.png`` and ``out_stem.pdf`` (each via temp file + rename); close ``fig``."""
    stem = Path(out_stem)
    paths = []
    try:
        for ext in ("png", "pdf"):
            path = stem.parent / f"{stem.name}.{ext}"
            atomic_write_with(path, lambda tmp, ext=ext: fig.savefig(tmp, format=ext, dpi=150))
            paths.append(path)
    finally:
        plt().close(fig)
    return paths
