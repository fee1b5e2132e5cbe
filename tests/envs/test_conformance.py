"""The conformance suite: every id in registry.yaml against the env contract (DESIGN.md)."""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given
from hypothesis import strategies as st

import llm_trainer
from llm_trainer.agents import OracleAgent, RandomAgent
from llm_trainer.core.records import METRIC_KEYS
from tests.conftest import ENV_IDS

INFO_KEYS = {
    "system_prompt",
    "tools",
    "difficulty",
    "role",
    "turn",
    "invalid_action",
    "invalid_reason",
    *METRIC_KEYS,
}


def _difficulties(env_id: str) -> tuple[int, ...]:
    return llm_trainer.spec(env_id).capabilities.difficulties


def _play(
    env: gym.Env[Any, Any], policy: Any, seed: int, options: dict[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """The full trajectory of one episode as comparable tuples."""
    obs, info = env.reset(seed=seed, options=options)
    policy.reset(seed=seed)
    steps: list[tuple[Any, ...]] = [(obs, info["role"])]
    done = False
    while not done:
        action = policy.act(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        steps.append(
            (action, obs, reward, terminated, truncated, tuple(info[k] for k in METRIC_KEYS))
        )
        done = terminated or truncated
    return steps


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_check_env_passes(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_info_carries_prompt_tools_difficulty_and_metrics(env_id: str) -> None:
    env = gym.make(env_id)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert obs
    assert set(info) >= INFO_KEYS
    assert info["system_prompt"]
    assert info["tools"]
    declared = llm_trainer.spec(env_id).capabilities.tools
    assert [t["function"]["name"] for t in info["tools"]] == list(declared)
    assert not any(info[k] for k in METRIC_KEYS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_gives_same_episode_in_two_instances(env_id: str) -> None:
    for difficulty in _difficulties(env_id):
        a, b = gym.make(env_id, difficulty=difficulty), gym.make(env_id, difficulty=difficulty)
        for seed in range(5):
            assert _play(a, RandomAgent(), seed) == _play(b, RandomAgent(), seed)
            assert _play(a, OracleAgent(a), seed) == _play(b, OracleAgent(b), seed)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_different_seeds_give_different_tasks(env_id: str) -> None:
    env = gym.make(env_id)
    prompts = {env.reset(seed=seed)[0] for seed in range(50)}
    assert len(prompts) >= 40


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_oracle_reaches_the_maximum_reward_on_100_seeds_per_difficulty(env_id: str) -> None:
    threshold = llm_trainer.spec(env_id).reward_threshold
    assert threshold is not None
    for difficulty in _difficulties(env_id):
        env = gym.make(env_id, difficulty=difficulty)
        oracle = OracleAgent(env)
        for seed in range(100):
            trajectory = _play(env, oracle, seed)
            total = sum(step[2] for step in trajectory[1:])
            final_metrics = dict(zip(METRIC_KEYS, trajectory[-1][5], strict=True))
            assert total == pytest.approx(threshold), (difficulty, seed, trajectory)
            assert all(final_metrics.values()), (difficulty, seed, final_metrics)
            assert trajectory[-1][3] is True  # terminated by the answer, not truncated


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_difficulty_is_a_reset_option(env_id: str) -> None:
    env = gym.make(env_id, difficulty=1)
    for difficulty in _difficulties(env_id):
        _, info = env.reset(seed=0, options={"difficulty": difficulty})
        assert info["difficulty"] == difficulty
    with pytest.raises(ValueError, match="difficulty"):
        env.reset(seed=0, options={"difficulty": 99})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(seed=0, options={"dificulty": 2})


def _first_action(env: gym.Env[Any, Any]) -> str:
    """An action that leaves the episode running: the first planned tool call, or (a problem
    env whose reference solution calls no tool) a wrong answer, which gets feedback and a
    revision."""
    plan = env.unwrapped.task.plan
    return plan[0].to_text() if plan else "<answer>0</answer>"


def _oracle_actions(env: gym.Env[Any, Any]) -> list[str]:
    """The oracle's actions from the env's current state to the end of the episode, played on
    a copy (the env itself does not move)."""
    clone = pickle.loads(pickle.dumps(env))
    oracle, actions, done = OracleAgent(clone), [], False
    while not done:
        actions.append(oracle.act("", {}))
        _, _, terminated, truncated, _ = clone.step(actions[-1])
        done = terminated or truncated
    return actions


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pickle_round_trip_mid_episode_continues_identically(env_id: str) -> None:
    env = gym.make(env_id, difficulty=max(_difficulties(env_id)))
    env.reset(seed=11)
    _, _, terminated, _, _ = env.step(_first_action(env))
    assert not terminated
    clone = pickle.loads(pickle.dumps(env))
    oracle, oracle_clone = OracleAgent(env), OracleAgent(clone)
    done = False
    while not done:
        a = env.step(oracle.act("", {}))
        b = clone.step(oracle_clone.act("", {}))
        assert a[:4] == b[:4]
        assert {k: a[4][k] for k in METRIC_KEYS} == {k: b[4][k] for k in METRIC_KEYS}
        done = a[2] or a[3]
    # and the seed stream after the episode is the same
    assert env.reset()[0] == clone.reset()[0]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_get_state_set_state_round_trip(env_id: str) -> None:
    env = gym.make(env_id, difficulty=max(_difficulties(env_id)))
    base = env.unwrapped
    env.reset(seed=5)
    env.step(_first_action(env))  # a mid-episode snapshot: a tool result or a revision to make
    snapshot = base.get_state()
    actions = _oracle_actions(env)
    first = [env.step(action)[:4] for action in actions]
    base.set_state(snapshot)
    assert base.get_state() == snapshot
    second = [env.step(action)[:4] for action in actions]
    assert first == second
    # restoring across episodes brings back the old task and its world
    env.reset(seed=6)
    base.set_state(snapshot)
    assert base.task == snapshot.task
    assert [env.step(action)[:4] for action in actions] == first
    with pytest.raises(TypeError):
        base.set_state({"task": None})


@pytest.mark.parametrize("env_id", ENV_IDS)
@given(
    actions=st.lists(st.text(max_size=300), min_size=1, max_size=12), seed=st.integers(0, 2**32 - 1)
)
def test_garbage_text_agent_never_raises(env_id: str, actions: list[str], seed: int) -> None:
    env = gym.make(env_id)
    obs, info = env.reset(seed=seed)
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        assert set(info) >= INFO_KEYS
        if info["invalid_action"]:
            assert reward == pytest.approx(-0.1)
            assert info["invalid_reason"]
        if terminated or truncated:
            obs, info = env.reset()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_malformed_tool_calls_are_invalid_actions_not_exceptions(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=0)
    for action in (
        '<tool_call>{"name": "calculator"}</tool_call>',
        "<tool_call>{oops",
        "<answer>1</answer><answer>2</answer>",
        "x" * 9000,
        "",
        "\x00\udcff",
    ):
        _, reward, terminated, _, info = env.step(action)
        assert info["invalid_action"]
        assert reward == pytest.approx(-0.1)
        assert not terminated
        assert info["format_ok"] is False


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_interleaving_two_instances_does_not_change_either_stream(env_id: str) -> None:
    alone = gym.make(env_id)
    alone_prompts = [alone.reset(seed=1)[0]] + [alone.reset()[0] for _ in range(20)]
    a, b = gym.make(env_id), gym.make(env_id)
    prompts = [a.reset(seed=1)[0]]
    b.reset(seed=2)
    for _ in range(20):
        b.reset()
        prompts.append(a.reset()[0])
        b.step("<answer>0</answer>")
    assert prompts == alone_prompts


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_no_state_leaks_across_resets(env_id: str) -> None:
    env = gym.make(env_id, render_mode="ansi")
    random_agent = RandomAgent(seed=0)
    lengths = []
    for seed in range(300):
        obs, info = env.reset(seed=seed)
        lengths.append(len(obs) + len(env.render() or ""))
        for _ in range(3):
            obs, _, terminated, truncated, info = env.step(random_agent.act(obs, info))
            if terminated or truncated:
                break
    assert max(lengths[-50:]) <= 2 * max(lengths[:50])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_stepping_a_finished_episode_raises_reset_needed(env_id: str) -> None:
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    for _ in range(20):  # a problem env asks for revisions first (up to max_revisions)
        if env.step("<answer>0</answer>")[2]:
            break
    with pytest.raises(gym.error.ResetNeeded):
        env.step("<answer>0</answer>")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="action must be a str"):
        env.step(42)


def test_global_rngs_are_untouched() -> None:
    import random

    import numpy as np

    py_state, np_state = random.getstate(), np.random.get_state()
    for env_id in ENV_IDS:
        env = gym.make(env_id, difficulty=2)
        _play(env, RandomAgent(), 0)
        _play(env, OracleAgent(env), 1)
    assert random.getstate() == py_state
    assert all(
        np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
        for x, y in zip(np.random.get_state(), np_state, strict=True)
    )
