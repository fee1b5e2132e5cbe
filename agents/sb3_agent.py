"""The stable-baselines3 tool-choice agent: a trained classic-RL policy playing tool-use envs.

:class:`SB3ToolChoiceAgent` plays a model trained by
:func:`llm_trainer.algorithms.sb3_baseline.train_ppo_baseline` (``llm-trainer bench --agent
sb3:models/ppo_multitool.zip``): the model chooses the tool (or to answer) from encoded
observations (:class:`~llm_trainer.envs.wrappers.EncodeToolChoice`); arguments and answers are
scripted, so it measures tool *choice* only. stable-baselines3 and torch are imported only when
a model is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.tooluse.base import ToolUseEnv
from llm_trainer.envs.wrappers.encode_tool_choice import DEFAULT_TOOLS, ToolChoiceCodec

#: How the encoding file of a model is named: never ``.json`` (see the module docstring).
ENCODING_SUFFIX = ".encoding.yaml"


def encoding_path(model: Path) -> Path:
    """The encoding file of a model: ``ppo.zip`` -> ``ppo.encoding.yaml``.

    >>> encoding_path(Path("models/ppo.zip")).as_posix()
    'models/ppo.encoding.yaml'
    """
    return model.with_suffix(ENCODING_SUFFIX)


class SB3ToolChoiceAgent:
    """Plays a trained tool-choice model in a text tool-use env (the :class:`Policy` protocol).

    Like the oracle it reads the task's plan through ``env.unwrapped`` for the arguments of the
    tools it chooses; the choices are the model's (greedy).
    """

    def __init__(self, model: Any, env: gym.Env[Any, Any], encoding: Mapping[str, Any]) -> None:
        base = env.unwrapped
        if not isinstance(base, ToolUseEnv):
            raise ConfigError(f"the sb3 tool-choice agent needs a tool-use env, got {type(base)}")
        self._env = base
        max_turns = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 10
        self.codec = ToolChoiceCodec(
            tuple(encoding.get("tools", DEFAULT_TOOLS)),
            int(encoding.get("n_hash", 64)),
            max_turns,
            base.tools.specs,
        )
        self.model = model
        expected = (self.codec.size,)
        if tuple(model.observation_space.shape) != expected:
            raise ConfigError(
                f"model observations have shape {model.observation_space.shape}, the encoding "
                f"gives {expected}"
            )
        self._failed_before = 0

    @classmethod
    def load(cls, path: Path, env: gym.Env[Any, Any]) -> SB3ToolChoiceAgent:
        """Load a model saved by :func:`train_ppo_baseline`.

        Raises:
            ConfigError: when the model or its encoding file is missing.
        """
        if not path.is_file():
            raise ConfigError(
                f"sb3 model {path} does not exist (train one with "
                "llm_trainer.algorithms.sb3_baseline.train_ppo_baseline)"
            )
        meta = encoding_path(path)
        if not meta.is_file():
            legacy = path.with_suffix(".json")
            fix = (
                f"; it was saved by an older version as {legacy}: rename it (mv {legacy} {meta})"
                if legacy.is_file()
                else ""
            )
            raise ConfigError(f"sb3 model {path} has no encoding file {meta}{fix}")
        import torch
        from stable_baselines3 import PPO

        torch.set_num_threads(1)
        model = PPO.load(path, device="cpu")
        encoding = yaml.safe_load(meta.read_text(encoding="utf-8"))
        if not isinstance(encoding, dict):
            raise ConfigError(f"{meta}: not an encoding (a mapping with 'tools' and 'n_hash')")
        return cls(model, env, encoding)

    def reset(self, *, seed: int | None = None) -> None:
        """Greedy actions: nothing to seed."""

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        state = self._env.get_state()
        if state.turn == 0:
            self.codec.start(observation)
        else:
            self.codec.observe(state.n_failed_calls > self._failed_before)
        self._failed_before = state.n_failed_calls
        action, _ = self.model.predict(self.codec.features(), deterministic=True)
        return self.codec.decode(int(action), state.task)

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        if len(observations) != 1:
            raise ValueError("SB3ToolChoiceAgent is bound to one env: batches of one only")
        return [self.act(observations[0], infos[0])]
