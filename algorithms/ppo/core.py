"""The pieces of PPO that are pure tensor math, testable by hand.

* :func:`pack_episode` turns a recorded multi-turn episode into token rows: the prompt of the
  first turn, each generated completion (``action_mask`` 1) and, between them, the tokens the
  *environment* added to the context (tool results, chat-template markers; ``action_mask`` 0,
  never trained on). It uses the token ids and log-probs recorded at sampling time.
* :func:`token_rewards` places each step's reward on the last token the agent generated in
  that step, plus the per-token KL penalty when the KL is in the reward.
* :func:`gae` computes generalized advantage estimates over the *generated* tokens of an
  episode, in order, skipping the environment's tokens; :func:`episode_gae` runs it over whole
  episodes whose tokens :func:`pack_episode` split into several rows.
* :func:`token_logprobs` gives the log-prob (and, if asked, the entropy) of each sampled token
  from the logits, chunk by chunk, without a second ``[batch, time, vocabulary]`` tensor.
* :func:`ppo_losses` computes the clipped policy loss, the clipped value loss and the entropy,
  as masked means over generated tokens.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    of the row is 0 (the episode ended; :func:`episode_gae` continues an episode split over
    several rows). Returns zeros at masked positions.

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


def episode_gae(
    rewards: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
    mask: Sequence[torch.Tensor],
    episodes: Sequence[int],
    *,
    gamma: float,
    lam: float,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """:func:`gae` over whole episodes, whose tokens may be split over several rows.

    Row ``i`` (1-D tensors ``rewards[i]``, ``values[i]``, ``mask[i]``) belongs to episode
    ``episodes[i]``; the rows of an episode are listed in the order they were played (not
    necessarily next to each other). :func:`pack_episode` starts a new row where a turn's
    prompt does not extend the previous context (e.g. the agent's memory dropped old turns),
    but the episode goes on: the value after the last generated token of a row is the value of
    the first generated token of the episode's next row (discounted as usual, and its advantage
    flows back through ``gamma * lam``); only the episode's last row ends with 0. Each
    episode's rows are concatenated in order, so the result is exactly that of the episode
    packed in one row (padding and env tokens are ``mask`` 0: skipped).

    Returns:
        The advantages and returns of each row (views of one tensor per call).

    >>> import torch
    >>> one = episode_gae([torch.tensor([0.0, 0.0, 1.0])], [torch.tensor([0.5, 0.5, 0.5])],
    ...                   [torch.tensor([1, 0, 1])], [0], gamma=1.0, lam=0.5)
    >>> split = episode_gae([torch.tensor([0.0]), torch.tensor([0.0, 1.0])],
    ...                     [torch.tensor([0.5]), torch.tensor([0.5, 0.5])],
    ...                     [torch.tensor([1]), torch.tensor([0, 1])], [0, 0],
    ...                     gamma=1.0, lam=0.5)
    >>> torch.cat(split[0]).tolist() == one[0][0].tolist() == [0.25, 0.0, 0.5]
    True
    """
    import torch

    if not len(rewards) == len(values) == len(mask) == len(episodes):
        raise ValueError(
            f"{len(rewards)} reward rows, {len(values)} value rows, {len(mask)} mask rows "
            f"and {len(episodes)} episode indices: one of each per row"
        )
    if not rewards:
        return [], []
    groups: dict[int, list[int]] = {}
    for row, episode in enumerate(episodes):
        groups.setdefault(episode, []).append(row)
    order = list(groups.values())
    lengths = [sum(int(rewards[i].shape[0]) for i in rows) for rows in order]
    width = max(lengths)

    def stacked(parts: Sequence[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        return torch.stack(
            [
                torch.nn.functional.pad(
                    torch.cat([parts[i].to(dtype) for i in rows]), (0, width - n)
                )
                for rows, n in zip(order, lengths, strict=True)
            ]
        )

    dtype = values[0].dtype
    adv, ret = gae(
        stacked(rewards, dtype),
        stacked(values, dtype),
        stacked(mask, dtype),
        gamma=gamma,
        lam=lam,
    )
    advantages: list[Any] = [None] * len(rewards)
    returns: list[Any] = [None] * len(rewards)
    for episode, rows in enumerate(order):
        offset = 0
        for i in rows:
            n = int(rewards[i].shape[0])
            advantages[i] = adv[episode, offset : offset + n]
            returns[i] = ret[episode, offset : offset + n]
            offset += n
    return advantages, returns


#: Elements of one fp32 ``[batch, chunk, vocabulary]`` block in :func:`token_logprobs`
#: (64 MiB; a few such blocks are alive at a time).
LOGPROB_CHUNK_ELEMENTS = 1 << 24


def token_logprobs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    entropy: bool = False,
    chunk_elements: int = LOGPROB_CHUNK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of ``targets`` under ``softmax(logits / temperature)`` and, if asked, the
    entropy of that distribution, in fp32, ``[batch, time]``.

    ``logits[:, t]`` scores ``targets[:, t]``; ``logits`` may be longer in time than
    ``targets`` (a causal LM's logits at its last position predict past the sequence): the
    extra positions are ignored (and get zero gradient), so the caller needs no shifted copy.

    The log-prob is ``z[target] - logsumexp(z)`` with ``z = logits / temperature``, computed
    over chunks of positions of at most ``chunk_elements`` fp32 values each, so no second
    ``[batch, time, vocabulary]`` tensor is ever built beside the logits themselves (the
    plain ``log_softmax(logits.float()).gather(...)`` builds two to four, e.g. 5 GB each for 4
    sequences of 2,048 tokens over Qwen's 151,936-token vocabulary). Backward is by hand over
    the same chunks: only the logits, ``logsumexp`` and the entropy per position are kept for
    it, and the gradient of the logits is the only full-size tensor it allocates (in the
    logits' dtype). The entropy is ``-sum(p * log p)`` per chunk.

    >>> import torch
    >>> logits = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [9.0, 9.0]]])
    >>> logp, ent = token_logprobs(logits, torch.tensor([[1, 0]]), entropy=True)
    >>> [round(x, 4) for x in logp[0].tolist()], [round(x, 4) for x in ent[0].tolist()]
    ([-0.6931, -0.1269], [0.6931, 0.3653])
    """
    if targets.dim() != 2 or logits.dim() != 3 or logits.shape[:1] != targets.shape[:1]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)}: expected "
            "[batch, time, vocabulary] and [batch, time]"
        )
    if logits.shape[1] < targets.shape[1]:
        raise ValueError(f"{logits.shape[1]} positions of logits for {targets.shape[1]} targets")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    batch, vocab = logits.shape[0], logits.shape[2]
    chunk = max(1, chunk_elements // max(1, batch * vocab))
    logp, ent = _token_logprobs_function().apply(
        logits, targets, float(temperature), entropy, chunk
    )
    return logp, ent


@functools.cache
def _token_logprobs_function() -> Any:
    """The ``torch.autograd.Function`` behind :func:`token_logprobs` (built on first use, so
    importing this module does not import torch)."""
    import torch

    def scaled(logits: torch.Tensor, start: int, end: int, temperature: float) -> torch.Tensor:
        """A fresh fp32 copy of the chunk, divided by the temperature (safe to change in
        place: never a view of the logits)."""
        z = logits[:, start:end].to(torch.float32, copy=True)
        return z.div_(temperature) if temperature != 1.0 else z

    # Each chunk keeps at most two chunk-sized fp32 blocks alive (in-place steps below).
    class TokenLogProbs(torch.autograd.Function):
        @staticmethod
        def forward(
            ctx: Any,
            logits: torch.Tensor,
            targets: torch.Tensor,
            temperature: float,
            with_entropy: bool,
            chunk: int,
        ) -> tuple[torch.Tensor, torch.Tensor | None]:
            batch, length = targets.shape
            logp = torch.empty(batch, length, dtype=torch.float32, device=logits.device)
            lse = torch.empty_like(logp)
            ent = torch.empty_like(logp) if with_entropy else None
            for start in range(0, length, chunk):
                end = min(length, start + chunk)
                z = scaled(logits, start, end, temperature)
                lse_c = torch.logsumexp(z, dim=-1)
                logp[:, start:end] = z.gather(-1, targets[:, start:end, None]).squeeze(-1) - lse_c
                lse[:, start:end] = lse_c
                if ent is not None:
                    log_p = z.sub_(lse_c.unsqueeze(-1))  # z is now log p
                    ent[:, start:end] = -log_p.exp().mul_(log_p).sum(-1)
            ctx.save_for_backward(logits, targets, lse, ent)
            ctx.temperature, ctx.chunk = temperature, chunk
            return logp, ent

        @staticmethod
        def backward(
            ctx: Any, grad_logp: torch.Tensor | None, grad_ent: torch.Tensor | None
        ) -> tuple[torch.Tensor, None, None, None, None]:
            logits, targets, lse, ent = ctx.saved_tensors
            temperature, chunk = ctx.temperature, ctx.chunk
            grad = torch.zeros_like(logits)  # positions past the targets: no gradient
            for start in range(0, targets.shape[1], chunk):
                end = min(targets.shape[1], start + chunk)
                log_p = scaled(logits, start, end, temperature).sub_(lse[:, start:end, None])
                p = log_p.exp()
                from_entropy = None
                if grad_ent is not None and ent is not None:  # dH/dz = -p (log p + H)
                    from_entropy = (
                        log_p.add_(ent[:, start:end, None])
                        .mul_(p)
                        .mul_(grad_ent[:, start:end, None])
                    )
                if grad_logp is not None:  # d log p[target] / dz = onehot(target) - p
                    gl = grad_logp[:, start:end, None].float()
                    g = p.mul_(-gl)
                    g.scatter_add_(-1, targets[:, start:end, None], gl)
                    if from_entropy is not None:
                        g.sub_(from_entropy)
                elif from_entropy is not None:
                    g = from_entropy.neg_()
                else:
                    g = p.zero_()
                if temperature != 1.0:
                    g.div_(temperature)
                grad[:, start:end] = g  # cast to the logits' dtype in the copy
            return grad, None, None, None, None

    return TokenLogProbs


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
    """The terms of one PPO loss (each a scalar tensor; ``entropy`` is ``None`` when it was
    not computed)."""

    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor | None
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
    mask: torch.Tensor,
    *,
    entropy: torch.Tensor | None = None,
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
    loss``). ``entropy`` (per token) is needed only for an entropy bonus (``ent_coef`` > 0):
    without it, ``Losses.entropy`` is ``None``.

    Raises:
        ValueError: for ``ent_coef`` > 0 without ``entropy``.
    """
    import torch

    if ent_coef and entropy is None:
        raise ValueError(f"ent_coef={ent_coef} needs the per-token entropy")

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
    ent = masked_mean(entropy, mask_f, denominator) if entropy is not None else None
    if ref_logprobs is not None and kl_coef:
        d = ref_logprobs - new_logprobs
        kl = masked_mean(torch.exp(d) - d - 1, mask_f, denominator)
    else:
        kl = torch.zeros((), dtype=new_logprobs.dtype, device=new_logprobs.device)
    total = policy + vf_coef * value + kl_coef * kl
    if ent is not None and ent_coef:
        total = total - ent_coef * ent
    with torch.no_grad():
        clip_fraction = masked_mean(((ratio - 1).abs() > clip_range).to(mask_f.dtype), mask_f)
        approx_kl = masked_mean((ratio - 1) - log_ratio, mask_f)
    return Losses(total, policy, value, ent, kl, clip_fraction, approx_kl)
