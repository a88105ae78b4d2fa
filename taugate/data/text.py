"""Text modes for the language models: named corpora as byte tokens, split by document.

| mode | data dir file (``text/``) | embedded default (every machine with Python) |
|---|---|---|
| ``prose`` | ``python-docs.jsonl.gz``: the Python docs, English reStructuredText | ``pydoc_data.topics``: the docs' reference topics (~465 KB) |
| ``code`` | ``python-stdlib.jsonl.gz``: the Python standard library | the running interpreter's standard library sources (``*.py`` of ``sysconfig.get_paths()["stdlib"]``) |
| ``quotes`` | ``fortunes.jsonl.gz``: fortune cookies | none (an error says so) |

A data dir file is gzip JSON Lines, one document per line: ``{"id": ..., "text": ...}``. Tokens
are bytes (the own GPT's vocabulary is 256), documents joined by a blank line.

:func:`split_text` splits by document, never inside one: documents are ordered by the CRC-32 of
their id (a fixed, platform-independent shuffle), then the first ones make up the test share of
the bytes, the next the validation share, the rest train. Every result records
:meth:`TextSplit.record` (mode, source, bytes and documents per split).

    from taugate.data.text import load_text, split_text
    s = split_text(load_text("code", "/path/to/data"))  # or None: the embedded default
    s.train, s.valid, s.test  # (N,) uint8 token ids
"""

from __future__ import annotations

import gzip
import json
import os
import sysconfig
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from taugate.errors import TauGateError

FILES = {
    "prose": "python-docs.jsonl.gz",
    "code": "python-stdlib.jsonl.gz",
    "quotes": "fortunes.jsonl.gz",
}
SEPARATOR = b"\n\n"  # between documents


@dataclass(frozen=True)
class TextCorpus:
    """One text mode's documents and where they came from."""

    mode: str  # "prose" | "code" | "quotes"
    docs: tuple[tuple[str, str], ...]  # (id, text), in id order
    source: str  # "data-dir:<file>" | "embedded:<what>"

    @cached_property
    def data(self) -> bytes:
        """Every document as UTF-8, joined by a blank line."""
        return SEPARATOR.join(t.encode("utf-8") for _, t in self.docs)

    def tokens(self) -> np.ndarray:
        """The corpus as (N,) uint8 byte-level token ids."""
        return np.frombuffer(self.data, np.uint8)


@dataclass(frozen=True)
class TextSplit:
    """A text mode split by document into train / validation / test byte tokens."""

    mode: str
    source: str
    train: np.ndarray  # (N_train,) uint8
    valid: np.ndarray  # (N_valid,) uint8
    test: np.ndarray  # (N_test,) uint8
    doc_ids: dict[str, list[str]] = field(repr=False)  # split -> document ids

    def record(self) -> dict:
        """What a result file records about its text: mode, source, bytes and documents."""
        parts = {"train": self.train, "valid": self.valid, "test": self.test}
        return {"mode": self.mode, "source": self.source,
                "bytes": {k: int(len(v)) for k, v in parts.items()},
                "documents": {k: len(v) for k, v in self.doc_ids.items()}}  # fmt: skip


def _read_jsonl(path: Path) -> list[tuple[str, str]]:
    """The (id, text) documents of a gzip JSON Lines file; a one-line error naming the file and
    line for anything else."""
    docs = []
    try:
        with gzip.open(path, "rb") as f:
            for k, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    d = json.loads(raw)
                except ValueError as e:
                    raise TauGateError(f"{path}: line {k} is not JSON ({e})") from None
                if not isinstance(d, dict) or not isinstance(d.get("text"), str):
                    raise TauGateError(f'{path}: line {k} has no string "text" field')
                docs.append((str(d.get("id", k)), d["text"]))
    except gzip.BadGzipFile:
        raise TauGateError(f"{path}: not a gzip file (expected gzip JSON Lines)") from None
    except (OSError, EOFError) as e:
        raise TauGateError(f"{path}: cannot be read as gzip JSON Lines ({e})") from None
    if not any(t for _, t in docs):
        raise TauGateError(f"{path}: no documents with text (empty file)")
    return sorted(docs)


def _embedded(mode: str) -> tuple[list[tuple[str, str]], str]:
    if mode == "prose":
        from pydoc_data.topics import topics

        return sorted(topics.items()), "embedded:pydoc_data.topics"
    if mode == "code":
        root = Path(sysconfig.get_paths()["stdlib"])
        docs = [(p.name, p.read_text(encoding="utf-8", errors="replace"))
                for p in sorted(root.glob("*.py"))]  # fmt: skip
        if not docs:
            raise TauGateError(f"no standard library sources under {root} for the code mode")
        return docs, f"embedded:{root}/*.py"
    raise TauGateError(f"text mode {mode!r} has no embedded default; pass --data-dir with "
                       f"text/{FILES[mode]}")  # fmt: skip


def text_file(mode: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The data dir file of ``mode`` if it exists (``data_dir``, else ``$TAUGATE_DATA_DIR``)."""
    if mode not in FILES:
        raise TauGateError(f"unknown text mode {mode!r}; known: {', '.join(FILES)}")
    root = data_dir if data_dir is not None else os.environ.get("TAUGATE_DATA_DIR") or None
    path = Path(root) / "text" / FILES[mode] if root else None
    return path if path is not None and path.is_file() else None


def load_text(mode: str, data_dir: str | os.PathLike | None = None, *,
              max_bytes: int | None = None) -> TextCorpus:  # fmt: skip
    """Text mode ``mode`` from ``data_dir/text/`` (else ``$TAUGATE_DATA_DIR``), or its embedded
    default. ``max_bytes``: keep whole documents, in the split order of :func:`split_text`, until
    about that many bytes (at least one document)."""
    path = text_file(mode, data_dir)
    docs, source = (_read_jsonl(path), f"data-dir:{path}") if path else _embedded(mode)
    docs = [(i, t) for i, t in docs if t]
    if max_bytes is not None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise TauGateError(f"max_bytes must be a positive integer, got {max_bytes!r}")
        kept, total = [], 0
        for d in _shuffled(docs):
            if total >= max_bytes:
                break
            kept.append(d)
            total += len(d[1].encode("utf-8")) + len(SEPARATOR)
        docs = sorted(kept)
    if not docs:
        raise TauGateError(f"text mode {mode!r} from {source} is empty")
    return TextCorpus(mode, tuple(docs), source)


def _shuffled(docs):
    """Documents in a fixed pseudo-random order: by CRC-32 of the id, then id."""
    return sorted(docs, key=lambda d: (zlib.crc32(d[0].encode("utf-8")), d[0]))


def split_text(corpus: TextCorpus, *, valid: float = 0.1, test: float = 0.1) -> TextSplit:
    """Split ``corpus`` by document into train / validation / test, about ``valid`` and ``test``
    of its bytes each (whole documents; each part gets at least one)."""
    for name, v in (("valid", valid), ("test", test)):
        if not isinstance(v, (int, float)) or not 0 < v < 1:
            raise TauGateError(f"split_text: {name} must be a share in (0, 1), got {v!r}")
    if valid + test >= 1:
        raise TauGateError(f"split_text: valid + test must be < 1, got {valid + test}")
    docs = _shuffled(corpus.docs)
    if len(docs) < 3:
        raise TauGateError(f"text mode {corpus.mode!r} from {corpus.source} has {len(docs)} "
                           "document(s); a split by document needs at least 3")  # fmt: skip
    raw = {d: d[1].encode("utf-8") for d in docs}  # each document encoded once
    sizes = [len(raw[d]) for d in docs]
    total = sum(sizes)
    parts: dict[str, list[tuple[str, str]]] = {"test": [], "valid": [], "train": []}
    k = 0
    for name, share in (("test", test), ("valid", valid)):
        acc, keep = 0, 2 if name == "test" else 1  # documents left for the parts after this one
        while k < len(docs) - keep and (not parts[name] or acc < share * total):
            parts[name].append(docs[k])
            acc += sizes[k]
            k += 1
    parts["train"] = docs[k:]

    def tokens(ds):
        return np.frombuffer(SEPARATOR.join(raw[d] for d in sorted(ds)), np.uint8)

    return TextSplit(corpus.mode, corpus.source, tokens(parts["train"]), tokens(parts["valid"]),
                     tokens(parts["test"]), {k: sorted(i for i, _ in v) for k, v in parts.items()})  # fmt: skip
