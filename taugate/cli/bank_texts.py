"""The text each mode of a language-model bank is compiled on (and prompted with), for ``taugate
generate --compiled`` and ``taugate bench-bank --compiled``.

Mode NAME reads text mode ``--corpus NAME=TEXT`` (prose | code | quotes); without one, its own name
when that is a text mode (a bank of ``prose`` and ``code`` adapters reads each one's own text),
else ``prose``. Calibration comes from the text's train split, prompts from its test split
(:func:`taugate.data.text.split_text`), from ``--data-dir`` or the embedded default.
"""

from __future__ import annotations

import argparse

TEXT_BYTES = 1 << 18  # bytes of each text read (whole documents): calibration uses 4096 tokens


def add_text_args(p) -> None:
    """``--corpus NAME=TEXT`` (repeatable) and ``--data-dir DIR``."""
    p.add_argument("--corpus", action="append", default=[], type=_pair, metavar="NAME=TEXT",
                   help="the text (prose | code | quotes) mode NAME is compiled on (repeat; "
                   "default: NAME itself when it is a text mode, else prose)")  # fmt: skip
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder holding text/ (default: $TAUGATE_DATA_DIR or the embedded text)")  # fmt: skip


def _pair(text: str) -> tuple[str, str]:
    from taugate.data.text import FILES

    name, sep, corpus = text.partition("=")
    if not sep or not name or corpus not in FILES:
        raise argparse.ArgumentTypeError(
            f"expected NAME=TEXT with TEXT one of {', '.join(FILES)}, got {text!r}"
        )
    return name, corpus


def mode_texts(modes, corpus_pairs, data_dir) -> tuple[dict, dict, dict]:
    """({mode: calibration token ids}, {mode: prompt token ids}, {mode: its text's record})
    for the bank's ``modes``; a ``--corpus`` for a mode the bank lacks is a one-line error."""
    from taugate.data.text import FILES, load_text, split_text
    from taugate.errors import TauGateError

    chosen = dict(corpus_pairs)
    unknown = [n for n in chosen if n not in modes]
    if unknown:
        raise TauGateError(
            f"--corpus names mode {unknown[0]!r}, not one of the bank's: {', '.join(modes)}"
        )
    splits, calib, prompts, info = {}, {}, {}, {}
    for m in modes:
        text = chosen.get(m, m if m in FILES else "prose")
        if text not in splits:
            splits[text] = split_text(load_text(text, data_dir, max_bytes=TEXT_BYTES))
        s = splits[text]
        calib[m], prompts[m] = s.train, s.test
        info[m] = s.record()
    return calib, prompts, info
