"""Algorithms: they interact with tasks only through the env API. Today: rollouts and
evaluation (``rollout.py``)."""
