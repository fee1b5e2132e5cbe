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
:class:`~llm_trainer.agents.sb3_agent.SB3ToolChoiceAgent`. stable-baselines3 and torch are
imported only when a model is trained or loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llm_trainer.agents.sb3_agent import ENCODING_SUFFIX, SB3ToolChoiceAgent, encoding_path
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import atomic_write
from llm_trainer.envs.registration import make
from llm_trainer.envs.wrappers.encode_tool_choice import EncodeToolChoice

__all__ = [
    "ENCODING_SUFFIX",
    "SB3BaselineConfig",
    "SB3ToolChoiceAgent",
    "encoded_success_rate",
    "encoding_path",
    "make_encoded_env",
    "train_ppo_baseline",
]


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
