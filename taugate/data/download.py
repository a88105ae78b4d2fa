"""Downloading the official IDX files from public mirrors, md5-verified, written atomically.

A file is streamed into a temp file beside its destination and moved into place only after its
md5 matches, so a failed or mismatching download leaves nothing behind. Mirrors are tried in
order; a network failure or an md5 mismatch moves on to the next mirror.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from taugate.errors import TauGateError
from taugate.io import atomic_write_with

__all__ = ["CHECKSUMS", "MIRRORS", "TIMEOUT_S", "DownloadFailed", "fetch"]

TIMEOUT_S = 10.0  # seconds per connection attempt / read
_CHUNK = 1 << 20

# base URLs, tried in order; a file's URL is base + file name
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
}

# official md5 of the gzip files
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "cf8536b0aa1a6ac5fa3f23001093305c",
        "train-labels-idx1-ubyte.gz": "10bea18fdb374794d4bb42e356e600c9",
        "t10k-images-idx3-ubyte.gz": "f78720b4224f21cce2f2ccf2d7a94c9a",
        "t10k-labels-idx1-ubyte.gz": "0d30e22e447f3c33dab9ed536400ac01",
    },
}


@dataclass
class DownloadFailed(Exception):
    """No mirror delivered the file (network errors); ``attempts`` holds 'url: reason' lines."""

    filename: str  # the file that could not be fetched
    attempts: list[str] = field(default_factory=list)  # one 'url: reason' per mirror tried

    def __str__(self) -> str:
        return f"could not download {self.filename}: " + "; ".join(self.attempts)


class _Md5Mismatch(Exception):
    def __init__(self, got: str) -> None:
        super().__init__(got)
        self.got = got


def _join(base: str, filename: str) -> str:
    return base if base.endswith(filename) else base.rstrip("/") + "/" + filename


def _stream_to(url: str, tmp: str, expected_md5: str, timeout: float) -> None:
    """Write the body of ``url`` into ``tmp``; raise _Md5Mismatch if its md5 is wrong."""
    h = hashlib.md5()
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
        while chunk := resp.read(_CHUNK):
            h.update(chunk)
            out.write(chunk)
    got = h.hexdigest()
    if got != expected_md5.lower():
        raise _Md5Mismatch(got)


def fetch(
    filename: str,
    dest_dir: str | os.PathLike,
    mirrors: list[str],
    expected_md5: str,
    *,
    timeout: float = TIMEOUT_S,
) -> str:
    """Download ``filename`` into ``dest_dir`` from the first mirror that delivers it with the
    right md5; return the base URL used.

    Raises :class:`DownloadFailed` when no mirror worked and at least one failed for a reason
    other than a checksum mismatch, and :class:`TauGateError` when every mirror delivered a file
    whose md5 is wrong (the bytes were never written to ``dest_dir``).
    """
    if not expected_md5:
        raise TauGateError(f"no md5 checksum known for {filename}; refusing an unverified download")
    if not mirrors:
        raise DownloadFailed(filename, ["no mirrors configured"])
    dest = Path(dest_dir) / filename
    attempts: list[str] = []
    mismatches: list[str] = []
    for base in mirrors:
        url = _join(base, filename)
        try:
            atomic_write_with(
                dest, lambda tmp, url=url: _stream_to(url, tmp, expected_md5, timeout)
            )
        except _Md5Mismatch as e:
            msg = f"{url}: md5 mismatch: expected {expected_md5}, got {e.got}"
            attempts.append(msg)
            mismatches.append(msg)
        except TauGateError:
            raise  # e.g. dest_dir not writable: every mirror would fail the same way
        except (OSError, http.client.HTTPException, ValueError) as e:
            # URLError/HTTPError/timeouts are OSErrors; ValueError: malformed URL
            reason = getattr(e, "reason", None) or e
            attempts.append(f"{url}: {type(e).__name__}: {reason}")
        else:
            return base
    if len(mismatches) == len(mirrors):
        raise TauGateError(f"download failed checksum on every mirror: {'; '.join(mismatches)}")
    raise DownloadFailed(filename, attempts)
