"""What every text env shares: the invalid-action rule and the checks of its arguments.

The tool-use envs (:mod:`llm_trainer.envs.tooluse`) and the problem envs
(:mod:`llm_trainer.envs.problems`) take the same arguments (``difficulty``, ``render_mode``,
``max_text_length``, the ``difficulty`` reset option) and answer a bad one the same way: a
:class:`~llm_trainer.core.errors.ConfigError` in one line that names the env, the value and what
is allowed. Those checks live here once, as functions (composition keeps the env classes' own
inheritance at one level).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.registration import registry

#: Reward of a malformed action (every text env).
INVALID_ACTION_PENALTY = -0.1
#: ``metadata["render_modes"]`` of the text envs.
RENDER_MODES = ("ansi",)
#: Smallest ``max_text_length`` an env accepts.
MIN_TEXT_LENGTH = 256


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one line and at most ``limit`` characters (error messages are one
    line, whatever the caller passed).

    >>> short_repr("a\\nb"), short_repr(10**5000)
    ("'a\\\\nb'", '<int that cannot be printed>')
    """
    try:
        text = " ".join(repr(value).split())
    except ValueError:  # an int of more than 4,300 digits cannot be printed
        text = f"<{type(value).__name__} that cannot be printed>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def check_int_in(env_name: str, name: str, value: Any, low: int, high: int) -> int:
    """``value`` if it is an int (not a bool) in ``[low, high]``, else a :class:`ConfigError`
    naming the env and the argument.

    >>> check_int_in("Env-v0", "max_cycles", 0, 1, 8)
    Traceback (most recent call last):
    ...
    llm_trainer.core.errors.ConfigError: Env-v0: max_cycles must be an int in [1, 8], got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"{env_name}: {name} must be an int in [{low}, {high}], got {short_repr(value)}"
        )
    return value


def invalid_action_observation(reason: str) -> str:
    """The observation after a malformed action: the rule it broke and what to send instead."""
    return (
        f"Invalid action: {reason}. Reply with one <tool_call>...</tool_call> or one "
        "<answer>...</answer>."
    )


def check_difficulty(
    env_name: str, value: Any, allowed: tuple[int, ...], what: str = "difficulty"
) -> int:
    """``value`` as one of ``allowed`` (numpy integers accepted, bools refused).

    Raises:
        ConfigError: in one line naming the env, the value and the allowed difficulties.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value not in allowed:
        raise ConfigError(
            f"{env_name}: {what} {short_repr(value)} is not supported; "
            f"allowed difficulties: {', '.join(map(str, allowed))}"
        )
    return int(value)


def check_text_env_arguments(env_name: str, render_mode: Any, max_text_length: Any) -> None:
    """Check the ``render_mode`` and ``max_text_length`` arguments of a text env.

    Raises:
        ConfigError: in one line naming the env and the bad value.
    """
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ConfigError(
            f"{env_name}: render_mode must be None or one of {list(RENDER_MODES)}, "
            f"got {short_repr(render_mode)}"
        )
    if (
        isinstance(max_text_length, bool)
        or not isinstance(max_text_length, int)
        or max_text_length < MIN_TEXT_LENGTH
    ):
        raise ConfigError(
            f"{env_name}: max_text_length must be an int >= {MIN_TEXT_LENGTH}, "
            f"got {short_repr(max_text_length)}"
        )


def difficulty_from_options(
    env_name: str,
    options: Mapping[Any, Any] | None,
    default: int,
    check: Callable[[Any, str], int],
) -> int:
    """The difficulty a ``reset(options=...)`` asks for (``default`` without the option).

    Raises:
        ConfigError: for an unknown option (named, whatever its type) or a bad difficulty.
    """
    if not options:
        return default
    unknown = set(options) - {"difficulty"}
    if unknown:
        names = sorted(short_repr(k) for k in unknown)
        raise ConfigError(
            f"{env_name}: unknown reset option(s) {', '.join(names)}; known: 'difficulty'"
        )
    return check(options["difficulty"], "reset option difficulty")


def registered_ids(cls: type[Any], **kwargs: Any) -> list[str]:
    """The registry ids whose entry point is ``cls`` and whose kwargs include ``kwargs``
    (for messages raised before gymnasium has set ``env.spec``)."""
    entry_point = f"{cls.__module__}:{cls.__qualname__}"
    return [
        s.id
        for s in registry().values()
        if s.entry_point == entry_point and all(s.kwargs.get(k) == v for k, v in kwargs.items())
    ]
