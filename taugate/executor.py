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
MAX_RETRIES = 3  # a task whose worker process dies runs again, up to this many times


@dataclass(frozen=True)
class ExecutorConfig:
    """How a sweep or study runs its tasks."""

    kind: str = "local"  # local: in this process, as always; ray: one Ray task per unit of work
    address: str | None = None  # ray: "auto" or HOST:PORT of a running cluster (None: start one)
    workers: int | None = None  # ray without an address: CPUs of the Ray started here (default all)
    # ray: torch threads of each task, and the CPUs it reserves. Default: this process's torch
    # threads, what a local run trains with: float sums depend on the thread count, so with the
    # same count the results equal a local run's (on the same kind of CPU)
    task_threads: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TauGateError(f"executor must be one of {', '.join(KINDS)}, got {self.kind!r}")
        given = [f for f, v in (("--ray-address", self.address), ("--workers", self.workers),
                                ("--task-threads", self.task_threads)) if v is not None]  # fmt: skip
        if self.kind == "local" and given:
            raise TauGateError(f"{given[0]} needs --executor ray")
        if self.task_threads is not None and (isinstance(self.task_threads, bool)
                                              or self.task_threads < 1):  # fmt: skip
            raise TauGateError(f"--task-threads must be >= 1, got {self.task_threads!r}")
        if self.address is not None and self.workers is not None:
            raise TauGateError("--workers sizes a Ray started here; a cluster joined with "
                               "--ray-address has its own CPUs")  # fmt: skip
        if self.workers is not None and (isinstance(self.workers, bool) or self.workers < 1):
            raise TauGateError(f"--workers must be >= 1, got {self.workers!r}")
        if self.address is not None and (not isinstance(self.address, str) or not self.address):
            raise TauGateError(f"--ray-address must be 'auto' or HOST:PORT, got {self.address!r}")

    def threads(self) -> int:
        """Torch threads (and CPUs) of each task."""
        if self.task_threads is not None:
            return self.task_threads
        import torch

        return torch.get_num_threads()

    def describe(self) -> dict:
        """JSON-able: what ran the work (recorded with the results)."""
        d = {"kind": self.kind}
        if self.kind == "ray":
            d["address"] = self.address or "local"
            if self.address is None:
                d["workers"] = self.workers or os.cpu_count()
            d["task_threads"] = self.threads()
        return d

    def task_options(self) -> dict:
        """``ray.remote`` options of a training task: its CPUs, and retries on worker death."""
        return {"num_cpus": self.threads(), "max_retries": MAX_RETRIES}


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
