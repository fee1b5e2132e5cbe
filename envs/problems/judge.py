"""An LLM judge: one criterion that scores a text's quality in [0, 1] with any backend.

The judge is off by default and never the only criterion of a task (the constrained-writing
config refuses that): a model's opinion is a weak, gameable signal next to exact checks. The
backend (any spec string: ``transformers:DIR``, ``vllm:DIR``, ``openai:URL#MODEL``) is imported
and built on first use, so an env with a judge costs nothing until it scores an answer, and a
pickled env leaves its backend behind (it is rebuilt on the next score).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from llm_trainer.core.errors import ConfigError

if TYPE_CHECKING:
    from llm_trainer.agents.backends import Backend, ChatPrompt

_RATING = re.compile(r"\d+(?:\.\d+)?")
_SYSTEM = "You are a strict judge of writing quality."
#: The judged text and task are cut to these lengths (the judge's context is finite).
MAX_TEXT_CHARS = 2_000
MAX_TASK_CHARS = 600
_MAX_NEW_TOKENS = 6


class LLMJudge:
    """Scores a text from 0 to 10 with a backend, greedily; the score is the rating / 10.

    Args:
        backend: A backend spec string (checked now, built on first use).

    Raises:
        ConfigError: for a malformed spec or an unknown backend kind.
    """

    def __init__(self, backend: str) -> None:
        if not isinstance(backend, str):
            raise ConfigError(f"judge must be a backend spec string, got {type(backend).__name__}")
        from llm_trainer.agents.backends import parse_backend_spec  # light: nothing heavy

        parse_backend_spec(backend)
        self.spec = backend
        self._backend: Backend | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "_backend": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.spec, self._backend = state["spec"], None

    def score(self, task: str, text: str) -> float:
        """The judge's rating of ``text`` as an answer to ``task``, in [0, 1] (0 when the reply
        holds no number).

        Raises:
            BackendError: when the backend cannot generate (a rollout failure, not the agent's).
        """
        from llm_trainer.agents.backends import SamplingConfig, make_backend

        if self._backend is None:
            self._backend = make_backend(self.spec)
        backend = self._backend
        text, task = text[:MAX_TEXT_CHARS], task[:MAX_TASK_CHARS]
        prompt = self._prompt(task, text)
        limit = backend.max_context
        while limit is not None and len(text) > 16:
            if backend.count_tokens(prompt) + _MAX_NEW_TOKENS <= limit:
                break
            text = text[: len(text) // 2]
            prompt = self._prompt(task, text)
        params = SamplingConfig(
            temperature=0.0, max_new_tokens=_MAX_NEW_TOKENS, seed=0, stop=("\n",)
        )
        reply = backend.chat([prompt], params)[0][0].text
        return rating_score(reply)

    @staticmethod
    def _prompt(task: str, text: str) -> ChatPrompt:
        from llm_trainer.agents.backends import ChatPrompt

        user = (
            f"Task: {task}\n\nText:\n{text}\n\nRate how well the text is written, from 0 to 10. "
            "Reply with the number only."
        )
        return ChatPrompt(
            ({"role": "system", "content": _SYSTEM}, {"role": "user", "content": user})
        )

    def __repr__(self) -> str:
        return f"LLMJudge({self.spec!r})"


def rating_score(reply: str) -> float:
    """The first number of a judge's reply, out of 10, clamped to [0, 1] (0 without one).

    >>> rating_score("8"), rating_score("Rating: 7.5/10"), rating_score("great"), rating_score("42")
    (0.8, 0.75, 0.0, 1.0)
    """
    match = _RATING.search(reply[:200])
    if match is None:
        return 0.0
    return min(1.0, float(match.group()) / 10)
