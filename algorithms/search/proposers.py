"""Where candidate actions come from: an LLM sampling many at once, or any policy.

A :class:`Proposer` gets a batch of nodes (:class:`~llm_trainer.algorithms.search.context.
Request`) and returns each node's candidates, deduplicated, with their log-probabilities
(the PUCT priors). :class:`LLMProposer` expands every node of a batch in **one** generation
call: one chat prompt per node, ``n`` samples each (the backend's ``SamplingConfig.n``), which
is where batched search gets its speed (``scripts/bench_mcts.py`` measures it).
:class:`PolicyProposer` turns any :class:`~llm_trainer.agents.policy.Policy` that acts on the
current observation (scripted, random, the oracle) into a proposer. The scripted proposers of
:mod:`~llm_trainer.algorithms.search.scripted` need no model at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from llm_trainer.agents.backends.base import ChatPrompt, SamplingConfig
from llm_trainer.algorithms.search.context import Request, chat_prompt
from llm_trainer.algorithms.search.env import SearchEnv
from llm_trainer.algorithms.search.node import Candidate
from llm_trainer.core.errors import ConfigError

if TYPE_CHECKING:
    from llm_trainer.agents.backends import Backend
    from llm_trainer.agents.llm_agent import LLMAgent
    from llm_trainer.agents.policy import Policy
    from llm_trainer.core.records import Generation


@runtime_checkable
class Proposer(Protocol):
    """Suggests candidate actions for a batch of nodes."""

    calls: int
    """Calls so far (one per batch: what the benchmark counts)."""

    def propose(self, requests: Sequence[Request], n: int, seed: int) -> list[list[Candidate]]:
        """Up to ``n`` distinct candidates per request, best first where the proposer knows
        (the search orders them by log-prob anyway); the same ``seed`` and requests give the
        same candidates."""
        ...


def merge_duplicates(candidates: Iterable[Candidate]) -> list[Candidate]:
    """One candidate per distinct action text, in order of first appearance: the counts add
    up and the highest log-prob is kept (samples of the same text have the same one).

    >>> [(c.action, c.count) for c in merge_duplicates([Candidate("a"), Candidate("b"),
    ...                                                   Candidate("a")])]
    [('a', 2), ('b', 1)]
    """
    merged: dict[str, Candidate] = {}
    for c in candidates:
        seen = merged.get(c.action)
        merged[c.action] = (
            c
            if seen is None
            else replace(seen, logprob=max(seen.logprob, c.logprob), count=seen.count + c.count)
        )
    return list(merged.values())


class LLMProposer:
    """Samples candidates from a language model: one batched generation per call.

    Args:
        backend: Any generation backend (transformers, vLLM, OpenAI-compatible).
        temperature: Sampling temperature of the candidates (0 gives a single candidate).
        top_p: Nucleus sampling.
        max_new_tokens: Longest candidate in tokens.
        prior: How a candidate's token log-probs become its log-prob: ``sum`` (the sequence's
            probability; favours short actions) or ``mean`` (per token; length-neutral).
        system_prompt: Replaces the env's system prompt (``None`` keeps it).
        task_template: Puts the task through it (as ``LLMAgentConfig.task_template``).
        max_prompt_tokens: Token budget of a prompt; ``None``: the model's context less
            ``max_new_tokens``.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 128,
        prior: Literal["sum", "mean"] = "mean",
        system_prompt: str | None = None,
        task_template: str | None = None,
        max_prompt_tokens: int | None = None,
    ) -> None:
        if prior not in ("sum", "mean"):
            raise ConfigError(f"LLMProposer.prior must be 'sum' or 'mean', got {prior!r}")
        self.backend = backend
        self.sampling = SamplingConfig(
            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
        )
        self.prior = prior
        self.system_prompt = system_prompt
        self.task_template = task_template
        self.max_prompt_tokens = max_prompt_tokens
        self.calls = 0
        self.tokens = 0
        """Tokens generated so far (a greedy call's repeated samples counted once)."""
        self.last_prompts: list[ChatPrompt] = []
        """The prompts of the latest call (what the model saw, reflections included)."""

    @classmethod
    def from_agent(
        cls,
        agent: LLMAgent,
        *,
        temperature: float = 1.0,
        prior: Literal["sum", "mean"] = "mean",
        system_prompt: str | None = None,
    ) -> LLMProposer:
        """A proposer that prompts as ``agent`` does (its backend, system prompt, task
        template, token budget and ``max_new_tokens``), sampling at ``temperature``;
        ``system_prompt`` replaces the agent's (an evolved prompt, say)."""
        config = agent.config
        return cls(
            agent.backend,
            temperature=temperature,
            top_p=config.sampling.top_p,
            max_new_tokens=config.sampling.max_new_tokens,
            prior=prior,
            system_prompt=config.system_prompt if system_prompt is None else system_prompt,
            task_template=config.task_template,
            max_prompt_tokens=config.max_prompt_tokens,
        )

    def prompts(self, requests: Sequence[Request], *, reflections: bool = True) -> list[ChatPrompt]:
        """The chat prompt of each request, fitted into the token budget."""
        budget = self.budget()
        return [
            chat_prompt(
                r,
                budget=budget,
                length=self.backend.count_tokens,
                system_prompt=self.system_prompt,
                task_template=self.task_template,
                reflections=reflections,
            )
            for r in requests
        ]

    def budget(self) -> int:
        """The prompt's token budget (see ``max_prompt_tokens``).

        Raises:
            ConfigError: when the budget and ``max_new_tokens`` do not fit the context.
        """
        max_new = self.sampling.max_new_tokens
        context = self.backend.max_context
        budget = self.max_prompt_tokens
        if budget is None:
            budget = (context - max_new) if context is not None else 4096
        if budget < 16 or (context is not None and budget + max_new > context):
            raise ConfigError(
                f"the prompt budget ({budget} tokens) plus max_new_tokens ({max_new}) must fit "
                f"the model's context of {context} tokens"
            )
        return budget

    def propose(self, requests: Sequence[Request], n: int, seed: int) -> list[list[Candidate]]:
        if not requests:
            return []
        prompts = self.prompts(requests)
        self.last_prompts = prompts
        params = replace(self.sampling, n=n, seed=seed)
        out = self.backend.chat(prompts, params)
        self.calls += 1
        self.tokens += sum(
            len(g.token_ids) for samples in out for g in (samples[:1] if params.greedy else samples)
        )
        return [merge_duplicates(self._candidate(g) for g in samples) for samples in out]

    def _candidate(self, generation: Generation) -> Candidate:
        logprobs = generation.logprobs
        total = float(sum(logprobs))
        if self.prior == "mean" and logprobs:
            total /= len(logprobs)
        return Candidate(generation.text, total)


class PolicyProposer:
    """Candidates from a :class:`~llm_trainer.agents.policy.Policy`: ``n`` calls of
    ``act(observation, info)`` per node, deduplicated, with uniform priors.

    The policy is re-seeded (``reset(seed=...)``) at each call, so a stochastic one (the random
    agent) gives the same candidates for the same seed. It must act on the current observation
    alone (an LLM agent keeps a conversation per episode: use :class:`LLMProposer` for it).

    Args:
        policy: The policy.
        env: The search env to put each node's state into before the policy acts (a policy
            that reads the env, as the oracle does, then sees that node); ``None``: not needed.
    """

    def __init__(self, policy: Policy, env: SearchEnv | None = None) -> None:
        self.policy = policy
        self.env = env
        self.calls = 0

    def propose(self, requests: Sequence[Request], n: int, seed: int) -> list[list[Candidate]]:
        self.calls += 1
        self.policy.reset(seed=seed)
        out = []
        for request in requests:
            if self.env is not None:
                self.env.restore(request.state)
            actions: list[Any] = [
                self.policy.act(request.observation, request.info) for _ in range(n)
            ]
            out.append(merge_duplicates(Candidate(str(a)) for a in actions))
        return out
