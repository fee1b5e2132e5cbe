"""Analyses of what agents did: failure-mode mining over trajectories and benchmark results.

:mod:`llm_trainer.analysis.failure_modes` classifies every failed episode from the env's own
``info`` (malformed action, wrong tool, bad arguments, tool error, wrong answer, step limit,
repeated actions, and the problem and MALT envs' own modes) and mines counts, examples and
trends per mode; ``llm-trainer analyze`` prints its table and draws its chart. Nothing here
imports matplotlib until a chart is drawn.
"""

from __future__ import annotations

from llm_trainer.analysis.failure_modes import (
    FailureMode,
    FailureReport,
    classify,
    diagnose,
    mine,
    plot_failure_modes,
)

__all__ = ["FailureMode", "FailureReport", "classify", "diagnose", "mine", "plot_failure_modes"]
