"""The pieces of PPO that are pure tensor math, testable by hand.

* :func:`pack_episode` turns a recorded multi-turn episode into token rows: the prompt of the
  first turn, each generated completion (``action_mask`` 1) and, between them, the tokens the
  *environment* added to the context (tool results, chat-template markers; ``action_mask`` 0,
  never trained on). It uses the token ids and log-probs recorded at sampling time.
* :func:`token_rewards` places each step's reward on the last token the agent generated in
  that step, plus the per-token KL penalty when the KL is in the reward.
* :func:`gae` computes generalized advantage estimates over the *generated* tokens of an
  episode, in order, skipping the environment's tokens.
* :func:`ppo_losses` computes the clipped policy loss, the clipped value loss and the entropy,
  as masked means over generated tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_trainer.core.trajectory import Trajectory

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, slots=True)
class TokenRow:
    """One sequence of an episode, as the model sees it.

    Attributes:
        tokens: The token ids (prompt, completions and the env tokens between them).
        action_mask: 1 for a token the agent generated (trained on), 0 for context.
        logprobs: The log-prob recorded when each generated token was sampled (0 elsewhere).
        rewards: The env reward at the last generated token of each step (0 elsewhere).
    """

    tokens: tuple[int, ...]
    action_mask: tuple[int, ...]
    logprobs: tuple[float, ...]
    rewards: tuple[float, ...]

    @property
    def num_actions(self) -> int:
        return sum(self.action_mask)


def pack_episode(trajectory: Trajectory, step_rewards: Sequence[float]) -> list[TokenRow]:
    """The episode's tokens as rows; one row when each turn's prompt extends the previous
    context (the usual case), a new row wherever it does not (e.g. memory dropped old turns).

    Raises:
        ValueError: when a step has no recorded tokens or log-probs (a scripted policy, or a
            backend that does not report them), or ``step_rewards`` has the wrong length.
    """
    if len(step_rewards) != len(trajectory.steps):
        raise ValueError(
            f"{len(step_rewards)} rewards for an episode of {len(trajectory.steps)} steps"
        )
    rows: list[TokenRow] = []
    tokens: list[int] = []
    mask: list[int] = []
    logprobs: list[float] = []
    rewards: list[float] = []

    def flush() -> None:
        if tokens:
            rows.append(TokenRow(tuple(tokens), tuple(mask), tuple(logprobs), tuple(rewards)))
        del tokens[:], mask[:], logprobs[:], rewards[:]

    for index, (step, reward) in enumerate(zip(trajectory.steps, step_rewards, strict=True)):
        prompt, completion = step.prompt_token_ids, step.completion_token_ids
        if not prompt or not completion or len(step.logprobs) != len(completion):
            raise ValueError(
                f"step {index} of episode seed={trajectory.seed} has no recorded tokens and "
                "log-probs: PPO learns from what an LLM policy sampled"
            )
        if tokens and tuple(prompt[: len(tokens)]) == tuple(tokens):
            context = prompt[len(tokens) :]
        else:
            flush()
            context = prompt
        tokens.extend(context)
        mask.extend([0] * len(context))
        logprobs.extend([0.0] * len(context))
        rewards.extend([0.0] * len(context))
        tokens.extend(completion)
        mask.extend([1] * len(completion))
        logprobs.extend(step.logprobs)
        rewards.extend([0.0] * (len(completion) - 1) + [float(reward)])
    flush()
    return rows


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns over the generated tokens of each row (``mask`` 1).

    Rows are ``[batch, time]``; positions with ``mask`` 0 are skipped: the value after the
    last generated token of a turn is the value of the first generated token of the next turn
    (the env's tokens in between are not decisions). The value after the last generated token
    of the row is 0 (the episode ended). Returns zeros at masked positions.

    >>> import torch
    >>> r = torch.tensor([[0.0, 0.0, 0.0, 1.0]]); v = torch.tensor([[0.5, 9.0, 0.5, 0.5]])
    >>> m = torch.tensor([[1, 0, 1, 1]])
    >>> adv, ret = gae(r, v, m, gamma=1.0, lam=1.0)
    >>> adv.tolist(), ret.tolist()
    ([[0.5, 0.0, 0.5, 0.5]], [[1.0, 0.0, 1.0, 1.0]])
    """
    import torch

    mask_f = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    batch, length = values.shape
    next_value = torch.zeros(batch, dtype=values.dtype, device=values.device)
    next_adv = torch.zeros_like(next_value)
    for t in range(length - 1, -1, -1):
        m = mask_f[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = delta + gamma * lam * next_adv
        advantages[:, t] = torch.where(m.bool(), adv_t, torch.zeros_like(adv_t))
        # carry through masked positions unchanged
        next_value = torch.where(m.bool(), values[:, t], next_value)
        next_adv = torch.where(m.bool(), adv_t, next_adv)
    returns = torch.where(mask_f.bool(), advantages + values, torch.zeros_like(values))
    return advantages, returns


def masked_mean(
    x: torch.Tensor, mask: torch.Tensor, denominator: float | None = None
) -> torch.Tensor:
    """Mean of ``x`` over ``mask`` (or the sum divided by ``denominator``)."""
    total = (x * mask).sum()
    return total / (denominator if denominator is not None else mask.sum().clamp(min=1))


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the masked positions (zeros elsewhere)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * (var + 1e-8).rsqrt() * mask


@dataclass(frozen=True, slots=True)
class Losses:
    """The terms of one PPO loss (each a scalar tensor)."""

    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor
    kl: torch.Tensor
    clip_fraction: torch.Tensor
    approx_kl: torch.Tensor


def ppo_losses(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_range: float,
    clip_range_value: float,
    vf_coef: float,
    ent_coef: float,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    denominator: float | None = None,
) -> Losses:
    """Clipped PPO objective over the generated tokens (``mask`` 1).

    ``denominator`` normalises sums over a micro-batch by the number of generated tokens in
    the whole mini-batch, so gradient accumulation gives the same update as one big batch.
    ``ref_logprobs`` (with ``kl_coef``) adds the k3 KL estimate to the loss (``kl_mode:
    loss``).
    """
    import torch

    mask_f = mask.to(new_logprobs.dtype)
    log_ratio = new_logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    pg1 = -advantages * ratio
    pg2 = -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    policy = masked_mean(torch.maximum(pg1, pg2), mask_f, denominator)
    v_loss = (new_values - returns) ** 2
    if clip_range_value > 0:
        clipped = old_values + torch.clamp(
            new_values - old_values, -clip_range_value, clip_range_value
        )
        v_loss = torch.maximum(v_loss, (clipped - returns) ** 2)
    value = 0.5 * masked_mean(v_loss, mask_f, denominator)
    ent = masked_mean(entropy, mask_f, denominator)
    if ref_logprobs is not None and kl_coef:
        d = ref_logprobs - new_logprobs
        kl = masked_mean(torch.exp(d) - d - 1, mask_f, denominator)
    else:
        kl = torch.zeros((), dtype=new_logprobs.dtype, device=new_logprobs.device)
    total = policy + vf_coef * value - ent_coef * ent + kl_coef * kl
    with torch.no_grad():
        clip_fraction = masked_mean(((ratio - 1).abs() > clip_range).to(mask_f.dtype), mask_f)
        approx_kl = masked_mean((ratio - 1) - log_ratio, mask_f)
    return Losses(total, policy, value, ent, kl, clip_fraction, approx_kl)
