"""The classic-RL reference on the board: stable-baselines3 PPO choosing tools.

PPO learns in :class:`~llm_trainer.envs.wrappers.EncodeToolChoice` (a tool-use env with hashed
bag-of-words observations and one discrete action per tool plus "answer"): which tool a task
needs, how many calls, and when to answer. Arguments and answers are scripted (the oracle's),
so its score on the board measures tool *choice* only, a visible reference between the random
agent and the oracle.

``train_ppo_baseline(SB3BaselineConfig(), "models/ppo_multitool.zip")`` trains and saves the
model (plus ``ppo_multitool.encoding.yaml`` beside it: the encoding; not ``.json``, so that a
model saved under ``results/`` adds nothing to the leaderboard's ``results/**/*.json``);
``llm-trainer bench --agent sb3:models/ppo_multitool.zip`` plays it through
:class:`SB3ToolChoiceAgent`. stable-baselines3 and torch are imported only when a model is
trained or loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import yaml

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import atomic_write
from llm_trainer.envs.registration import make
from llm_trainer.envs.tooluse.base import ToolUseEnv
from llm_trainer.envs.wrappers.encode_tool_choice import (
    DEFAULT_TOOLS,
    EncodeToolChoice,
    ToolChoiceCodec,
)

#: How the encoding file of a model is named: never ``.json`` (see the module docstring).
ENCODING_SUFFIX = ".encoding.yaml"


@dataclass(frozen=True, slots=True)
class SB3BaselineConfig:
    """PPO on an encoded tool-use env; small enough to train in seconds on a CPU."""

    env_id: str = "LLMTrainer/MultiTool-v0"
    """The tool-use env to learn in."""
    difficulties: tuple[int, ...] = (1, 2, 3)
    """Drawn uniformly at every reset."""
    total_timesteps: int = 8192
    """Env steps of training."""
    seed: int = 0
    """Seeds PPO, torch and the env (training is reproducible on one machine)."""
    n_hash: int = 64
    """Buckets of the hashed bag of prompt words."""
    n_steps: int = 512
    """Steps per rollout."""
    batch_size: int = 128
    """Minibatch size."""
    learning_rate: float = 3e-3
    """Adam step size."""
    ent_coef: float = 0.01
    """Entropy bonus (keeps exploring the tools early on)."""

    def __post_init__(self) -> None:
        if self.total_timesteps < self.n_steps:
            raise ConfigError(
                f"total_timesteps ({self.total_timesteps}) must be >= n_steps ({self.n_steps})"
            )
        if self.n_steps % self.batch_size:
            raise ConfigError(
                f"n_steps ({self.n_steps}) must be a multiple of batch_size ({self.batch_size})"
            )


def make_encoded_env(config: SB3BaselineConfig) -> EncodeToolChoice:
    """The training env of ``config``."""
    return EncodeToolChoice(
        make(config.env_id), n_hash=config.n_hash, difficulties=config.difficulties
    )


def encoding_path(model: Path) -> Path:
    """The encoding file of a model: ``ppo.zip`` -> ``ppo.encoding.yaml``.

    >>> encoding_path(Path("models/ppo.zip")).as_posix()
    'models/ppo.encoding.yaml'
    """
    return model.with_suffix(ENCODING_SUFFIX)


def train_ppo_baseline(config: SB3BaselineConfig, out: str | Path) -> Path:
    """Train PPO and save it to ``out`` (a ``.zip``), with the encoding beside it
    (:func:`encoding_path`).

    Returns:
        The path of the saved model.
    """
    import torch
    from stable_baselines3 import PPO

    out = Path(out)
    if out.suffix != ".zip":
        raise ConfigError(f"the model file must end in .zip, got {out}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 2-layer MLP: threads only add overhead (and nondeterminism)
    try:
        env = make_encoded_env(config)
        model = PPO(
            "MlpPolicy",
            env,
            n_steps=config.n_steps,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            ent_coef=config.ent_coef,
            seed=config.seed,
            device="cpu",
            verbose=0,
        )
        model.learn(total_timesteps=config.total_timesteps)
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(out)
    finally:
        torch.set_num_threads(threads)
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
    encoding = {"tools": list(env.codec.tools), "n_hash": config.n_hash, "config": settings}
    atomic_write(encoding_path(out), yaml.safe_dump(encoding, sort_keys=False).encode())
    return out


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
                "llm_trainer.benchmarks.sb3_baseline.train_ppo_baseline)"
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


def encoded_success_rate(
    env: EncodeToolChoice,
    choose: Any,
    seeds: Sequence[int],
) -> float:
    """Success rate of ``choose(features) -> action`` in ``env`` over ``seeds`` (one episode
    each); e.g. a trained model's greedy action, or a uniformly random one."""
    wins = 0
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(np.int64(choose(obs)))
            done = terminated or truncated
        wins += bool(info["success"])
    return wins / len(seeds)
