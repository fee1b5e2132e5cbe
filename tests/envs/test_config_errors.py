"""Bad env configuration is a ``ConfigError`` in one line naming the env, the value and what is
allowed, in every registered env and through every way of asking for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from typer.testing import CliRunner

import llm_trainer
from llm_trainer.cli import app
from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.wrappers import EncodeToolChoice
from tests.conftest import ENV_IDS


def _declared(env_id: str) -> tuple[int, ...]:
    return llm_trainer.spec(env_id).capabilities.difficulties


def _unsupported(env_id: str) -> list[Any]:
    declared = _declared(env_id)
    return [0, -1, max(declared) + 1, 9, "2", 2.0, True, None, [1], 10**5_000]


def _assert_clear(error: ConfigError, env_id: str, value: Any) -> None:
    message = str(error)
    assert isinstance(error, ValueError)  # existing pytest.raises(ValueError) keep working
    assert "\n" not in message
    assert len(message) < 150  # the CLI's console width when piped
    assert message.startswith(f"{env_id}: ")
    if not (isinstance(value, int) and value > 10**100):
        assert repr(value) in message
    assert f"allowed difficulties: {', '.join(map(str, _declared(env_id)))}" in message


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_an_unsupported_difficulty_is_a_config_error_naming_env_value_and_allowed_ones(
    env_id: str,
) -> None:
    ways: list[Callable[[Any], object]] = [
        lambda d: llm_trainer.make(env_id, difficulty=d),
        lambda d: gym.make(env_id, difficulty=d),
        lambda d: llm_trainer.make(env_id).reset(seed=0, options={"difficulty": d}),
    ]
    for value in _unsupported(env_id):
        for make in ways:
            with pytest.raises(ConfigError) as caught:
                make(value)
            _assert_clear(caught.value, env_id, value)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_every_declared_difficulty_is_accepted_as_argument_and_reset_option(env_id: str) -> None:
    env = llm_trainer.make(env_id)
    for difficulty in _declared(env_id):
        _, info = llm_trainer.make(env_id, difficulty=difficulty).reset(seed=0)
        assert info["difficulty"] == difficulty
        _, info = env.reset(seed=0, options={"difficulty": np.int64(difficulty)})
        assert info["difficulty"] == difficulty


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_other_bad_arguments_and_reset_options_are_config_errors_naming_the_env(
    env_id: str,
) -> None:
    options: dict[Any, Any] = {"dificulty": 2, 3: 1}  # keys of any type are named, not sorted
    with pytest.raises(ConfigError, match=f"^{env_id}: unknown reset option"):
        llm_trainer.make(env_id).reset(seed=0, options=options)
    with (
        pytest.raises(ConfigError, match=f"^{env_id}: render_mode"),
        pytest.warns(UserWarning, match="render_mode"),  # gymnasium's own warning comes first
    ):
        llm_trainer.make(env_id, render_mode="human")
    with pytest.raises(ConfigError, match=f"^{env_id}: max_text_length"):
        llm_trainer.make(env_id, max_text_length=10)


def test_encode_tool_choice_checks_its_difficulties_when_built() -> None:
    with pytest.raises(ConfigError, match="MultiTool-v0: difficulty 4 is not supported"):
        EncodeToolChoice(llm_trainer.make("LLMTrainer/MultiTool-v0"), difficulties=(1, 4))


def test_cli_evaluate_with_an_unsupported_difficulty_prints_one_line_and_exits_2() -> None:
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--agent",
            "oracle",
            "--env",
            "LLMTrainer/Calculator-v0",
            "--episodes",
            "2",
            "--difficulty",
            "9",
        ],
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: LLMTrainer/Calculator-v0: difficulty 9 is not supported; "
        "allowed difficulties: 1, 2, 3"
    ]
