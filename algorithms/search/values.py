"""What a leaf is worth: :class:`RewardEstimator` and its four sources of value.

A new leaf of the tree gets a value before the simulation is backed up. Each estimator returns,
for a batch of leaves (:class:`~llm_trainer.algorithms.search.context.Request`), the return
the **player to move** there can expect from that state on (the search negates it for the
opponent in a two-player game):

=========================  ================================================================
:class:`TerminalValue`     nothing but the env's own rewards: the value of a leaf that is not
                           terminal is a constant (0). The search learns only from episodes
                           that end inside the tree; cheap, and exact when they do.
:class:`RolloutValue`      plays on from the leaf with a rollout policy (any
                           :class:`~llm_trainer.algorithms.search.proposers.Proposer`, one
                           sample per step, every leaf of the batch in lockstep) and sums the
                           rewards: classic MCTS.
:class:`SelfEvaluation`    asks the LLM how likely the attempt is to succeed (0-10), greedily,
                           in one batched call (LATS' value function, Zhou et al., 2024).
:class:`ValueModel`        a trained value function: PPO's value head on the policy's last
                           hidden state (or PPO's separate value model), read from a PPO
                           checkpoint (:meth:`ValueModel.from_ppo_checkpoint`).
=========================  ================================================================

The env's terminal reward is always used where an episode ends inside the tree: a terminal
leaf is worth 0 from there on, and the rewards on the path to it are backed up exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from llm_trainer.agents.backends.base import SamplingConfig, render_chat
from llm_trainer.algorithms.search.context import Request, chat_prompt
from llm_trainer.algorithms.search.env import SearchEnv
from llm_trainer.algorithms.search.proposers import Proposer
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.seeding import derive_seed

if TYPE_CHECKING:
    from llm_trainer.agents.backends import Backend


@runtime_checkable
class RewardEstimator(Protocol):
    """Values leaves: the expected return of the player to move, one per request."""

    calls: int
    """Calls so far (one per batch of leaves)."""

    def estimate(self, requests: Sequence[Request], env: SearchEnv, seed: int) -> list[float]:
        """One value per request; ``env`` may be stepped (the search restores it after)."""
        ...


class TerminalValue:
    """Only the env's rewards count: a non-terminal leaf is worth ``default``.

    Args:
        default: The value of a leaf whose episode has not ended.
    """

    def __init__(self, default: float = 0.0) -> None:
        self.default = float(default)
        self.calls = 0

    def estimate(self, requests: Sequence[Request], env: SearchEnv, seed: int) -> list[float]:
        self.calls += 1
        return [self.default] * len(requests)


class RolloutValue:
    """Plays each leaf on with ``proposer`` (its first candidate, one sample per step) until the
    episode ends, ``max_steps`` pass, or the episode's time limit; the discounted sum of the
    rewards of the leaf's player to move is the value. Every leaf of a batch advances in
    lockstep: one proposer call per step for all of them.

    Args:
        proposer: The rollout policy.
        max_steps: Most steps per rollout.
        gamma: Discount per step.
    """

    def __init__(self, proposer: Proposer, *, max_steps: int = 8, gamma: float = 1.0) -> None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"RolloutValue.max_steps must be an int >= 1, got {max_steps!r}")
        if not 0 < gamma <= 1:
            raise ConfigError(f"RolloutValue.gamma must be in (0, 1], got {gamma!r}")
        self.proposer = proposer
        self.max_steps = max_steps
        self.gamma = gamma
        self.calls = 0
        self.steps = 0
        """Env steps taken by rollouts so far."""

    def estimate(self, requests: Sequence[Request], env: SearchEnv, seed: int) -> list[float]:
        self.calls += 1
        current = list(requests)
        returns = [0.0] * len(requests)
        discount = [1.0] * len(requests)
        limits = [
            self.max_steps if r.steps_left is None else min(self.max_steps, r.steps_left)
            for r in requests
        ]
        active = [i for i in range(len(requests)) if limits[i] > 0]
        step = 0
        while active:
            proposals = self.proposer.propose(
                [current[i] for i in active], 1, derive_seed(seed, "rollout", step)
            )
            still = []
            for i, candidates in zip(active, proposals, strict=True):
                action = candidates[0].action if candidates else ""
                t = env.step(current[i].state, action)
                self.steps += 1
                returns[i] += discount[i] * t.rewards[requests[i].to_move]
                discount[i] *= self.gamma
                if not t.terminal and step + 1 < limits[i]:
                    current[i] = current[i].after(action, t.state, t.observation, t.info, t.to_move)
                    still.append(i)
            active = still
            step += 1
        return returns


#: The question :class:`SelfEvaluation` appends after the leaf's last observation.
SELF_EVALUATION_QUESTION = (
    "Stop and judge the attempt so far: how likely is it to end in a correct, complete "
    "solution? Reply with one number from 0 (hopeless) to 10 (certain), as <answer>N</answer>."
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_rating(text: str, scale: float = 10.0) -> float | None:
    """The rating in ``text`` as a fraction of ``scale`` (clipped to [0, 1]): the number inside
    ``<answer>...</answer>`` when there is one, else the first number; ``None`` if there is none.

    >>> parse_rating("<answer>7</answer>"), parse_rating("I'd say 12/10"), parse_rating("no")
    (0.7, 1.0, None)
    """
    inside = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    match = _NUMBER.search(inside.group(1) if inside else text)
    if match is None:
        return None
    return min(1.0, max(0.0, float(match.group()) / scale))


class SelfEvaluation:
    """The LLM rates each leaf (:data:`SELF_EVALUATION_QUESTION`), greedily, in one batched call;
    the rating in [0, 10] is mapped onto ``[low, high]``. An answer without a number is worth
    ``default`` (and counted in :attr:`unparsed`).

    Args:
        backend: The model's backend.
        low: The value of a rating of 0 (the env's worst return).
        high: The value of a rating of 10 (the env's best return).
        default: The value of an unreadable rating; ``None``: the middle of ``[low, high]``.
        max_new_tokens: Longest rating answer in tokens.
        question: The question appended after the leaf.
        system_prompt: Replaces the env's system prompt (``None`` keeps it).
        task_template: Puts the task through it (as the agent does).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        low: float = 0.0,
        high: float = 1.0,
        default: float | None = None,
        max_new_tokens: int = 16,
        question: str = SELF_EVALUATION_QUESTION,
        system_prompt: str | None = None,
        task_template: str | None = None,
    ) -> None:
        if not low < high:
            raise ConfigError(f"SelfEvaluation: low ({low}) must be below high ({high})")
        self.backend = backend
        self.low, self.high = float(low), float(high)
        self.default = (self.low + self.high) / 2 if default is None else float(default)
        self.sampling = SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens)
        self.question = question
        self.system_prompt = system_prompt
        self.task_template = task_template
        self.calls = 0
        self.unparsed = 0
        """Ratings that held no number (worth ``default``)."""

    def estimate(self, requests: Sequence[Request], env: SearchEnv, seed: int) -> list[float]:
        if not requests:
            return []
        self.calls += 1
        prompts = [
            chat_prompt(
                r,
                system_prompt=self.system_prompt,
                task_template=self.task_template,
                reflections=False,
                extra=({"role": "user", "content": self.question},),
            )
            for r in requests
        ]
        out = self.backend.chat(prompts, replace(self.sampling, seed=seed))
        values = []
        for samples in out:
            rating = parse_rating(samples[0].text) if samples else None
            if rating is None:
                self.unparsed += 1
                values.append(self.default)
            else:
                values.append(self.low + (self.high - self.low) * rating)
        return values


class ValueModel:
    """PPO's value function as an estimator: ``head(last hidden state)`` at the last prompt token
    of the leaf's chat prompt, the position whose value PPO's GAE bootstraps the first action
    of a turn from (:class:`~llm_trainer.algorithms.ppo.trainer.PPOTrainer`).

    Args:
        model: The policy (a causal LM); with ``value_model``, only the tokenizer's prompt is
            shared and the value comes from ``value_model``'s body.
        tokenizer: Its tokenizer (with the chat template).
        head: The value head (``torch.nn.Linear(hidden, 1)``).
        value_model: PPO's separate value model (``ppo.value_model: separate``), if any.
        system_prompt: Replaces the env's system prompt, as PPO's agent did.
        task_template: Puts the task through it.
        batch_size: Leaves per forward pass.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        head: Any,
        *,
        value_model: Any = None,
        system_prompt: str | None = None,
        task_template: str | None = None,
        batch_size: int = 16,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.head = head.eval()
        self.value_model = value_model.eval() if value_model is not None else None
        self.system_prompt = system_prompt
        self.task_template = task_template
        self.batch_size = batch_size
        self.calls = 0

    @classmethod
    def from_ppo_checkpoint(
        cls, path: str | Path, *, device: str = "cpu", **kwargs: Any
    ) -> ValueModel:
        """The value function of a PPO checkpoint (``checkpoints/iteration-N``: its
        ``policy/`` and the value head in ``trainer_state.pt``).

        Raises:
            ConfigError: when ``path`` is not a PPO checkpoint.
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from llm_trainer.algorithms.ppo.trainer import ValueHead

        path = Path(path)
        policy, state_file = path / "policy", path / "trainer_state.pt"
        if not (policy.is_dir() and state_file.is_file()):
            raise ConfigError(
                f"{path} is not a PPO checkpoint (expected policy/ and trainer_state.pt)"
            )
        tokenizer = AutoTokenizer.from_pretrained(policy)
        if (policy / "adapter_config.json").is_file():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(policy).merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(policy)
        model = model.to(device)
        state = torch.load(state_file, map_location=device, weights_only=True)
        head = ValueHead.build(int(model.config.hidden_size)).to(device)
        head.load_state_dict(state["value_head"])
        value_model = None
        if state.get("value_model") is not None:
            import copy

            value_model = copy.deepcopy(model)
            value_model.load_state_dict(state["value_model"])
        return cls(model, tokenizer, head, value_model=value_model, **kwargs)

    def prompt_ids(self, request: Request) -> list[int]:
        """The token ids of the leaf's prompt (the chat template with the generation prompt)."""
        prompt = chat_prompt(
            request,
            system_prompt=self.system_prompt,
            task_template=self.task_template,
            reflections=False,
        )
        return render_chat(self.tokenizer, prompt)

    def estimate(self, requests: Sequence[Request], env: SearchEnv, seed: int) -> list[float]:
        import torch

        self.calls += 1
        ids = [self.prompt_ids(r) for r in requests]
        device = next(self.model.parameters()).device
        pad = int(self.tokenizer.pad_token_id or 0)
        values: list[float] = []
        with torch.no_grad():
            for start in range(0, len(ids), self.batch_size):
                chunk = ids[start : start + self.batch_size]
                width = max(len(x) for x in chunk)
                # right padding: a causal model's hidden states at a row's own tokens do not
                # depend on the padding after them, so each row's value is its unpadded one
                tokens = torch.tensor(
                    [x + [pad] * (width - len(x)) for x in chunk], dtype=torch.long, device=device
                )
                attention = torch.tensor(
                    [[1] * len(x) + [0] * (width - len(x)) for x in chunk],
                    dtype=torch.long,
                    device=device,
                )
                if self.value_model is not None:
                    body = getattr(self.value_model, "base_model", self.value_model)
                    hidden = body(input_ids=tokens, attention_mask=attention).last_hidden_state
                else:
                    out = self.model(
                        input_ids=tokens, attention_mask=attention, output_hidden_states=True
                    )
                    hidden = out.hidden_states[-1]
                last = torch.tensor([len(x) - 1 for x in chunk], device=device)
                rows = hidden[torch.arange(len(chunk), device=device), last].float()
                values += [float(v) for v in self.head(rows).squeeze(-1)]
        return values
