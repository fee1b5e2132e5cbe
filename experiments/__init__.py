"""Experiments: the runs index, sweeps, monitoring, resources and cost.

* :mod:`~llm_trainer.experiments.index`: :class:`~llm_trainer.experiments.index.
  ExperimentManager`, the runs index (SQLite) every ``llm-trainer train`` run registers in
  (``llm-trainer runs list|show|compare|usage``);
* :mod:`~llm_trainer.experiments.tracking`: :func:`~llm_trainer.experiments.tracking.track_run`,
  the hook :func:`~llm_trainer.algorithms.experiment.run_experiment` runs in;
* :mod:`~llm_trainer.experiments.reproduce`: ``llm-trainer runs reproduce``, checked against
  the noise floor (:mod:`~llm_trainer.experiments.noise`);
* :mod:`~llm_trainer.experiments.sweep`: ``llm-trainer sweep`` (grid, random, Optuna) and its
  :class:`~llm_trainer.experiments.sweep.ConfigManager`;
* :mod:`~llm_trainer.experiments.monitor`: :class:`~llm_trainer.experiments.monitor.
  MonitoringService` (``status.json``, TensorBoard scalars, regression alerts);
* :mod:`~llm_trainer.experiments.scheduler`: :class:`~llm_trainer.experiments.scheduler.
  ResourceScheduler` (CPU and GPU slots);
* :mod:`~llm_trainer.experiments.cost`: tokens, GPU-seconds and money of runs.

Nothing here is imported by ``import llm_trainer``; the modules import no torch.
"""
