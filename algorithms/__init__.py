"""Algorithms: they touch tasks only through the env API, and every one is a plug-in.

* ``base.py``: the plug-in API (:class:`~llm_trainer.algorithms.base.Algorithm`, its
  :class:`~llm_trainer.algorithms.base.AlgorithmContext` and
  :class:`~llm_trainer.algorithms.base.AlgorithmResult`); ``registry.py``: how an experiment's
  ``algorithm:`` is found (the ``llm_trainer.algorithms`` entry points, ``module:Class``,
  ``file.py:Class``).
* ``rollout.py``: the one episode engine (lockstep slots, token-faithful records, per-slot
  failures) that evaluation, benchmarks and every algorithm play through.
* ``experiment.py``: one run of any algorithm (evaluate, run, evaluate, save);
  ``config.py``: the experiment's shared sections; ``models.py``: the starting model.
* The built-ins: ``sft.py``, ``dpo.py``, ``ppo/`` (ours), ``grpo.py`` (TRL), ``reward_model.py``,
  ``selfplay.py`` (one model in both seats of Kuhn poker, SPIRAL's role-conditioned baseline),
  ``nat.py`` (negative-aware tuning: SFT on successes and failures told apart in the task);
  ``hf.py`` is the one scaffold of the TRL-backed ones. ``sb3_baseline.py`` trains the
  classic-RL reference of the leaderboard.
"""
