"""``EncodeToolChoice``: a tool-use env as a classic RL problem (vector in, discrete out).

stable-baselines3 cannot act in text spaces. This wrapper keeps the decision that matters in a
tool-use task, *which tool to call next, and when to answer*, and scripts the rest:

* **Action** ``Discrete(len(tools) + 1)``: action ``k < len(tools)`` calls ``tools[k]``, with
  the arguments of the task's next planned call of that tool (the oracle's arguments; a tool
  the plan does not use gets uninformed arguments: the prompt for every string parameter).
  The last action answers with what the last tool returned, read the way the oracle reads it:
  the task's answer when the last call was the plan's final call and it ran, ``unknown``
  otherwise. So an episode succeeds only if the policy called the right tools, in the right
  number, and answered right after the call that gives the answer.
* **Observation** ``Box(0, 1, (n_hash + 2 * len(tools) + 3,))``: a hashed bag of the prompt's
  words (``n_hash`` buckets, CRC-32 of each lower-cased word: stable across processes, unlike
  ``hash``), the number of calls of each tool so far (``/ 4``, capped at 1), a one-hot of the
  last action (one slot per tool, one for "none yet"), whether the last call failed, and the
  turn (``/ max_turns``).
* **Reward, termination, info**: the wrapped env's, unchanged.

The learnable part is reading the task's kind from its words (``temperature`` -> weather,
``born`` -> search, arithmetic -> calculator) and counting calls for multi-step tasks
(MultiTool-v0 difficulty 2 is weather, weather, calculator, answer).

>>> import llm_trainer
>>> env = EncodeToolChoice(llm_trainer.make("LLMTrainer/MultiTool-v0"))
>>> obs, info = env.reset(seed=0)
>>> obs.shape, int(env.action_space.n), env.codec.tools
((73,), 4, ('calculator', 'weather', 'search'))
>>> obs, reward, terminated, truncated, info = env.step(2)  # search, as the task needs
>>> obs, reward, terminated, truncated, info = env.step(3)  # answer
>>> reward, info["success"]
(1.0, True)
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from llm_trainer.core.records import ToolCall
from llm_trainer.envs.tools import format_answer
from llm_trainer.envs.tooluse.base import Task, ToolUseEnv

#: The tools of the tool-use envs, in MultiTool's order (an encoding fixed across envs, so one
#: model can act in any of them).
DEFAULT_TOOLS: tuple[str, ...] = ("calculator", "weather", "search")
UNKNOWN_ANSWER = "unknown"
_WORD = re.compile(r"[a-z]+")


class ToolChoiceCodec:
    """Encodes an episode's state as a vector and decodes a discrete action into text.

    One codec follows one episode at a time: :meth:`start` with the prompt, then
    :meth:`decode` each action and :meth:`observe` each result. Shared by
    :class:`EncodeToolChoice` (training) and the agents that replay a trained model in the text
    env (:class:`~llm_trainer.agents.sb3_agent.SB3ToolChoiceAgent`).

    Args:
        tools: Tool names, one action each (the last action answers).
        n_hash: Buckets of the hashed bag of words.
        max_turns: Scale of the turn feature (the env's time limit).
        tool_specs: JSON-schema specs of the env's tools, for uninformed arguments.
    """

    def __init__(
        self,
        tools: Sequence[str] = DEFAULT_TOOLS,
        n_hash: int = 64,
        max_turns: int = 10,
        tool_specs: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        if not tools or len(set(tools)) != len(tools):
            raise ValueError(f"tools must be distinct names, got {tools!r}")
        if n_hash < 1 or max_turns < 1:
            raise ValueError("n_hash and max_turns must be positive")
        self.tools = tuple(tools)
        self.n_hash = n_hash
        self.max_turns = max_turns
        self._parameters = {
            str(spec["function"]["name"]): dict(spec["function"]["parameters"]["properties"])
            for spec in tool_specs
        }
        self._prompt = ""
        self._words = np.zeros(n_hash, dtype=np.float32)
        self._calls = dict.fromkeys(self.tools, 0)
        self._last_action: int | None = None
        self._last_call: ToolCall | None = None
        self._last_failed = False
        self._turn = 0

    @property
    def size(self) -> int:
        """Length of the feature vector."""
        return self.n_hash + 2 * len(self.tools) + 3

    @property
    def n_actions(self) -> int:
        return len(self.tools) + 1

    def start(self, prompt: str) -> None:
        """Begin an episode."""
        self._prompt = prompt
        self._words = np.zeros(self.n_hash, dtype=np.float32)
        for word in _WORD.findall(prompt.lower()):
            self._words[zlib.crc32(word.encode()) % self.n_hash] = 1.0
        self._calls = dict.fromkeys(self.tools, 0)
        self._last_action, self._last_call, self._last_failed, self._turn = None, None, False, 0

    def features(self) -> npt.NDArray[np.float32]:
        """The current state as a vector in [0, 1]."""
        calls = np.array([min(self._calls[t], 4) / 4 for t in self.tools], dtype=np.float32)
        last = np.zeros(len(self.tools) + 1, dtype=np.float32)
        last[len(self.tools) if self._last_action is None else self._last_action] = 1.0
        extra = np.array(
            [float(self._last_failed), min(self._turn / self.max_turns, 1.0)], dtype=np.float32
        )
        return np.concatenate([self._words, calls, last, extra])

    def decode(self, action: int, task: Task) -> str:
        """The completion for ``action`` in the episode of ``task`` (see the module doc)."""
        action = int(action)
        if not 0 <= action < self.n_actions:
            raise ValueError(f"action must be in [0, {self.n_actions}), got {action}")
        self._last_action = action
        self._turn += 1
        if action == len(self.tools):
            informed = (
                self._last_call is not None
                and not self._last_failed
                and bool(task.plan)
                and self._last_call == task.plan[-1]
            )
            return format_answer(task.answer if informed else UNKNOWN_ANSWER)
        tool = self.tools[action]
        planned = [call for call in task.plan if call.name == tool]
        made = self._calls[tool]
        self._calls[tool] = made + 1
        if planned:
            call = planned[min(made, len(planned) - 1)]
        else:
            params = self._parameters.get(tool, {})
            call = ToolCall(
                tool,
                {
                    name: self._prompt if spec.get("type") == "string" else 0
                    for name, spec in params.items()
                },
            )
        self._last_call = call
        return call.to_text()

    def observe(self, failed_call: bool) -> None:
        """Record the result of the last action (``failed_call``: a tool call that failed)."""
        self._last_failed = failed_call


class EncodeToolChoice(
    gym.Wrapper[npt.NDArray[np.float32], np.int64, str, str], gym.utils.RecordConstructorArgs
):
    """A tool-use env with vector observations and discrete tool-choice actions.

    Args:
        env: A tool-use env (``ToolUseEnv`` underneath its wrappers).
        tools: Tool names, one action each; by default :data:`DEFAULT_TOOLS`.
        n_hash: Buckets of the hashed bag of prompt words.
        difficulties: Difficulties to draw from at every reset (uniformly, from a generator
            seeded by ``reset(seed=...)``); by default the env's own.
    """

    def __init__(
        self,
        env: gym.Env[str, str],
        *,
        tools: Sequence[str] = DEFAULT_TOOLS,
        n_hash: int = 64,
        difficulties: Sequence[int] | None = None,
    ) -> None:
        # Recorded so that gymnasium can recreate the wrapped env from its spec.
        gym.utils.RecordConstructorArgs.__init__(
            self, tools=tuple(tools), n_hash=n_hash, difficulties=difficulties
        )
        # gymnasium 1.4 annotates Wrapper.env with the wrapper's own spaces, which cannot describe
        # a wrapper that changes them (text -> vector); self._text_env keeps the true type.
        super().__init__(env)  # type: ignore[arg-type]
        self._text_env = env
        base = env.unwrapped
        if not isinstance(base, ToolUseEnv):
            raise TypeError(f"EncodeToolChoice wraps tool-use envs, got {type(base).__name__}")
        self._base = base
        max_turns = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 10
        self.codec = ToolChoiceCodec(tools, n_hash, max_turns, base.tools.specs)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.codec.size,), np.float32)
        self.action_space = gym.spaces.Discrete(self.codec.n_actions)
        # Checked now (a ConfigError naming the env), not at the first reset that draws one.
        self.difficulties = (
            tuple(base.check_difficulty(d) for d in difficulties) if difficulties else None
        )
        self._rng = np.random.default_rng(0)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if self.difficulties and not (options and "difficulty" in options):
            choice = int(self.difficulties[int(self._rng.integers(len(self.difficulties)))])
            options = {**(options or {}), "difficulty": choice}
        prompt, info = self._text_env.reset(seed=seed, options=options)
        self.codec.start(prompt)
        return self.codec.features(), info

    def step(
        self, action: np.int64
    ) -> tuple[npt.NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        failed_before = self._base.get_state().n_failed_calls
        text = self.codec.decode(int(action), self._base.task)
        _, reward, terminated, truncated, info = self._text_env.step(text)
        self.codec.observe(self._base.get_state().n_failed_calls > failed_before)
        return self.codec.features(), reward, terminated, truncated, info
