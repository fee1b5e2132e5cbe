"""What a proposer or an estimator is asked about a node: its state and the conversation to it.

A :class:`Request` is self-contained data: the env snapshot (for policies that act through
the env), the observation and ``info`` there, and the chat that leads to it (the episode's task,
the actions and observations before the search's root, then the path in the tree). An LLM is
prompted exactly as an :class:`~llm_trainer.agents.llm_agent.LLMAgent` would be in that
state (:func:`chat_prompt`: the env's system prompt and tools, the task through the agent's
``task_template``, the conversation fitted into the token budget by
:class:`~llm_trainer.agents.memory.ConversationMemory`), with the search's reflections on failed
attempts added to the system prompt (LATS, Zhou et al., 2024).

In a multi-agent game each player sees only its own observation, which holds what it may know
(Kuhn poker's spells out the betting so far): such a request is ``memoryless`` and its chat is
that one observation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from llm_trainer.agents.backends.base import ChatPrompt
from llm_trainer.agents.llm_agent import render_task
from llm_trainer.agents.memory import ConversationMemory
from llm_trainer.core.records import to_plain

Message = Mapping[str, Any]

#: Heads the reflections in the system prompt.
REFLECTIONS_HEADER = "Lessons from earlier failed attempts at this task:"


@dataclass(frozen=True, slots=True)
class Request:
    """One node as a proposer or an estimator sees it (see the module docstring).

    Attributes:
        state: The env snapshot at the node.
        observation: What the player to move sees.
        info: The env's ``info`` for that player.
        messages: The chat after the system prompt: the task (a user message), then
            assistant actions and the observations that followed them (``tool`` or ``user``),
            ending with the node's observation.
        system_prompt: The system prompt (the env's ``info["system_prompt"]`` at the
            episode's start).
        tools: The tool specs of the episode.
        reflections: The search's reflections so far.
        to_move: The index of the player to move.
        memoryless: Whether the chat is only the latest observation (a multi-agent game).
        steps_left: Steps the episode's time limit leaves from here (``None``: unknown).
    """

    state: Any
    observation: str
    info: Mapping[str, Any]
    messages: tuple[Message, ...]
    system_prompt: str = ""
    tools: tuple[Mapping[str, Any], ...] = ()
    reflections: tuple[str, ...] = ()
    to_move: int = 0
    memoryless: bool = False
    steps_left: int | None = None

    @classmethod
    def start(
        cls,
        state: Any,
        observation: str,
        info: Mapping[str, Any],
        *,
        history: Sequence[Message] = (),
        to_move: int = 0,
        memoryless: bool = False,
        steps_left: int | None = None,
    ) -> Request:
        """The request at a search's root. ``history`` is the episode's chat before it (the
        task first), without ``observation``; empty when ``observation`` is the task."""
        if memoryless or not history:
            messages: tuple[Message, ...] = ({"role": "user", "content": str(observation)},)
        else:
            messages = (*history, observation_message(observation, info))
        return cls(
            state,
            str(observation),
            info,
            messages,
            system_prompt=str(info.get("system_prompt") or ""),
            tools=tuple(to_plain(info.get("tools") or ())),
            to_move=to_move,
            memoryless=memoryless,
            steps_left=steps_left,
        )

    def after(
        self, action: str, state: Any, observation: str, info: Mapping[str, Any], to_move: int
    ) -> Request:
        """The request one step later: ``action`` taken, ``observation`` seen."""
        if self.memoryless:
            messages: tuple[Message, ...] = ({"role": "user", "content": str(observation)},)
        else:
            messages = (
                *self.messages,
                {"role": "assistant", "content": action},
                observation_message(observation, info),
            )
        return replace(
            self,
            state=state,
            observation=str(observation),
            info=info,
            messages=messages,
            to_move=to_move,
            steps_left=None if self.steps_left is None else max(0, self.steps_left - 1),
        )

    @property
    def task(self) -> str:
        """The first user message (the episode's task, or the only observation)."""
        return str(self.messages[0]["content"]) if self.messages else self.observation


def observation_message(observation: str, info: Mapping[str, Any]) -> Message:
    role = "tool" if info.get("role") == "tool" else "user"
    return {"role": role, "content": str(observation)}


def system_with_reflections(system: str, reflections: Sequence[str]) -> str:
    """``system`` with the reflections appended as a list (unchanged when there are none).

    >>> print(system_with_reflections("Solve it.", ["Check the capacity."]))
    Solve it.
    <BLANKLINE>
    Lessons from earlier failed attempts at this task:
    - Check the capacity.
    """
    if not reflections:
        return system
    block = "\n".join([REFLECTIONS_HEADER, *(f"- {r}" for r in reflections)])
    return f"{system}\n\n{block}" if system else block


def chat_prompt(
    request: Request,
    *,
    budget: int | None = None,
    length: Callable[[ChatPrompt], int] | None = None,
    system_prompt: str | None = None,
    task_template: str | None = None,
    reflections: bool = True,
    extra: Sequence[Message] = (),
) -> ChatPrompt:
    """The chat prompt of ``request`` as an LLM agent would send it.

    Args:
        request: The node.
        budget: Token budget of the prompt (oldest turns dropped first); ``None``: no limit.
        length: Tokens of a prompt (the backend's ``count_tokens``); needed with ``budget``.
        system_prompt: Replaces the env's system prompt (an agent's ``system_prompt``).
        task_template: Puts the task through it (an agent's ``task_template``).
        reflections: Add the request's reflections to the system prompt.
        extra: Messages appended after the node's observation (a self-evaluation question).
    """
    system = request.system_prompt if system_prompt is None else system_prompt
    if reflections:
        system = system_with_reflections(system, request.reflections)
    messages = list(request.messages) or [{"role": "user", "content": request.observation}]
    memory = ConversationMemory(system, render_task(task_template, str(messages[0]["content"])))
    for message in [*messages[1:], *extra]:
        memory.add(str(message["role"]), str(message["content"]))
    tools = request.tools
    if budget is None or length is None:
        return ChatPrompt(tuple(memory.messages), tools)
    window = memory.window(budget, lambda m: length(ChatPrompt(tuple(m), tools)))
    return ChatPrompt(tuple(window), tools)
