"""Where a study's work runs: in this process (``local``, the default) or as Ray tasks (``ray``),
on a running cluster (``address``) or on a Ray started here with ``workers`` CPUs.

Ray is an optional extra (``pip install 'taugate[ray]'``); asking for it without it installed is a
one-line error. This module imports nothing heavy: Ray is imported when a session starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from taugate.errors import TauGateError

KINDS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorConfig:
    """How a sweep or study runs its tasks."""

    kind: str = "local"  # local: in this process, as always; ray: one Ray task per unit of work
    address: str | None = None  # ray: "auto" or HOST:PORT of a running cluster (None: start one)
    workers: int | None = None  # ray without an address: CPUs of the Ray started here (default all)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TauGateError(f"executor must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "local" and (self.address is not None or self.workers is not None):
            flag = "--ray-address" if self.address is not None else "--workers"
            raise TauGateError(f"{flag} needs --executor ray")
        if self.address is not None and self.workers is not None:
            raise TauGateError("--workers sizes a Ray started here; a cluster joined with "
                               "--ray-address has its own CPUs")  # fmt: skip
        if self.workers is not None and (isinstance(self.workers, bool) or self.workers < 1):
            raise TauGateError(f"--workers must be >= 1, got {self.workers!r}")
        if self.address is not None and (not isinstance(self.address, str) or not self.address):
            raise TauGateError(f"--ray-address must be 'auto' or HOST:PORT, got {self.address!r}")

    def describe(self) -> dict:
        """JSON-able: what ran the work (recorded with the results)."""
        d = {"kind": self.kind}
        if self.kind == "ray":
            d["address"] = self.address or "local"
            if self.address is None:
                d["workers"] = self.workers or os.cpu_count()
        return d


def import_ray():
    """The ``ray`` module, or the one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise TauGateError(
            "--executor ray needs ray, which is not installed: pip install 'taugate[ray]'"
        ) from None
    return ray


@contextmanager
def ray_session(cfg: ExecutorConfig) -> Iterator[object]:
    """Ray, connected: to ``cfg.address``, or to a Ray started here with ``cfg.workers`` CPUs
    (shut down on exit); an already connected session is used as it is."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        kw = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        try:
            if cfg.address is not None:
                ray.init(address=cfg.address, **kw)
            else:
                ray.init(num_cpus=cfg.workers or os.cpu_count(), **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = cfg.address or "a local Ray"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise TauGateError(f"could not start or join Ray ({where}): {first}") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def ray_error_line(e: Exception) -> str:
    """A Ray error in one line: the task's own exception when it raised one, else Ray's."""
    cause = getattr(e, "cause", None)
    err = cause if isinstance(cause, BaseException) else e
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")
