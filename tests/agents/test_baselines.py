"""Scripted baselines: the oracle solves, the random agent is seeded and protocol-conformant."""

from __future__ import annotations

import numpy as np
import pytest

import llm_trainer
from llm_trainer.agents import OracleAgent, Policy, RandomAgent
from llm_trainer.agents.factory import make_agent
from llm_trainer.algorithms.rollout import evaluate, run_episode
from llm_trainer.core.errors import ConfigError
from tests.conftest import ENV_IDS


def test_baselines_implement_the_policy_protocol() -> None:
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    assert isinstance(OracleAgent(env), Policy)
    assert isinstance(RandomAgent(), Policy)


def test_random_agent_is_reproducible_and_touches_no_global_rng() -> None:
    env = llm_trainer.make("LLMTrainer/MultiTool-v0")
    state = np.random.get_state()[1].copy()
    obs, info = env.reset(seed=0)
    a = [RandomAgent(seed=3).act(obs, info) for _ in range(3)]
    agent = RandomAgent(seed=99)
    agent.reset(seed=3)
    assert a[0] == agent.act(obs, info)
    assert len({RandomAgent(seed=s).act(obs, info) for s in range(30)}) > 10
    assert np.array_equal(np.random.get_state()[1], state)


def test_oracle_act_batch_uses_one_env_per_slot() -> None:
    envs = [llm_trainer.make("LLMTrainer/Weather-v0") for _ in range(3)]
    infos = [env.reset(seed=i)[1] for i, env in enumerate(envs)]
    oracle = OracleAgent(envs)
    actions = oracle.act_batch(["", "", ""], infos)
    assert actions == [env.unwrapped.task.plan[0].to_text() for env in envs]
    # A partial batch names its envs through info["slot"] (as the lockstep collector does).
    assert oracle.act_batch([""], [{**infos[2], "slot": 2}]) == [actions[2]]
    with pytest.raises(ValueError, match="bound to 3 envs"):
        oracle.act_batch([""], [{**infos[0], "slot": 5}])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_oracle_beats_random_by_a_wide_margin(env_id: str) -> None:
    oracle, _ = evaluate(env_id, lambda env: make_agent("oracle", env), range(100))
    random, _ = evaluate(env_id, lambda env: make_agent("random", env), range(100))
    assert oracle.rates["success"] == 1.0
    assert random.rates["success"] <= 0.05
    assert random.errors == 0


def test_a_failing_policy_is_recorded_not_raised() -> None:
    class Broken:
        def reset(self, *, seed: int | None = None) -> None:
            pass

        def act(self, observation: str, info: object) -> str:
            raise RuntimeError("backend down")

        def act_batch(self, observations: object, infos: object) -> list[str]:
            raise RuntimeError("backend down")

    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    result = run_episode(env, Broken(), seed=0)
    assert result.error == "RuntimeError: backend down"
    assert not result.success


def test_unknown_agent_spec_is_a_config_error_with_suggestion() -> None:
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    with pytest.raises(ConfigError, match="did you mean 'oracle'"):
        make_agent("orcale", env)
