"""`taugate reproduce --executor ray`: the study's training as Ray tasks.

Tasks, each declaring the CPUs of its torch threads (by default this process's, so that the
results are a local run's): a foundation per seed, then a (method, seed)
task per method (and the 0° TauGate of Table 3), each specialising its seed's foundation (passed
as an object reference) and measuring its accuracy (:func:`taugate.reproduce.study.adapt`). The
data set goes to the workers once through Ray's object store, and every model comes back the same
way: the driver saves them (``models/``) and writes the tables; nothing travels through a shared
filesystem. A task whose worker dies is retried. The accuracy columns equal the local run's
(tested, at the same thread count); the ``train_seconds`` of a row are then measured on a worker that may share its node
with other tasks.
"""

from __future__ import annotations

from collections.abc import Callable

from taugate.errors import TauGateError
from taugate.executor import ExecutorConfig, ray_error_line, ray_session


def _foundation_task(cfg, data, seed: int, threads: int, hook):
    import torch

    from taugate.device import select_device
    from taugate.reproduce.study import train_foundation

    torch.set_num_threads(threads)
    if hook is not None:
        hook("foundation", seed, None)
    model, hist = train_foundation(cfg, seed, data, select_device(cfg.device), True)
    return model.cpu(), hist["seconds"]


def _adapt_task(cfg, data, foundation, seed: int, name: str, target: float, threads: int, hook):
    import torch

    from taugate.device import select_device
    from taugate.reproduce.study import adapt

    torch.set_num_threads(threads)
    if hook is not None:
        hook("adapt", seed, name)
    model, f_seconds = foundation
    return adapt(cfg, seed, data, select_device(cfg.device), model, name, target, True, f_seconds)


def run_seeds(cfg, data, executor: ExecutorConfig, on_seed: Callable, *, out=None,
              hook: Callable | None = None) -> None:  # fmt: skip
    """Every seed of ``cfg`` as Ray tasks; ``on_seed(seed, SeedResult)`` for each seed in order
    once its tasks are done (its models saved under ``out`` first, when ``cfg.save_models``)."""
    from taugate.reproduce.study import adapt_specs, save_adapted, save_foundation, seed_result

    seeds = list(range(cfg.seed0, cfg.seed0 + cfg.seeds))
    with ray_session(executor) as ray:
        opts, threads = executor.task_options(), executor.threads()
        foundation_task = ray.remote(**opts)(_foundation_task)
        adapt_task = ray.remote(**opts)(_adapt_task)
        ref = ray.put(data)
        found = {s: foundation_task.remote(cfg, ref, s, threads, hook) for s in seeds}
        tasks = {s: [adapt_task.remote(cfg, ref, found[s], s, name, target, threads, hook)
                     for name, target in adapt_specs(cfg)] for s in seeds}  # fmt: skip
        try:
            for s in seeds:
                model, f_seconds = ray.get(found[s])
                adapted = ray.get(tasks[s])
                if out is not None and cfg.save_models:
                    save_foundation(model, cfg, s, data, out)
                    for a in adapted:
                        save_adapted(a, cfg, s, data, out)
                on_seed(s, seed_result(cfg, s, data, adapted, f_seconds))
        except ray.exceptions.RayError as e:
            raise TauGateError(f"a study task failed on Ray: {ray_error_line(e)}") from None
