"""Agents for the benchmark tests, built from specs such as
``python:llm_trainer.tests.benchmarks.policies:half_oracle`` (so worker processes import them by
name, as they would a user's agent)."""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym

from llm_trainer.agents import OracleAgent, RandomAgent
from llm_trainer.core.usage import TokenUsage


class HalfOracle:
    """The oracle on episodes with an even seed, the random agent on the others."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        self.oracle, self.random = OracleAgent(env), RandomAgent()
        self.use_oracle = True

    def reset(self, *, seed: int | None = None) -> None:
        self.use_oracle = (seed or 0) % 2 == 0
        self.random.reset(seed=seed)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        agent = self.oracle if self.use_oracle else self.random
        return agent.act(observation, info)

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        return [self.act(o, i) for o, i in zip(observations, infos, strict=True)]


class TaskHalfOracle(HalfOracle):
    """The oracle on the tasks whose prompt has an even CRC-32, the random agent on the others:
    about as successful as ``HalfOracle``, but consistent: every trial of a task goes the same
    way (``HalfOracle`` flips its coin per policy seed, so per trial)."""

    def reset(self, *, seed: int | None = None) -> None:
        self.random.reset(seed=seed)
        self.decided = False

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        if not self.decided:  # the episode's first observation is the task's prompt
            self.use_oracle = zlib.crc32(observation.encode()) % 2 == 0
            self.decided = True
        return super().act(observation, info)


class SlowRandom(RandomAgent):
    """The random agent, 80 ms per action: the smoke suite then lasts several seconds, so a
    test can interrupt it mid-run even on a loaded machine."""

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        time.sleep(0.08)
        return super().act(observation, info)


class CountingOracle(OracleAgent):
    """The oracle, reporting made-up token counts (``ReportsUsage``): len(observation) prompt
    tokens and len(action) completion tokens per act."""

    last_usage: TokenUsage | None = None

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        action = super().act(observation, info)
        self.last_usage = TokenUsage(len(observation), len(action))
        return action


class Crashing(OracleAgent):
    """The oracle, but it raises on every episode whose seed is divisible by 3."""

    def reset(self, *, seed: int | None = None) -> None:
        self.crash = (seed or 0) % 3 == 0

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        if self.crash:
            raise RuntimeError("backend unavailable")
        return super().act(observation, info)


def half_oracle(env: gym.Env[Any, Any]) -> HalfOracle:
    return HalfOracle(env)


def task_half_oracle(env: gym.Env[Any, Any]) -> TaskHalfOracle:
    return TaskHalfOracle(env)


def slow_random(env: gym.Env[Any, Any]) -> SlowRandom:
    return SlowRandom()


def counting_oracle(env: gym.Env[Any, Any]) -> CountingOracle:
    return CountingOracle(env)


def crashing(env: gym.Env[Any, Any]) -> Crashing:
    return Crashing(env)


def not_a_policy(env: gym.Env[Any, Any]) -> object:
    return object()


class Dying(OracleAgent):
    """Ends its whole process at the first action (as a crashed backend would)."""

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        os._exit(3)


def dying(env: gym.Env[Any, Any]) -> Dying:
    return Dying(env)
