"""Scripted baseline policies: an oracle that solves every task, a random agent, the
scripted roles of a MALT team that reaches the maximum reward, and a policy that replays given
action scripts.

They bracket every leaderboard: the oracle shows the maximum reward is reachable, the random
agent what chance gives. :class:`ReplayPolicy` plays recorded or perturbed episodes again
through the engine (NAT's env-verified negatives, :mod:`llm_trainer.data.negatives`).
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import gymnasium as gym
import numpy as np

from llm_trainer.envs.problems.decompose import (
    DecomposeEnv,
    DecompositionError,
    ScriptedDecomposer,
    format_plan,
)
from llm_trainer.envs.problems.env import ProblemEnv
from llm_trainer.envs.tools import format_answer
from llm_trainer.envs.tooluse.base import ToolUseEnv

if TYPE_CHECKING:  # the multi-agent envs import pettingzoo; this module does not need to
    from llm_trainer.envs.multiagent.malt import MALTEnv


class OracleAgent:
    """Solves tool-use tasks and problems by reading the task's oracle plan through
    ``env.unwrapped``.

    It never looks at the observation for the answer; it reads ``env.unwrapped.task`` (the
    plan of tool calls and the expected answer: for a problem env, the spec's reference
    answer, which scores 1.0) and how many tool calls the episode has had. In a
    decomposition env (``Decompose-v0``) it proposes the spec's own decomposition
    (:class:`~llm_trainer.envs.problems.decompose.ScriptedDecomposer`), answers each
    sub-problem with its reference value and then the problem.
    Bind it to the env(s) it acts in: one env for :meth:`act`, one per batch slot for
    :meth:`act_batch`.

    >>> import llm_trainer
    >>> env = llm_trainer.make("LLMTrainer/Calculator-v0")
    >>> agent = OracleAgent(env)
    >>> observation, info = env.reset(seed=0)
    >>> agent.act(observation, info).startswith("<tool_call>")
    True
    """

    def __init__(self, envs: gym.Env[Any, Any] | Sequence[gym.Env[Any, Any]]) -> None:
        envs = [envs] if isinstance(envs, gym.Env) else list(envs)
        if not envs:
            raise ValueError("OracleAgent needs at least one env")
        self._envs: list[ToolUseEnv | ProblemEnv] = []
        for env in envs:
            base = env.unwrapped
            if not isinstance(base, ToolUseEnv | ProblemEnv):
                raise TypeError(
                    f"OracleAgent supports tool-use and problem envs, got {type(base).__name__}"
                )
            self._envs.append(base)

    def reset(self, *, seed: int | None = None) -> None:
        """Nothing to reset: the oracle reads the episode's state from the env."""

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        return self._next_action(self._envs[0])

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """One action per entry. An entry's env is ``infos[i]["slot"]`` when given (as
        :func:`~llm_trainer.algorithms.rollout.collect` does), else its position."""
        slots = [int(info.get("slot", i)) for i, info in enumerate(infos)]
        if len(observations) != len(infos) or any(s >= len(self._envs) for s in slots):
            raise ValueError(
                f"OracleAgent is bound to {len(self._envs)} envs, got a batch of "
                f"{len(observations)} observations for slots {slots}"
            )
        return [self._next_action(self._envs[s]) for s in slots]

    @staticmethod
    def _next_action(env: ToolUseEnv | ProblemEnv) -> str:
        if isinstance(env, DecomposeEnv):
            return _decomposition_action(env)
        # Both episodes hold their task (plan, answer) and their count of tool calls.
        episode = env.get_state()
        plan = episode.task.plan
        if episode.n_calls < len(plan):
            return plan[episode.n_calls].to_text()
        return format_answer(episode.task.answer)


def _decomposition_action(env: DecomposeEnv) -> str:
    """The plan before any answer, then each sub-problem's reference value, then the answer
    (directly, if the reference plan does not fit the env's ``max_subproblems``)."""
    episode = env.get_state()
    task = episode.task
    if not episode.plan and not episode.n_answers:
        try:
            return format_plan(ScriptedDecomposer(env.max_subproblems).plan(task))
        except DecompositionError:
            return format_answer(task.answer)
    current = episode.current
    if current is not None:
        return format_answer(task.data["subanswers"].get(current.id, task.answer))
    return format_answer(task.answer)


class MALTOracle:
    """One scripted role of a MALT team (``LLMTrainer/MALT-v0``) that reads the episode's
    problem through ``env.unwrapped``: the generator writes the spec's worked solution (where
    the family writes one) and the reference answer, the verifier says it is correct, the
    refiner repeats the reference answer. The team scores 1.0 on every problem.

    >>> import llm_trainer
    >>> env = llm_trainer.make_multiagent("LLMTrainer/MALT-v0")
    >>> team = MALTOracle.team(env)
    >>> env.reset(seed=0)
    >>> returns = dict.fromkeys(env.possible_agents, 0.0)
    >>> for agent in env.agent_iter():
    ...     observation, reward, terminated, truncated, info = env.last()
    ...     returns[agent] += reward
    ...     env.step(None if terminated else team[agent].act(observation, info))
    >>> returns
    {'generator': 1.0, 'verifier': 1.0, 'refiner': 1.0}

    Args:
        env: The MALT env (or a wrapper of it) the role acts in.
        role: ``generator``, ``verifier`` or ``refiner``.
    """

    VERDICT = "The solution is correct: every step checks out and the answer follows."

    def __init__(self, env: Any, role: str) -> None:
        from llm_trainer.envs.multiagent.malt import AGENTS, MALTEnv

        base = env.unwrapped
        if not isinstance(base, MALTEnv):
            raise TypeError(f"MALTOracle plays MALT-v0 (MALTEnv), got {type(base).__name__}")
        if role not in AGENTS:
            raise ValueError(f"role must be one of {list(AGENTS)}, got {role!r}")
        self._env: MALTEnv = base
        self.role = role

    @classmethod
    def team(cls, env: Any) -> dict[str, MALTOracle]:
        """A scripted policy for every role of ``env``, by agent name."""
        return {role: cls(env, role) for role in env.possible_agents}

    def reset(self, *, seed: int | None = None) -> None:
        """Nothing to reset: the role reads the episode's problem from the env."""

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        task = self._env.task
        if self.role == "verifier":
            return self.VERDICT
        answer = format_answer(task.answer)
        if self.role == "generator":
            return f"{task.solution or 'Working it through gives the answer.'}\n{answer}"
        return answer

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """One action per entry, all for the one bound env (a batch of one episode)."""
        return [self.act(o, i) for o, i in zip(observations, infos, strict=True)]


_WORDS = (
    "Paris",
    "today",
    "42",
    "founder",
    "capital",
    "Tokyo",
    "year",
    "x",
    "answer",
    "2026-01-01",
)
_GARBAGE = string.ascii_letters + string.digits + string.punctuation + " \n\t" + "éλ中😀"


class RandomAgent:
    """Acts at random using only what ``info`` shows: valid-looking tool calls with random
    arguments, random answers, and garbage text.

    All randomness comes from its own generator, seeded at construction and by ``reset(seed)``;
    no global RNG is touched.

    Args:
        seed: Seed of the agent's generator.
        p_tool: Probability of a tool call with random arguments.
        p_answer: Probability of a random answer (the rest is garbage text).
    """

    def __init__(self, seed: int = 0, *, p_tool: float = 0.4, p_answer: float = 0.4) -> None:
        if not (p_tool >= 0 and p_answer >= 0 and p_tool + p_answer <= 1):
            raise ValueError(
                "p_tool and p_answer must be probabilities with p_tool + p_answer <= 1"
            )
        self.p_tool, self.p_answer = p_tool, p_answer
        self._rng = np.random.default_rng(seed)

    def reset(self, *, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        u = self._rng.random()
        tools = info.get("tools") or ()
        if u < self.p_tool and tools:
            spec = tools[int(self._rng.integers(len(tools)))]["function"]
            properties = spec.get("parameters", {}).get("properties", {})
            arguments = {name: self._value(prop.get("type")) for name, prop in properties.items()}
            payload = {"name": spec["name"], "arguments": arguments}
            return f"<tool_call>{json.dumps(payload)}</tool_call>"
        if u < self.p_tool + self.p_answer:
            return format_answer(str(self._value("string")))
        n = int(self._rng.integers(0, 60))
        return "".join(_GARBAGE[i] for i in self._rng.integers(len(_GARBAGE), size=n))

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        return [self.act(o, i) for o, i in zip(observations, infos, strict=True)]

    def _value(self, kind: Any) -> Any:
        if kind in ("integer", "number"):
            return int(self._rng.integers(1, 6))
        if self._rng.random() < 0.5:
            return str(int(self._rng.integers(0, 100)))
        if self._rng.random() < 0.5:
            a, b = self._rng.integers(0, 100, size=2)
            return f"{a} {'+-*/'[int(self._rng.integers(4))]} {b}"
        return _WORDS[int(self._rng.integers(len(_WORDS)))]


#: One action of a :class:`ReplayPolicy` script: the action text, or a function of the
#: observation it answers (the text the env just returned) that gives it.
ScriptAction: TypeAlias = str | Callable[[str], str]


class ReplayPolicy:
    """Plays given action scripts: a slot reset with seed ``i`` plays ``scripts[i]``, one action
    per step (give each :class:`~llm_trainer.algorithms.rollout.EpisodeTask` its script's index
    as ``policy_seed``; :func:`~llm_trainer.algorithms.rollout.replay_scripts` does).

    An action may be a function of the observation it answers instead of a text, for a script
    whose next move depends on what the env said (an answer read from the tool result just
    returned). A script that runs out before its episode ends fails that episode (recorded on
    its trajectory).

    >>> import llm_trainer
    >>> env = llm_trainer.make("LLMTrainer/Calculator-v0")
    >>> call = '<tool_call>{"name": "calculator", "arguments": {"expression": "6 * 7"}}</tool_call>'
    >>> policy = ReplayPolicy([[call, lambda result: f"<answer>{result}</answer>"]])
    >>> observation, info = env.reset(seed=0)
    >>> policy.reset(seed=0)
    >>> observation, *_ = env.step(policy.act(observation, info))
    >>> policy.act(observation, info)
    '<answer>42</answer>'
    """

    def __init__(self, scripts: Sequence[Sequence[ScriptAction]]) -> None:
        self.scripts = [list(s) for s in scripts]
        self._at: dict[int, tuple[int, int]] = {}

    def reset(self, *, seed: int | None = None, slot: int | None = None) -> None:
        if seed is None or not 0 <= seed < len(self.scripts):
            raise ValueError(f"ReplayPolicy: seed {seed!r} names no script")
        self._at[0 if slot is None else slot] = (seed, 0)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        slot = int(info.get("slot", 0))
        script, step = self._at[slot]
        actions = self.scripts[script]
        if step >= len(actions):
            raise RuntimeError(f"script {script} ran out of actions before the episode ended")
        self._at[slot] = (script, step + 1)
        action = actions[step]
        return action if isinstance(action, str) else action(observation)

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        return [self.act(o, i) for o, i in zip(observations, infos, strict=True)]
