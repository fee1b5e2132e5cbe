"""The one episode engine (algorithms/rollout.py): lockstep slots, failures that never stop the
siblings, user errors that stop the run, envs closed on every path, episode ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

import llm_trainer
from llm_trainer.agents.baselines import OracleAgent
from llm_trainer.algorithms.rollout import EpisodeTask, collect, play_episodes
from llm_trainer.core.errors import BackendError, BatchActError, ConfigError

ENV = "LLMTrainer/Calculator-v0"


class FailsOnSeeds:
    """The oracle, except that the slots playing one of ``bad`` seeds fail to generate (as a
    batched LLM agent reports it: a BatchActError carrying the other slots' actions)."""

    def __init__(self, envs: Sequence[gym.Env[Any, Any]], bad: set[int]) -> None:
        self.oracle = OracleAgent(envs)
        self.bad = bad
        self.seeds: dict[int, int | None] = {}

    def reset(self, *, seed: int | None = None, slot: int | None = None) -> None:
        self.seeds[slot if slot is not None else 0] = seed

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        actions: list[str | None] = list(self.oracle.act_batch(observations, infos))
        errors = {}
        for i, info in enumerate(infos):
            slot = int(info["slot"])
            if self.seeds.get(slot) in self.bad:
                actions[i] = None
                errors[slot] = BackendError(f"slot {slot} cannot generate")
        if errors:
            raise BatchActError("some slots failed", actions=actions, errors=errors)
        return [a for a in actions if a is not None]


class StepFailsOnSeed(gym.Wrapper[str, str, str, str]):
    """A real env whose ``step`` raises for one reset seed (an env bug)."""

    def __init__(self, env: gym.Env[str, str], bad_seed: int) -> None:
        super().__init__(env)
        self.bad_seed, self.seed_now = bad_seed, -1

    def reset(self, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        self.seed_now = kwargs.get("seed", -1)
        return self.env.reset(**kwargs)

    def step(self, action: str) -> tuple[str, Any, bool, bool, dict[str, Any]]:
        if self.seed_now == self.bad_seed:
            raise RuntimeError("the env broke")
        return self.env.step(action)


def test_a_slot_whose_agent_fails_records_its_error_and_its_siblings_finish() -> None:
    trajectories = collect(ENV, lambda envs: FailsOnSeeds(envs, bad={3, 5}), range(10), num_envs=4)
    assert [t.seed for t in trajectories] == list(range(10))
    failed = {t.seed for t in trajectories if t.error is not None}
    assert failed == {3, 5}
    assert all(t.success for t in trajectories if t.seed not in failed)
    assert "cannot generate" in (trajectories[3].error or "")


def test_a_slot_whose_env_fails_records_its_error_and_its_siblings_finish() -> None:
    envs = [StepFailsOnSeed(llm_trainer.make(ENV), bad_seed=2) for _ in range(3)]
    played = play_episodes(envs, OracleAgent(envs), range(6))
    errors = {e.trajectory.seed: e.trajectory.error for e in played if e.trajectory.error}
    assert errors == {2: "RuntimeError: the env broke"}
    assert sum(e.trajectory.success for e in played) == 5


def test_a_user_error_stops_the_run_and_every_env_is_closed() -> None:
    made: list[gym.Env[Any, Any]] = []
    closed: list[int] = []

    class Misconfigured:
        def reset(self, *, seed: int | None = None) -> None:
            pass

        def act(self, observation: str, info: Mapping[str, Any]) -> str:
            raise ConfigError("agent: a setting is wrong")

        def act_batch(
            self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
        ) -> list[str]:
            raise ConfigError("agent: a setting is wrong")

    def factory(envs: list[gym.Env[Any, Any]]) -> Misconfigured:
        for env in envs:  # spy on close (the envs are the real ones collect made)
            original = env.close

            def close(original: Any = original, env: Any = env) -> None:
                closed.append(id(env))
                original()

            env.close = close  # type: ignore[method-assign]
            made.append(env)
        return Misconfigured()

    with pytest.raises(ConfigError, match="a setting is wrong"):
        collect(ENV, factory, range(8), num_envs=3)
    assert len(made) == 3
    assert sorted(closed) == sorted(id(e) for e in made)


class ResetFailsOnSeed(gym.Wrapper[str, str, str, str]):
    """A real env whose ``reset`` raises for one seed (a generator bug)."""

    def __init__(self, env: gym.Env[str, str], bad_seed: int) -> None:
        super().__init__(env)
        self.bad_seed = bad_seed

    def reset(self, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        if kwargs.get("seed") == self.bad_seed:
            raise ZeroDivisionError("a rare draw")
        return self.env.reset(**kwargs)


def test_a_reset_that_fails_records_that_episode_and_the_run_goes_on() -> None:
    envs = [ResetFailsOnSeed(llm_trainer.make(ENV), bad_seed=1)]
    played = play_episodes(envs, OracleAgent(envs), [0, 1, 2])
    assert played[0].trajectory.success
    assert played[2].trajectory.success
    assert played[1].trajectory.error == "ZeroDivisionError: a rare draw"
    assert played[1].trajectory.steps == ()


def test_an_unsupported_difficulty_stops_the_run_with_the_envs_message() -> None:
    envs = [llm_trainer.make(ENV)]
    with pytest.raises(ConfigError, match=r"difficulty 9 is not supported"):
        play_episodes(envs, OracleAgent(envs), [EpisodeTask(0), EpisodeTask(1, {"difficulty": 9})])


def test_max_turns_cuts_an_episode_and_marks_its_last_step_truncated() -> None:
    envs = [llm_trainer.make(ENV)]
    [episode] = play_episodes(envs, OracleAgent(envs), [0], max_turns=1)
    [step] = episode.trajectory.steps
    assert step.truncated
    assert not step.terminated
    assert episode.trajectory.error is None


def test_end_episode_is_called_with_the_final_info_and_return() -> None:
    calls: list[tuple[int, float, bool, str]] = []

    class Recording(OracleAgent):
        def end_episode(
            self, info: Mapping[str, Any], *, reward: float, slot: int, env_id: str
        ) -> None:
            calls.append((slot, reward, bool(info["success"]), env_id))

    collect(ENV, Recording, range(5), num_envs=2)
    assert len(calls) == 5
    assert all(reward == 1.0 and success and env_id == ENV for _, reward, success, env_id in calls)
    assert {slot for slot, *_ in calls} == {0, 1}


def test_long_term_memory_fills_during_a_benchmark_run(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from llm_trainer.agents.backends import SamplingConfig
    from llm_trainer.agents.llm_agent import LLMAgent, LLMAgentConfig
    from llm_trainer.agents.memory import LongTermMemory
    from llm_trainer.agents.tinylm import TinyLMConfig, create_tiny_model
    from llm_trainer.benchmarks.runner import BenchConfig, run_bench
    from llm_trainer.benchmarks.suites import parse_suites
    from llm_trainer.envs.registration import REGISTRY_PATH, registry

    model_dir = create_tiny_model(
        tmp_path / "model",
        TinyLMConfig(n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64),
    )
    agent = LLMAgent(
        LLMAgentConfig(
            backend=f"transformers:{model_dir}",
            sampling=SamplingConfig(temperature=0.0, max_new_tokens=8),
            memory_path=str(tmp_path / "memory.sqlite"),
        )
    )
    saved = agent.save(tmp_path / "agent")
    agent.close()
    suite = parse_suites(
        REGISTRY_PATH.read_text()
        + """
  - id: memory-v0
    description: Calculator-v0 difficulty 1, three episodes.
    envs: [LLMTrainer/Calculator-v0]
    difficulties: [1]
    seeds: [0, 1, 2]
    episodes_per_cell: 3
""",
        registry(),
    )["memory-v0"]
    run = run_bench(
        BenchConfig(suite=suite.id, agent=str(saved), out=tmp_path / "r.json", workers=1),
        suite=suite,
    )
    assert run.result.summary["episodes"] == 3
    memory = LongTermMemory(saved / "memory.sqlite")
    assert len(memory) == 3
    assert {r.env_id for r in memory.records()} == {ENV}
