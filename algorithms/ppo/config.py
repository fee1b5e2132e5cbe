"""PPO's settings (the ``ppo:`` section of an experiment with ``algorithm: ppo``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from llm_trainer.algorithms.config import (
    NonNegativeInt,
    PositiveInt,
    check_env,
    check_env_kwargs,
)
from llm_trainer.core.config import POSITIVE, PROBABILITY, Range, check_ranges
from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.wrappers.curriculum import CurriculumConfig, check_curriculum


@dataclass(frozen=True)
class PPOSettings:
    """PPO over multi-turn episodes (``algorithm: ppo``); ``train.max_steps`` counts iterations
    (one rollout phase, then ``update_epochs`` passes over it)."""

    env_id: str = "LLMTrainer/Calculator-v0"
    """The env PPO interacts with."""
    difficulty: int = 2
    """Its difficulty (with a ``curriculum``, the curriculum's level decides it instead)."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Extra env constructor arguments (e.g. ``{form: symbols}`` for Calculator-v0)."""
    curriculum: CurriculumConfig | None = None
    """Move the difficulty with the rollouts' success (``envs/wrappers/curriculum.py``): one
    curriculum for all of an iteration's envs, moving between iterations; its level is logged
    as ``curriculum/*`` and saved in checkpoints."""
    episodes_per_iteration: PositiveInt = 64
    """Episodes collected (in lockstep) per iteration."""
    first_seed: NonNegativeInt = 500_000
    """Training episodes use seeds from here on (disjoint from data and held-out seeds)."""
    update_epochs: PositiveInt = 2
    """Passes over each iteration's episodes."""
    num_minibatches: PositiveInt = 2
    """Optimizer steps per epoch (each over ``1/num_minibatches`` of the episodes)."""
    clip_range: Annotated[float, POSITIVE] = 0.2
    """Policy ratio clipping."""
    clip_range_value: Annotated[float, Range(ge=0)] = 0.2
    """Value clipping around the old values (0: off)."""
    vf_coef: Annotated[float, Range(ge=0)] = 0.5
    """Weight of the value loss."""
    ent_coef: Annotated[float, Range(ge=0)] = 0.0
    """Weight of the entropy bonus (0: the entropy is not computed, which saves a
    ``[tokens, vocabulary]`` softmax)."""
    gamma: Annotated[float, PROBABILITY] = 1.0
    """Discount over generated tokens."""
    gae_lambda: Annotated[float, PROBABILITY] = 0.95
    """GAE lambda."""
    kl_coef: Annotated[float, Range(ge=0)] = 0.05
    """Weight of the KL to the frozen reference policy."""
    kl_mode: Literal["reward", "loss"] = "reward"
    """``reward``: -kl_coef * (log p - log p_ref) per token in the reward (InstructGPT);
    ``loss``: an added KL loss term (k3 estimator)."""
    value_lr_multiplier: Annotated[float, POSITIVE] = 10.0
    """The value head's (and value model's) learning rate is ``train.learning_rate`` times
    this: it starts from zero and must catch up with the returns quickly."""
    value_model: Literal["head", "separate"] = "head"
    """``head``: a value head on the policy's last hidden state; ``separate``: a copy of the
    initial model with its own value head (no shared gradients)."""
    whiten_advantages: bool = True
    """Normalise advantages over the iteration's tokens."""
    target_kl: Annotated[float, POSITIVE] | None = None
    """Stop an iteration's epochs early when the approximate KL to the rollout policy passes it."""
    temperature: Annotated[float, POSITIVE] = 1.0
    """Sampling temperature of rollouts. The policy PPO optimises is the tempered
    distribution: at 1.0 the update uses the log-probs recorded at sampling time; otherwise
    they are recomputed at this temperature (from the same weights) before the update."""
    max_new_tokens: PositiveInt = 80
    """Generation budget per turn (a calculator call is about 63 tokens of the tiny model)."""
    max_turns: PositiveInt | None = None
    """Cut a rollout episode after this many actions (``None``: the env's own limit); a cut
    episode ends unsolved. Bounds the longest rows, whose attention costs the most in the
    update."""
    backend: Literal["transformers", "vllm"] = "transformers"
    """Rollout generation: the model in this process, or a vLLM engine whose weights are synced
    from the trained model every iteration."""
    vllm_gpu_memory_utilization: Annotated[float, Range(gt=0, le=1)] = 0.3
    """With ``backend: vllm`` on a GPU: the fraction of GPU memory vLLM may take (weights and
    KV cache); the rest is left to training. (On a CPU vLLM sizes its KV cache itself.)"""

    def __post_init__(self) -> None:
        check_ranges(self, "ppo")
        check_env(self.env_id, self.difficulty, "ppo")
        check_env_kwargs(self.env_id, self.difficulty, self.env_kwargs, "ppo")
        check_curriculum(self.curriculum, self.env_id, "ppo.curriculum")
        if self.num_minibatches > self.episodes_per_iteration:
            raise ConfigError(
                f"ppo.num_minibatches ({self.num_minibatches}) must be <= "
                f"ppo.episodes_per_iteration ({self.episodes_per_iteration})"
            )
