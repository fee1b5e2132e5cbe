"""Scaling out: the same parallel work in local processes or on a Ray cluster.

* :mod:`.executor`: :class:`Executor` (``map(fn, items)``: results keyed by item index, the same
  wherever they ran), :class:`LocalExecutor` (this process or a ``spawn`` pool) and
  :func:`make_executor`.
* :mod:`.ray_backend`: :class:`RayExecutor` (Ray tasks, re-run when their worker dies) and
  :func:`connect` (the ``ray`` extra: ``pip install 'llm-trainer[ray]'``).
* :mod:`.config`: :class:`RayConfig`, an experiment's ``ray:`` section.

Where it is used: ``llm-trainer bench --ray ADDRESS`` plays a suite's episodes as Ray tasks
(:class:`~llm_trainer.benchmarks.runner.BenchConfig`'s ``ray_address``), an evolution
experiment with ``ray: {address: ...}`` evaluates fitness on Ray
(:class:`~llm_trainer.algorithms.evolution.fitness.FitnessEvaluator`'s ``executor``), MCTS grows
its ``trees`` as Ray tasks (an ``mcts:ray=ADDRESS,...`` agent spec, or ``search_distill`` with
``ray: {address: ...}``: :class:`~llm_trainer.algorithms.search.parallel.TreeRunner`'s
``executor``), and ``llm-trainer sweep --ray ADDRESS`` runs its trials as Ray tasks
(:class:`~llm_trainer.experiments.sweep.SweepConfig`'s ``ray_address``).

Importing this package does not import ``ray``.
"""

from __future__ import annotations

from llm_trainer.distributed.config import RayConfig
from llm_trainer.distributed.executor import Executor, LocalExecutor, make_executor
from llm_trainer.distributed.ray_backend import (
    RAY_EXTRA_HINT,
    RayExecutor,
    check_ray_installed,
    connect,
    import_ray,
)


def ray_executor(config: RayConfig | None) -> Executor | None:
    """A :class:`RayExecutor` on ``config.address``, or ``None`` when it is unset (the local
    path)."""
    if config is None or config.address is None:
        return None
    check_ray_installed("ray.address")
    return RayExecutor(config.address)


__all__ = [
    "RAY_EXTRA_HINT",
    "Executor",
    "LocalExecutor",
    "RayConfig",
    "RayExecutor",
    "check_ray_installed",
    "connect",
    "import_ray",
    "make_executor",
    "ray_executor",
]
