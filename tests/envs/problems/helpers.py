"""Helpers shared by the problem-family tests."""

from __future__ import annotations

from typing import Any

from llm_trainer.envs.problems import Evaluation, ProblemEnv, ProblemSpec


def evaluate(family: str, spec: ProblemSpec, answer: str, **kwargs: Any) -> Evaluation:
    """How ``family``'s env (default metrics unless ``kwargs`` set them) scores ``answer``."""
    return ProblemEnv(family, **kwargs).evaluate(spec, answer)


def draw(family: str, seed: int, difficulty: int, **kwargs: Any) -> ProblemSpec:
    """The problem ``family`` draws for ``seed`` at ``difficulty``."""
    env = ProblemEnv(family, difficulty, **kwargs)
    env.reset(seed=seed)
    return env.task
