"""Text modes (taugate.data.text): the data dir's JSON Lines corpora and the embedded defaults, the
split by document, the provenance record, and one-line errors for bad files."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from conftest import DATA_DIR, needs_data

from taugate.data.text import FILES, load_text, split_text
from taugate.errors import TauGateError


def _write(path, lines, *, raw=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        for line in lines:
            f.write((line if raw else json.dumps(line)).encode("utf-8") + b"\n")
    return path


def _corpus_dir(tmp_path, n=40):
    docs = [
        {"id": f"doc{i:03d}", "text": f"document {i} " + "abc " * (10 + 7 * i)} for i in range(n)
    ]
    _write(tmp_path / "text" / FILES["code"], docs)
    return tmp_path, docs


def test_embedded_defaults_are_real_text(monkeypatch):
    monkeypatch.delenv("TAUGATE_DATA_DIR", raising=False)
    for mode, marker in (("prose", "statement"), ("code", "def ")):
        c = load_text(mode)
        assert c.source.startswith("embedded:") and len(c.docs) > 50
        assert marker in c.data.decode("utf-8") and len(c.tokens()) > 300_000
        s = split_text(c)
        assert s.record()["source"] == c.source and all(len(p) for p in (s.train, s.valid, s.test))
    with pytest.raises(TauGateError, match="'quotes' has no embedded default; pass --data-dir"):
        load_text("quotes")
    with pytest.raises(TauGateError, match="unknown text mode 'poems'; known: prose, code, quotes"):
        load_text("poems")


@needs_data
def test_the_data_dir_corpora():
    for mode, marker, n_lines in (("prose", "Python", 497), ("code", "import", 637),
                                  ("quotes", "the", 15_218)):  # fmt: skip
        c = load_text(mode, DATA_DIR)
        with gzip.open(f"{DATA_DIR}/text/{FILES[mode]}", "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        assert len(rows) == n_lines  # the data README's document count
        assert len(c.docs) == sum(bool(r["text"]) for r in rows)  # empty documents dropped
        assert c.source == f"data-dir:{DATA_DIR}/text/{FILES[mode]}"
        assert marker in c.data[:200_000].decode("utf-8")


def test_split_is_by_document_deterministic_and_recorded(tmp_path):
    root, docs = _corpus_dir(tmp_path)
    c = load_text("code", root)
    assert c.source.startswith("data-dir:") and [i for i, _ in c.docs] == sorted(
        d["id"] for d in docs
    )
    s = split_text(c, valid=0.1, test=0.2)
    ids = s.doc_ids
    assert sorted(ids["train"] + ids["valid"] + ids["test"]) == [d["id"] for d in docs]
    assert not set(ids["train"]) & set(ids["test"]) and not set(ids["valid"]) & set(ids["test"])
    text = {d["id"]: d["text"] for d in docs}
    for part in ("train", "valid", "test"):  # every part is whole documents, nothing cut
        got = getattr(s, part).tobytes().decode("utf-8").split("\n\n")
        assert got == [text[i] for i in ids[part]]
    total = sum(len(t) for t in text.values())
    assert 0.2 <= sum(len(text[i]) for i in ids["test"]) / total < 0.3
    assert 0.1 <= sum(len(text[i]) for i in ids["valid"]) / total < 0.2
    again = split_text(load_text("code", root), valid=0.1, test=0.2)
    assert again.doc_ids == ids and np.array_equal(again.train, s.train)
    rec = s.record()
    assert rec["mode"] == "code" and rec["documents"] == {k: len(v) for k, v in ids.items()}
    assert rec["bytes"]["test"] == len(s.test)


def test_max_bytes_keeps_whole_documents(tmp_path):
    root, docs = _corpus_dir(tmp_path)
    c = load_text("code", root, max_bytes=1000)
    assert 1000 <= len(c.data) < 1000 + max(len(d["text"]) for d in docs) + 2
    assert all((i, t) in {(d["id"], d["text"]) for d in docs} for i, t in c.docs)
    with pytest.raises(TauGateError, match="max_bytes must be a positive integer"):
        load_text("code", root, max_bytes=0)


def test_bad_files_get_one_line_errors_naming_file_and_line(tmp_path):
    path = tmp_path / "text" / FILES["prose"]
    path.parent.mkdir(parents=True)
    path.write_text("plain text, not gzip")
    with pytest.raises(TauGateError, match=r"python-docs.jsonl.gz: not a gzip file") as e:
        load_text("prose", tmp_path)
    assert "\n" not in str(e.value)
    _write(path, ['{"id": "a", "text": "fine"}', "{not json"], raw=True)
    with pytest.raises(TauGateError, match=r"python-docs.jsonl.gz: line 2 is not JSON"):
        load_text("prose", tmp_path)
    _write(path, [{"id": "a", "text": "fine"}, {"id": "b"}, {"id": "c", "text": "x"}])
    with pytest.raises(TauGateError, match=r'python-docs.jsonl.gz: line 2 has no string "text"'):
        load_text("prose", tmp_path)
    _write(path, [{"id": "a", "text": 3}])
    with pytest.raises(TauGateError, match=r'line 1 has no string "text" field'):
        load_text("prose", tmp_path)
    _write(path, [])
    with pytest.raises(TauGateError, match=r"python-docs.jsonl.gz: no documents with text"):
        load_text("prose", tmp_path)
    _write(path, [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}])
    with pytest.raises(TauGateError, match="has 2 document\\(s\\); a split by document needs"):
        split_text(load_text("prose", tmp_path))
    root, _ = _corpus_dir(tmp_path / "ok")
    for kw in ({"valid": 0.0}, {"test": 1.0}, {"valid": 0.5, "test": 0.5}):
        with pytest.raises(TauGateError, match="split_text: "):
            split_text(load_text("code", root), **kw)
