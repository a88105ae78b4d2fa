"""`taugate sweep --executor ray`: the sweep's training as Ray tasks, its timing on the driver.

Tasks, at the grain the sweep already has, each declaring the CPUs of its torch threads
(``ExecutorConfig.task_threads``; by default this process's torch threads, so that the float sums,
and with them the results, are a local run's):

- a foundation per (width, seed) that is not on disk yet;
- a cell per (width, seed, lambda) not finished yet: TauGate trained on its foundation (passed
  as an object reference, so a foundation trains once for all its lambdas), compiled, its predictor
  fitted, its accuracy measured (:meth:`CellRunner.train`).

Everything a task makes comes back to the driver through Ray's object store (the data set goes
out the same way, once), never through a shared filesystem: the driver saves each foundation and
artifact into the output folder as it arrives (atomically, as the local sweep does). A task whose
worker dies is retried (``max_retries``); an exception in the code is not (it would fail again).

**Timing is done on one node with nothing else running there**: once every training task has
finished, the driver times each cell's backends itself, one cell after the other, and writes the
cell's file. Every row records the machine that trained it (``trained_on``) and timed it
(``timed_on``). Accuracy columns do not depend on where a cell ran: training is deterministic per
seed and thread count, and every task trains with the same thread count as a local run (tested
against the local sweep; nodes with another kind of CPU may round differently).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from taugate.errors import TauGateError
from taugate.executor import ExecutorConfig, ray_error_line, ray_session


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _foundation_task(cfg, data, width: int, seed: int, threads: int, hook):
    from taugate.sweep.cells import CellRunner

    _threads(threads)
    if hook is not None:
        hook("foundation", width, seed, None)
    return CellRunner(cfg, Path("."), quiet=True, data=data).train_foundation(width, seed)


def _cell_task(cfg, data, foundation, width: int, seed: int, lam: float, threads: int, hook):
    from taugate.sweep.cells import CellRunner

    _threads(threads)
    if hook is not None:
        hook("cell", width, seed, lam)
    return CellRunner(cfg, Path("."), quiet=True, data=data).train(width, seed, lam, foundation)


def run_cells(runner, todo: list[tuple[int, int, float]], executor: ExecutorConfig,
              write: Callable, *, hook: Callable | None = None, bar=None) -> dict:  # fmt: skip
    """Train the cells ``todo`` ((width, seed, lambda), in order) as Ray tasks, then time each on
    the driver and pass its rows to ``write(width, seed, lam, rows)``. ``hook(kind, width, seed,
    lam)`` runs at the start of every task (fault injection in tests). Returns the seconds of the
    two phases: training on Ray (with its start), timing here."""
    if not hasattr(runner, "train"):
        raise TauGateError("--executor ray runs taugate sweep's cells; this kind of sweep runs "
                           "with --executor local")  # fmt: skip
    if not todo:
        return {"train_seconds": 0.0, "time_seconds": 0.0}
    t0 = time.perf_counter()
    with ray_session(executor) as ray:
        opts, threads = executor.task_options(), executor.threads()
        foundation_task = ray.remote(**opts)(_foundation_task)
        cell_task = ray.remote(**opts)(_cell_task)
        cfg, data = runner.cfg, ray.put(runner.data)
        found, new = {}, {}
        for width, seed, _ in todo:
            if (width, seed) in found:
                continue
            model = runner.saved_foundation(width, seed)
            if model is None:
                found[(width, seed)] = new[(width, seed)] = foundation_task.remote(
                    cfg, data, width, seed, threads, hook
                )
            else:
                found[(width, seed)] = ray.put(model)
        cells = {cell_task.remote(cfg, data, found[(w, s)], w, s, lam, threads, hook): (w, s, lam)
                 for w, s, lam in todo}  # fmt: skip
        try:
            for (width, seed), ref in new.items():  # saved as soon as each arrives
                runner.save_foundation(width, seed, ray.get(ref))
            trained, pending = {}, list(cells)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                tc = ray.get(done[0])
                tc.compiled.save(runner.out / "artifacts" / tc.name)
                trained[cells[done[0]]] = tc
                if bar is not None:
                    bar.set_postfix(trained=f"{len(trained)}/{len(todo)}")
        except ray.exceptions.RayError as e:
            raise TauGateError(f"a sweep task failed on Ray: {ray_error_line(e)}") from None
    t1 = time.perf_counter()
    for width, seed, lam in todo:  # Ray has stopped: nothing else runs here while timing
        write(width, seed, lam, runner.time(trained[(width, seed, lam)]))
        if bar is not None:
            bar.update(1)
    return {"train_seconds": round(t1 - t0, 2), "time_seconds": round(time.perf_counter() - t1, 2)}
