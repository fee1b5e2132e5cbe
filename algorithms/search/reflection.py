"""Reflections on failed leaves, added to later prompts (LATS, Zhou et al., 2024).

When a simulation reaches the end of an episode without success (or the time limit), a
reflection says what went wrong; the search adds its reflections to the system prompt of every
later expansion (:func:`~llm_trainer.algorithms.search.context.system_with_reflections`), so
the proposer's next candidates can avoid the mistake. An
:class:`~llm_trainer.algorithms.search.agent.MCTSAgent` carries them across the searches of one
episode.

* :class:`FeedbackReflector` quotes the failed attempt's last action and the env's verdict
  on it (a knapsack's "infeasible: total weight 23 > capacity 20"): free, and exact.
* :class:`LLMReflector` asks the model itself what to do differently, greedily, for every
  failed leaf of a batch in one call (LATS' self-reflection).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from llm_trainer.agents.backends.base import SamplingConfig
from llm_trainer.algorithms.search.context import Request, chat_prompt

if TYPE_CHECKING:
    from llm_trainer.agents.backends import Backend

#: Longest quoted action or observation in a feedback reflection (characters).
QUOTE_CHARS = 160

#: What :class:`LLMReflector` asks after the failed attempt.
REFLECTION_QUESTION = (
    "This attempt failed. In one sentence, say what went wrong and what to do differently "
    "next time."
)


@runtime_checkable
class Reflector(Protocol):
    """Writes one reflection per failed leaf."""

    calls: int

    def reflect(self, requests: Sequence[Request], seed: int) -> list[str]:
        """One reflection per failed leaf (``requests`` end with the attempt's last action and
        the env's answer to it)."""
        ...


def _quote(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."


def feedback_reflection(request: Request) -> str:
    """The failed attempt's last action and the env's answer, quoted.

    >>> r = Request(None, "Score 0.50", {}, ({"role": "user", "content": "task"},
    ...     {"role": "assistant", "content": "<answer>1, 2</answer>"},
    ...     {"role": "user", "content": "Score 0.50"}))
    >>> feedback_reflection(r)
    'The attempt ending with "<answer>1, 2</answer>" failed; the env said: "Score 0.50".'
    """
    action = next(
        (str(m["content"]) for m in reversed(request.messages) if m["role"] == "assistant"), ""
    )
    said = _quote(request.observation)
    return f'The attempt ending with "{_quote(action)}" failed; the env said: "{said}".'


class FeedbackReflector:
    """Reflections that quote the env's feedback (no model; see the module docstring)."""

    def __init__(self) -> None:
        self.calls = 0

    def reflect(self, requests: Sequence[Request], seed: int) -> list[str]:
        self.calls += 1
        return [feedback_reflection(r) for r in requests]


class LLMReflector:
    """Reflections written by the model (greedy; one batched call per batch of failed leaves).
    An empty answer falls back to the feedback reflection.

    Args:
        backend: The model's backend.
        max_new_tokens: Longest reflection in tokens.
        question: What is asked after the failed attempt.
    """

    def __init__(
        self, backend: Backend, *, max_new_tokens: int = 64, question: str = REFLECTION_QUESTION
    ) -> None:
        self.backend = backend
        # no stop strings: a reflection is prose, not an action
        self.sampling = SamplingConfig(
            temperature=0.0, max_new_tokens=max_new_tokens, stop=("\n\n",)
        )
        self.question = question
        self.calls = 0

    def reflect(self, requests: Sequence[Request], seed: int) -> list[str]:
        if not requests:
            return []
        self.calls += 1
        prompts = [
            chat_prompt(r, reflections=False, extra=({"role": "user", "content": self.question},))
            for r in requests
        ]
        params = SamplingConfig(
            temperature=0.0,
            max_new_tokens=self.sampling.max_new_tokens,
            seed=seed,
            stop=self.sampling.stop,
        )
        out = self.backend.chat(prompts, params)
        texts = []
        for request, samples in zip(requests, out, strict=True):
            text = _quote(samples[0].text) if samples else ""
            texts.append(text or feedback_reflection(request))
        return texts
