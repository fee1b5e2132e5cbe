"""TRL's environment_factory adapter: the env's tools are methods whose schema is the env's own
spec, calling them steps the env exactly as its action text does, and TRL 1.16's GRPOTrainer
takes the class (tools discovered, get_reward wired in, a training step run)."""

from __future__ import annotations

import keyword
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
from hypothesis import given
from hypothesis import strategies as st

import llm_trainer
from llm_trainer.agents import OracleAgent
from llm_trainer.core.errors import ConfigError, UnknownEnvError
from llm_trainer.core.records import ToolCall, to_plain
from llm_trainer.envs.tools import AnswerAction, parse_action
from llm_trainer.serve.trl_factory import (
    ANSWER_TOOL,
    _tool_method,
    environment_factory,
    task_dataset,
)
from tests.conftest import ENV_IDS
from tests.serve.conftest import ServerFactory

#: Every single-agent env but Decompose-v0, whose oracle plans with <plan> (no tool here).
PLAYABLE = [e for e in ENV_IDS if e != "LLMTrainer/Decompose-v0"]


def _tool_names(env_id: str) -> list[str]:
    return list(llm_trainer.spec(env_id).capabilities.tools)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_each_tool_method_has_the_envs_own_spec_as_its_schema(env_id: str) -> None:
    from transformers.utils import get_json_schema

    env = environment_factory(env_id)()
    _, info = llm_trainer.make(env_id).reset(seed=0)
    for spec in to_plain(info["tools"]):
        schema = get_json_schema(getattr(env, spec["function"]["name"]))
        schema["function"].pop("return")
        assert schema == spec
    answer = get_json_schema(getattr(env, ANSWER_TOOL))["function"]
    assert answer["parameters"]["required"] == ["answer"]
    public = sorted(
        n for n in dir(type(env)) if not n.startswith("_") and callable(getattr(env, n))
    )
    assert public == sorted([*_tool_names(env_id), ANSWER_TOOL, "get_reward", "reset"])


def _play_oracle(env_id: str, tool_env: Any, seed: int) -> list[Any]:
    """Play the oracle's episode (read from an in-process twin) through the tool methods,
    checking each result against the twin's; the twin's final info."""
    twin = gym.make(env_id)
    oracle = OracleAgent(twin)
    observation, info = twin.reset(seed=seed)
    assert tool_env.reset(prompt=[{"role": "user", "content": ""}], seed=seed) == observation
    done = False
    while not done:
        action = oracle.act(observation, info)
        observation, _, terminated, truncated, info = twin.step(action)
        parsed = parse_action(action)
        if isinstance(parsed, ToolCall):
            result = getattr(tool_env, parsed.name)(**parsed.arguments_dict())
            assert result == observation
        else:
            assert isinstance(parsed, AnswerAction)
            result = tool_env.answer(parsed.text)
            assert result == (observation or "Answer recorded; the episode is over.")
        assert to_plain(tool_env.info) == to_plain(info)
        done = terminated or truncated
    return [tool_env.get_reward(), tool_env.done, info]


@pytest.mark.parametrize("env_id", PLAYABLE)
def test_the_tools_step_the_env_and_the_oracles_calls_earn_the_reward(env_id: str) -> None:
    env = environment_factory(env_id)()
    threshold = llm_trainer.spec(env_id).reward_threshold
    for seed in range(2):
        reward, done, info = _play_oracle(env_id, env, seed)
        assert reward == pytest.approx(threshold)
        assert done
        assert info["success"]
    with pytest.raises(ValueError, match="the episode is over"):
        getattr(env, _tool_names(env_id)[0])()


def test_reset_reads_the_seed_and_difficulty_columns_and_instances_get_their_own_streams() -> None:
    env_id = "LLMTrainer/Weather-v0"
    env_class = environment_factory(env_id, seed=10)
    first, second = env_class(), env_class()
    local = llm_trainer.make(env_id)
    # without a seed column, instance i plays the seed stream 10 + i
    assert first.reset(prompt=[]) == local.reset(seed=10)[0]
    assert second.reset(prompt=[]) == local.reset(seed=11)[0]
    assert second.reset() == local.reset()[0]
    assert first.reset(seed=3, difficulty=3) == local.reset(seed=3, options={"difficulty": 3})[0]
    assert first.info["difficulty"] == 3
    # another class from the same call plays the same streams: construction order is the seed
    assert environment_factory(env_id, seed=10)().reset() == local.reset(seed=10)[0]


def test_misuse_gets_clear_errors() -> None:
    env = environment_factory("LLMTrainer/Calculator-v0")()
    with pytest.raises(ValueError, match=r"reset\(\) first"):
        env.calculator(expression="1 + 1")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="must not contain the tags"):
        env.answer("<answer>3</answer>")
    assert env.calculator(expression="1 +").startswith("error:")  # a tool error is a result
    with pytest.raises(UnknownEnvError, match="Did you mean"):
        environment_factory("LLMTrainer/Calculatr-v0")
    with pytest.raises(ConfigError, match="seed must be an int"):
        environment_factory("LLMTrainer/Calculator-v0", seed="0")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot change a served env"):
        environment_factory("LLMTrainer/Calculator-v0", base_url="http://x:1", difficulty=2)


@pytest.mark.parametrize("transport", ["ws", "http"])
def test_the_adapter_plays_a_served_env_the_same_way(
    serve_env: ServerFactory, transport: str
) -> None:
    env_id = "LLMTrainer/MultiTool-v0"
    env_class = environment_factory(env_id, base_url=serve_env(env_id), transport=transport)
    assert env_class.env_id == env_id
    env = env_class()
    for seed in range(3):
        reward, done, _ = _play_oracle(env_id, env, seed)
        assert (reward, done) == (1.0, True)
    env.env.close()


def test_task_dataset_gives_each_row_a_seed_and_the_tool_prompt() -> None:
    dataset = task_dataset("LLMTrainer/Calculator-v0", 3, seed=7, difficulty=2)
    assert dataset["seed"] == [7, 8, 9]
    assert dataset["difficulty"] == [2, 2, 2]
    system, user = dataset[0]["prompt"]
    assert system["role"] == "system"
    assert "calculator" in system["content"]
    assert "answer tool" in system["content"]
    assert user == {"role": "user", "content": ""}


@pytest.mark.slow
def test_trls_grpo_trainer_takes_the_class_and_trains_a_step(tmp_path: Path) -> None:
    """A GRPO step with a tiny random model and TRL's Qwen3 chat template (tool calling
    needs a template TRL can parse): TRL finds the tools and get_reward, and resets each
    rollout's env with its row's seed."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import qwen3_chat_template

    from llm_trainer.agents.tinylm import TinyLMConfig, build_model, build_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = qwen3_chat_template
    tokenizer.eos_token = "<|im_end|>"
    config = TinyLMConfig(
        n_layers=1, hidden_size=16, n_heads=2, intermediate_size=32, max_position_embeddings=4096
    )
    model = build_model(config, seed=0, vocab_size=len(tokenizer))
    env_id = "LLMTrainer/Calculator-v0"
    env_class = environment_factory(env_id)
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=4,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        seed=0,
        chat_template_kwargs={"enable_thinking": False},
    )
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        args=args,
        train_dataset=task_dataset(env_id, 2, seed=100),
        environment_factory=env_class,
    )
    assert sorted(t.__name__ for t in trainer._env_tools[None]) == ["answer", "calculator"]
    assert env_class.__name__ in trainer.reward_func_names
    trainer.train()
    prompts = {llm_trainer.make(env_id).reset(seed=s)[0] for s in (100, 101)}
    pool = trainer._environment_pool[None]
    assert len(pool) == 4
    assert {env.env.unwrapped.task.prompt for env in pool} == prompts
    assert trainer.state.log_history[0][f"rewards/{env_class.__name__}/mean"] == 0.0


_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n) and n not in ("self", "answer", "reset", "get_reward")
)
_TEXT = (
    st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="()"), min_size=1)
    .map(lambda t: " ".join(t.split()))
    .filter(bool)
)
_TYPES = ("string", "integer", "number", "boolean", "array", "object")


@st.composite
def _specs(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(_NAMES, max_size=4, unique=True))
    properties: dict[str, Any] = {}
    for name in names:
        prop: dict[str, Any] = {"type": draw(st.sampled_from(_TYPES)), "description": draw(_TEXT)}
        if prop["type"] == "string" and draw(st.booleans()):
            prop["enum"] = draw(st.lists(_NAMES, min_size=1, max_size=3, unique=True))
        properties[name] = prop
    required = [n for n in names if draw(st.booleans())]
    return {
        "type": "function",
        "function": {
            "name": draw(_NAMES),
            "description": draw(_TEXT),
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


@given(spec=_specs())
def test_any_tool_spec_becomes_a_method_whose_schema_is_that_spec(spec: dict[str, Any]) -> None:
    from transformers.utils import get_json_schema

    method = _tool_method("Test-v0", spec)
    schema = get_json_schema(method)
    schema["function"].pop("return")
    schema["function"]["parameters"].setdefault("required", [])  # transformers omits it when empty
    assert schema == spec
