"""`taugate reproduce --executor ray` and `taugate reproduce-lm --executor ray`: a study's training
as Ray tasks.

Tasks, each declaring the CPUs of its torch threads (by default this process's, so that the
results are a local run's): a foundation per seed, then a (method, seed) task per method (and the
other mode's TauGate of the overlap table), each specialising its seed's foundation (passed as an
object reference) and measuring it. The data goes to the workers once through Ray's object store,
and every model comes back the same way: the driver saves them (``models/``) and writes the tables,
seed by seed; nothing travels through a shared filesystem. A task whose worker dies is retried.
The accuracy / bits-per-byte columns equal the local run's (tested, at the same thread count); a
row's ``train_seconds`` is then measured on a worker that may share its node with other tasks.

One seam for both studies: :func:`run_seeds` takes the study's foundation and adaptation
functions (module-level, so they travel to the workers by reference).
"""

from __future__ import annotations

from collections.abc import Callable

from taugate.errors import TauGateError
from taugate.executor import ExecutorConfig, ray_error_line, ray_session


def _foundation_task(fn, cfg, data, seed: int, threads: int, hook):
    import torch

    torch.set_num_threads(threads)
    if hook is not None:
        hook("foundation", seed, None)
    return fn(cfg, seed, data)


def _adapt_task(fn, cfg, data, foundation, seed: int, name: str, target, threads: int, hook):
    import torch

    torch.set_num_threads(threads)
    if hook is not None:
        hook("adapt", seed, name)
    model, f_seconds = foundation
    return fn(cfg, seed, data, model, name, target, f_seconds)


def run_seeds(cfg, data, specs: list, executor: ExecutorConfig, on_seed: Callable, *,
              foundation_fn: Callable, adapt_fn: Callable, hook: Callable | None = None) -> None:  # fmt: skip
    """Every seed of ``cfg`` as Ray tasks: ``foundation_fn(cfg, seed, data) -> (model,
    seconds)`` per seed, ``adapt_fn(cfg, seed, data, model, name, target, seconds)`` per
    (name, target) of ``specs``; then ``on_seed(seed, model, seconds, [adapted...])`` on the
    driver, seed by seed in order, as each seed's tasks finish."""
    seeds = list(range(cfg.seed0, cfg.seed0 + cfg.seeds))
    with ray_session(executor) as ray:
        opts, threads = executor.task_options(), executor.threads()
        foundation_task = ray.remote(**opts)(_foundation_task)
        adapt_task = ray.remote(**opts)(_adapt_task)
        ref = ray.put(data)
        found = {
            s: foundation_task.remote(foundation_fn, cfg, ref, s, threads, hook) for s in seeds
        }
        tasks = {s: [adapt_task.remote(adapt_fn, cfg, ref, found[s], s, name, target, threads, hook)
                     for name, target in specs] for s in seeds}  # fmt: skip
        try:
            for s in seeds:
                model, f_seconds = ray.get(found[s])
                on_seed(s, model, f_seconds, ray.get(tasks[s]))
        except ray.exceptions.RayError as e:
            raise TauGateError(f"a study task failed on Ray: {ray_error_line(e)}") from None


def mlp_foundation(cfg, seed: int, data):
    """The MLP study's foundation of one seed, on the CPU, and its training seconds."""
    from taugate.device import select_device
    from taugate.reproduce.study import train_foundation

    model, hist = train_foundation(cfg, seed, data, select_device(cfg.device), True)
    return model.cpu(), hist["seconds"]


def mlp_adapt(cfg, seed: int, data, model, name: str, target: float, f_seconds: float):
    from taugate.device import select_device
    from taugate.reproduce.study import adapt

    return adapt(cfg, seed, data, select_device(cfg.device), model, name, target, True, f_seconds)
