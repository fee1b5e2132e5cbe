"""Rewards for tool use: the env's success reward plus configurable shaping (seed 001).

The env pays +1 for a correct final answer after every required tool ran, and -0.1 for an
invalid action (see :class:`~llm_trainer.envs.tooluse.base.ToolUseEnv`). Online RL optimises
that reward weighted by ``env_weight``, plus, at the end of the episode, a bonus per property
of good tool use the episode had (:class:`~llm_trainer.algorithms.config.RewardConfig`):

======================  ===================  ==============================================
term                    env metric           paid when
======================  ===================  ==============================================
``format_bonus``        ``format_ok``        every action was a well-formed tool call/answer
``tool_bonus``          ``tool_correct``     the tools called are exactly the right ones
``execution_bonus``     ``exec_ok``          at least one call, and every call ran cleanly
``step_penalty``        (every step)         subtracted per step: shorter episodes
``reward_model_weight`` (a reward model)     times the reward model's score of the episode
======================  ===================  ==============================================

Shaping helps a weak agent find the format and the tool before it finds the answer; keep the
sum of the bonuses below the success reward so that success always pays most.

>>> from llm_trainer.algorithms.config import RewardConfig
>>> from llm_trainer.core.trajectory import Step, Trajectory
>>> ok = {"format_ok": True, "tool_correct": True, "exec_ok": True, "answer_correct": False,
...       "success": False}
>>> steps = (Step("<tool_call>...</tool_call>", "12", "tool", 0.0, False, False, ok),
...          Step("<answer>13</answer>", "", "user", 0.0, True, False, ok))
>>> t = Trajectory("LLMTrainer/Calculator-v0", 0, 1, "", (), "What is 3*4?", steps)
>>> step_rewards(t, RewardConfig(format_bonus=0.1, tool_bonus=0.2))
[0.0, 0.30000000000000004]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from llm_trainer.algorithms.config import RewardConfig
from llm_trainer.core.trajectory import Trajectory

SHAPING_TERMS: Mapping[str, str] = {
    "format_bonus": "format_ok",
    "tool_bonus": "tool_correct",
    "execution_bonus": "exec_ok",
}
"""Each shaping weight of :class:`RewardConfig` and the env metric that pays it."""


def shaping_bonus(metrics: Mapping[str, bool], config: RewardConfig) -> float:
    """The end-of-episode bonus earned by an episode's final metrics."""
    return sum(
        float(getattr(config, term))
        for term, metric in SHAPING_TERMS.items()
        if metrics.get(metric)
    )


def shaped_rewards(
    env_rewards: Sequence[float],
    final_metrics: Mapping[str, bool],
    config: RewardConfig,
    reward_model_score: float | None = None,
) -> list[float]:
    """Per-step rewards of one episode from its env rewards and final metrics.

    The shaping bonus and the reward model's score are paid on the last step (an episode with
    no step gets nothing).
    """
    if reward_model_score is None and config.reward_model_weight:
        raise ValueError("reward.reward_model_weight is set: pass the reward model's score")
    rewards = [config.env_weight * float(r) - config.step_penalty for r in env_rewards]
    if rewards:
        rewards[-1] += shaping_bonus(final_metrics, config)
        if reward_model_score is not None:
            rewards[-1] += config.reward_model_weight * float(reward_model_score)
    return rewards


def step_rewards(
    trajectory: Trajectory, config: RewardConfig, reward_model_score: float | None = None
) -> list[float]:
    """One shaped reward per step of ``trajectory`` (see :func:`shaped_rewards`)."""
    return shaped_rewards(
        [s.reward for s in trajectory.steps], trajectory.metrics, config, reward_model_score
    )


def episode_return(
    trajectory: Trajectory, config: RewardConfig, reward_model_score: float | None = None
) -> float:
    """The undiscounted shaped return of ``trajectory``."""
    return sum(step_rewards(trajectory, config, reward_model_score))
