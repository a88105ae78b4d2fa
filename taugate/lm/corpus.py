"""Text for the language models, as bytes (the own GPT is byte-level: one token per byte).

Named corpora, read from the data dir's ``text/`` folder (gzip JSON Lines, one document per line,
``{"id": ..., "text": ...}``) or, without one, from the running Python itself:

| name | data dir file | embedded default |
|---|---|---|
| ``prose`` | ``text/python-docs.jsonl.gz`` (the Python docs) | ``pydoc_data.topics`` (the docs' reference topics, ~465 KB) |
| ``code`` | ``text/python-stdlib.jsonl.gz`` (the standard library) | the ``.py`` files of ``sysconfig.get_paths()["stdlib"]`` |
| ``quotes`` | ``text/fortunes.jsonl.gz`` | none (an error says so) |

Documents are taken in ``id`` order and joined with a blank line; :func:`split` cuts a corpus into
train / validation bytes deterministically.
"""

from __future__ import annotations

import gzip
import json
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taugate.errors import TauGateError


@dataclass(frozen=True)
class Corpus:
    """A corpus as bytes and where it came from."""

    name: str  # "prose" | "code" | "quotes"
    data: bytes  # UTF-8 text
    source: str  # "data-dir:<file>" | "embedded:<what>"

    def tokens(self) -> np.ndarray:
        """The bytes as a (N,) uint8 array (byte-level token ids; no copy)."""
        return np.frombuffer(self.data, np.uint8)


_FILES = {
    "prose": "python-docs.jsonl.gz",
    "code": "python-stdlib.jsonl.gz",
    "quotes": "fortunes.jsonl.gz",
}


def _read_jsonl(path: Path) -> list[tuple[str, str]]:
    docs = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for k, line in enumerate(f, 1):
                try:
                    d = json.loads(line)
                    docs.append((str(d["id"]), str(d["text"])))
                except (ValueError, KeyError, TypeError) as e:
                    raise TauGateError(
                        f"{path}: line {k} is not a {{'id', 'text'}} JSON object ({e})"
                    ) from None
    except (OSError, EOFError) as e:
        raise TauGateError(f"{path}: not a readable gzip JSON Lines file ({e})") from None
    return sorted(docs)


def _embedded(name: str) -> tuple[list[tuple[str, str]], str]:
    if name == "prose":
        from pydoc_data.topics import topics

        return sorted(topics.items()), "embedded:pydoc_data.topics"
    if name == "code":
        root = Path(sysconfig.get_paths()["stdlib"])
        docs = [
            (p.name, p.read_text(encoding="utf-8", errors="replace"))
            for p in sorted(root.glob("*.py"))
        ]
        return docs, f"embedded:{root}/*.py"
    raise TauGateError(
        f"corpus {name!r} has no embedded default; pass --data-dir with text/{_FILES[name]}"
    )


def load_corpus(
    name: str, data_dir: str | os.PathLike | None = None, *, max_bytes: int | None = None
) -> Corpus:
    """Corpus ``name`` from ``data_dir/text/`` (else ``$TAUGATE_DATA_DIR``), or the embedded
    default; the first ``max_bytes`` bytes when given."""
    if name not in _FILES:
        raise TauGateError(f"unknown corpus {name!r}; known: {', '.join(_FILES)}")
    root = data_dir if data_dir is not None else os.environ.get("TAUGATE_DATA_DIR") or None
    path = Path(root) / "text" / _FILES[name] if root else None
    if path is not None and path.is_file():
        docs, source = _read_jsonl(path), f"data-dir:{path}"
    else:
        docs, source = _embedded(name)
    data = "\n\n".join(text for _id, text in docs).encode("utf-8")
    if max_bytes is not None:
        data = data[:max_bytes]
    if len(data) < 2:
        raise TauGateError(f"corpus {name!r} from {source} is empty")
    return Corpus(name, data, source)


def split(tokens: np.ndarray, valid_share: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation): the last ``valid_share`` of the tokens is the validation part."""
    if not 0 < valid_share < 1:
        raise TauGateError(f"valid_share must be in (0, 1), got {valid_share}")
    cut = int(len(tokens) * (1 - valid_share))
    return tokens[:cut], tokens[cut:]
