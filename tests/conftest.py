"""Shared fixtures: every registered env id, for the conformance suite."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

import llm_trainer

ENV_IDS = sorted(llm_trainer.registry())

# CI gets more examples; a deadline would make timing on a loaded 2-core machine a failure cause.
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
