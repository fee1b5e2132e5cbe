"""The one error hierarchy of llm-trainer.

User errors (a bad registry entry, an unknown env id, a bad config value) are kept apart from
rollout failures (a backend or a tool that failed while an episode ran), so callers can catch
the one without swallowing the other. User errors also derive from ``ValueError`` so that code
written against the standard library's conventions keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LLMTrainerError(Exception):
    """Base class of every error raised on purpose by llm-trainer."""


class UserError(LLMTrainerError, ValueError):
    """The caller asked for something that cannot be: fix the input and retry."""


class RegistryError(UserError):
    """``registry.yaml`` (or an entry added at run time) is malformed."""


class UnknownEnvError(RegistryError, KeyError):
    """An env id that is not registered. The message suggests the closest registered ids."""

    def __init__(self, env_id: str, known: Iterable[str]) -> None:
        self.env_id = env_id
        known = sorted(known)
        close = difflib.get_close_matches(env_id, known, n=2, cutoff=0.8)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        listing = "" if close else f" Registered ids: {', '.join(known)}."
        super().__init__(f"Unknown env id {env_id!r}.{hint}{listing}")

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])


class ConfigError(UserError):
    """A configuration value is invalid; the message names the field and the allowed values."""


class RolloutError(LLMTrainerError, RuntimeError):
    """Something failed while an episode ran (a backend, a tool)."""


class BackendError(RolloutError):
    """A generation backend failed (a model that cannot run, a server that answered with an
    error or not at all). The message names the backend (and the server and HTTP status)."""


class BatchActError(BackendError):
    """Some slots of a batched ``act_batch`` failed to generate; the others did not.

    Attributes:
        actions: One entry per slot of the call, in order: the action, or ``None`` where the
            slot failed (so a rollout can go on with the siblings).
        errors: The failure of each failed slot, by slot id.
    """

    def __init__(
        self, message: str, *, actions: list[str | None], errors: dict[int, BackendError]
    ) -> None:
        super().__init__(message)
        self.actions = actions
        self.errors = errors


class ToolError(RolloutError):
    """A tool call could not be executed (bad arguments, a bounded resource exceeded).

    Environments turn it into an error *result* for the agent; it never escapes ``env.step``.
    """


class ToolTimeoutError(ToolError):
    """A tool call ran past its per-call time limit."""


def suggest(name: str, options: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest option, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
