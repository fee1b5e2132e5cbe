"""PPO for LLM agents over multi-turn env episodes (ours: TRL has no PPOTrainer since 1.13).

:class:`PPOTrainer` (``trainer.py``) reads top to bottom like cleanrl's ``ppo.py``; the pure
tensor math (episode packing, GAE over generated tokens, the clipped losses) is in ``core.py``,
and the settings are :class:`~llm_trainer.algorithms.config.PPOSettings` (re-exported here as
``PPOConfig``).
"""

from typing import TYPE_CHECKING, Any

from llm_trainer.algorithms.config import PPOSettings as PPOConfig
from llm_trainer.algorithms.ppo.core import TokenRow, gae, pack_episode, ppo_losses

if TYPE_CHECKING:
    from llm_trainer.algorithms.ppo.trainer import PPOTrainer


def __getattr__(name: str) -> Any:
    if name == "PPOTrainer":  # imports transformers: only when used
        from llm_trainer.algorithms.ppo.trainer import PPOTrainer

        return PPOTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PPOConfig", "PPOTrainer", "TokenRow", "gae", "pack_episode", "ppo_losses"]
