"""EncodeToolChoice: a tool-use env as a vector-observation, discrete-action env for classic RL."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import llm_trainer
from llm_trainer.envs.wrappers import EncodeToolChoice, ToolChoiceCodec

ENV_IDS = ["LLMTrainer/Calculator-v0", "LLMTrainer/Weather-v0", "LLMTrainer/Search-v0",
           "LLMTrainer/MultiTool-v0"]  # fmt: skip


def _planned_action(env: EncodeToolChoice) -> int:
    """Follow the task's plan: its next tool, then answer (a perfect tool chooser)."""
    state = env.unwrapped.get_state()
    plan = state.task.plan
    if state.n_calls < len(plan):
        return env.codec.tools.index(plan[state.n_calls].name)
    return len(env.codec.tools)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_passes_the_gymnasium_and_stable_baselines3_checkers(env_id: str) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = EncodeToolChoice(llm_trainer.make(env_id))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checkers' notes about wrappers
        check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=False)
    assert env.observation_space.shape == (64 + 2 * 3 + 3,)
    assert int(env.action_space.n) == 4


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_choosing_the_planned_tools_solves_every_task(env_id: str, difficulty: int) -> None:
    env = EncodeToolChoice(llm_trainer.make(env_id), difficulties=(difficulty,))
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(np.int64(_planned_action(env)))
            done = terminated or truncated
        assert info["success"]
        assert info["difficulty"] == difficulty
        assert reward == 1.0


def test_the_wrong_tool_or_answering_blind_fails() -> None:
    env = EncodeToolChoice(llm_trainer.make("LLMTrainer/MultiTool-v0"), difficulties=(1,))
    env.reset(seed=0)  # a search task (see the module's doctest)
    _, reward, terminated, _, info = env.step(np.int64(3))  # answer at once: "unknown"
    assert terminated
    assert reward == 0.0
    assert not info["success"]
    env.reset(seed=0)
    env.step(np.int64(0))  # the calculator, with the prompt as its expression: an error
    _obs, _, _, _, info = env.step(np.int64(3))
    assert not info["success"]
    assert not info["tool_correct"]
    assert not info["exec_ok"]


def test_observations_encode_the_prompt_and_the_episode_so_far() -> None:
    env = EncodeToolChoice(llm_trainer.make("LLMTrainer/MultiTool-v0"), difficulties=(2,))
    first, _ = env.reset(seed=5)
    again, _ = env.reset(seed=5)
    assert np.array_equal(first, again)
    env.reset(seed=5)
    after, *_ = env.step(np.int64(1))  # weather
    codec = env.codec
    assert after[64 + 1] == 0.25  # one weather call (of 4)
    assert after[64 + 3 + 1] == 1.0  # last action: weather
    assert after[-1] == pytest.approx(1 / 10)  # turn 1 of MultiTool's 10
    assert codec.size == after.shape[0]


def test_difficulties_are_drawn_from_the_reset_seed() -> None:
    env = EncodeToolChoice(llm_trainer.make("LLMTrainer/MultiTool-v0"), difficulties=(1, 2, 3))
    drawn = [env.reset(seed=s)[1]["difficulty"] for s in range(60)]
    assert set(drawn) == {1, 2, 3}
    assert drawn == [env.reset(seed=s)[1]["difficulty"] for s in range(60)]


def test_codec_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="distinct"):
        ToolChoiceCodec(("calculator", "calculator"))
    with pytest.raises(TypeError, match="tool-use envs"):
        EncodeToolChoice(gym.make("CartPole-v1"))
