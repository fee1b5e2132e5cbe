"""PPO for LLM agents over multi-turn env episodes (ours: TRL has no PPOTrainer since 1.13).

:class:`PPOTrainer` (``trainer.py``) reads top to bottom like cleanrl's ``ppo.py``; the pure
tensor math (episode packing, GAE over generated tokens, the clipped losses) is in ``core.py``,
the settings are :class:`~llm_trainer.algorithms.ppo.config.PPOSettings` (also ``PPOConfig``),
and :class:`PPOAlgorithm` (``algorithm: ppo``) runs it from an experiment.
"""

from typing import TYPE_CHECKING, Any

from llm_trainer.algorithms.ppo.config import PPOSettings
from llm_trainer.algorithms.ppo.config import PPOSettings as PPOConfig
from llm_trainer.algorithms.ppo.core import TokenRow, gae, pack_episode, ppo_losses

if TYPE_CHECKING:
    from llm_trainer.algorithms.ppo.trainer import PPOAlgorithm, PPOTrainer


def __getattr__(name: str) -> Any:
    if name in ("PPOTrainer", "PPOAlgorithm"):  # imports transformers: only when used
        from llm_trainer.algorithms.ppo import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PPOAlgorithm",
    "PPOConfig",
    "PPOSettings",
    "PPOTrainer",
    "TokenRow",
    "gae",
    "pack_episode",
    "ppo_losses",
]
