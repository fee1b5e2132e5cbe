"""The shared machinery of the data strategies: build trajectories by replaying solutions
through the real envs, and check trajectories against the env contract.

Every strategy (templates, teacher mode, the ToolBench loader) ends the same way: it has a
:class:`~llm_trainer.envs.tooluse.base.Task` (a prompt, the expected answer, the tool calls that
solve it) and a list of actions, and needs a :class:`~llm_trainer.core.trajectory.Trajectory`
whose observations are the *real* tool outputs and whose metrics are the env's own. So instead of
re-implementing the env's rules, :func:`replay_task` injects the task into the registered env
(``env.unwrapped.set_state``) and steps the actions through it: observations, rewards and the
``format_ok`` ... ``success`` metrics come from :class:`~llm_trainer.envs.tooluse.base.ToolUseEnv`
itself.

Seeds: a data example is not the result of ``env.reset(seed)``, so its ``Trajectory.seed`` is
the example's own seed, and it is also the seed of the example's weather world
(``Task.world_seed``): :func:`validate_trajectory` rebuilds the world from it. Trajectories of
env rollouts (``seed`` = the reset seed) are recognised because ``reset(seed)`` reproduces their
prompt, and are replayed from the reset.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm_trainer.core.errors import UserError
from llm_trainer.core.records import METRIC_KEYS, ToolCall, to_plain
from llm_trainer.core.trajectory import Step, Trajectory
from llm_trainer.envs.registration import make, registry
from llm_trainer.envs.tools import (
    AnswerAction,
    Tool,
    ToolRegistry,
    calculator_tool,
    format_answer,
    parse_action,
    search_tool,
    weather_tool,
)
from llm_trainer.envs.tools.weather import WeatherWorld
from llm_trainer.envs.tooluse.base import (
    DIFFICULTIES,
    Episode,
    Task,
    ToolUseEnv,
    answer_matches,
    system_prompt,
)

#: The tools every data strategy knows how to execute, in the envs' order.
TOOL_NAMES: tuple[str, ...] = ("calculator", "weather", "search")
#: The single-tool env of each tool.
TOOL_ENV_IDS: Mapping[str, str] = {
    "calculator": "LLMTrainer/Calculator-v0",
    "weather": "LLMTrainer/Weather-v0",
    "search": "LLMTrainer/Search-v0",
}
#: The env that offers all three tools.
MULTITOOL_ENV_ID = "LLMTrainer/MultiTool-v0"
#: Envs built with a ``corpus_seed`` argument.
_CORPUS_ENVS = frozenset({"LLMTrainer/Search-v0", MULTITOOL_ENV_ID})


class DataFormatError(UserError):
    """Input data (a ToolBench file, a record, a plain example) is malformed.

    Attributes:
        index: The index of the offending record in its file, or ``None`` for file-level errors.
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        self.index = index
        super().__init__(message if index is None else f"record {index}: {message}")


@dataclass(frozen=True, slots=True)
class Example:
    """A generated example: the task it solves and the trajectory that solves it.

    The task is what makes the trajectory checkable: ``validate_trajectory(ex.trajectory,
    ex.task)`` replays it through the real env and compares everything.
    """

    task: Task
    trajectory: Trajectory


def env_id_for_tools(names: Iterable[str]) -> str | None:
    """The registered env that offers exactly these tools of ours (MultiTool for several).

    Returns ``None`` when a name is not one of :data:`TOOL_NAMES` or ``names`` is empty.

    >>> env_id_for_tools(["weather"]), env_id_for_tools(["search", "calculator"])
    ('LLMTrainer/Weather-v0', 'LLMTrainer/MultiTool-v0')
    >>> env_id_for_tools(["flight_search"]) is None
    True
    """
    tools = set(names)
    if not tools or not tools <= set(TOOL_NAMES):
        return None
    if len(tools) == 1:
        return TOOL_ENV_IDS[tools.pop()]
    return MULTITOOL_ENV_ID


def tool_registry(
    names: Iterable[str] = TOOL_NAMES, *, world_seed: int = 0, corpus_seed: int = 0
) -> ToolRegistry:
    """A registry of our tools (in the envs' order), weather bound to ``WeatherWorld(world_seed)``.

    Raises:
        ValueError: for a name that is not one of :data:`TOOL_NAMES`.
    """
    wanted = set(names)
    unknown = wanted - set(TOOL_NAMES)
    if unknown:
        raise ValueError(f"unknown tool(s) {sorted(unknown)}; known: {list(TOOL_NAMES)}")
    factories: dict[str, Callable[[], Tool]] = {
        "calculator": calculator_tool,
        "weather": lambda: weather_tool(WeatherWorld(world_seed)),
        "search": lambda: search_tool(corpus_seed),
    }
    return ToolRegistry([factories[name]() for name in TOOL_NAMES if name in wanted])


class EnvPool:
    """One unwrapped env per env id, made on first use (making one costs more than a replay)."""

    def __init__(self, corpus_seed: int = 0) -> None:
        self.corpus_seed = corpus_seed
        self._envs: dict[str, ToolUseEnv] = {}

    def __getitem__(self, env_id: str) -> ToolUseEnv:
        env = self._envs.get(env_id)
        if env is None:
            kwargs = {"corpus_seed": self.corpus_seed} if env_id in _CORPUS_ENVS else {}
            base = make(env_id, **kwargs).unwrapped
            if not isinstance(base, ToolUseEnv):
                raise TypeError(f"{env_id} is not a tool-use env ({type(base).__name__})")
            env = self._envs[env_id] = base
        return env


def replay_task(
    env: ToolUseEnv,
    task: Task,
    actions: Sequence[str],
    *,
    env_id: str,
    seed: int,
    source: str,
    difficulty: int = 0,
) -> Trajectory:
    """Play ``actions`` on ``task`` in the real env and record what it answers.

    The task is injected with ``env.set_state`` (the env then binds its weather world to
    ``task.world_seed``), so observations are the real tool outputs and the metrics are the
    env's. Stops early if the env ends the episode.
    """
    env.set_state(Episode(task, difficulty))
    steps = []
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        steps.append(
            Step(
                action=action,
                observation=observation,
                role=info["role"],
                reward=float(reward),
                terminated=terminated,
                truncated=truncated,
                metrics={k: bool(info[k]) for k in METRIC_KEYS},
            )
        )
        if terminated or truncated:
            break
    return Trajectory(
        env_id=env_id,
        seed=seed,
        difficulty=difficulty,
        system_prompt=system_prompt(env.tools.names),
        tools=tuple(to_plain(env.tools.specs)),
        prompt=task.prompt,
        steps=tuple(steps),
        source=source,
    )


def solution_actions(task: Task) -> list[str]:
    """The oracle's actions for ``task``: every planned tool call, then the answer."""
    return [call.to_text() for call in task.plan] + [format_answer(task.answer)]


def single_call_task(
    prompt: str, answer: str, kind: str, call: ToolCall, world_seed: int = 0
) -> Task:
    """A one-call task: ``call`` is the only required (and allowed) tool."""
    if kind not in ("number", "text"):
        raise ValueError(f"answer kind must be 'number' or 'text', got {kind!r}")
    tools = frozenset({call.name})
    return Task(prompt, answer, kind, (call,), tools, tools, world_seed)  # type: ignore[arg-type]


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def answer_is_grounded(answer: str, observations: Iterable[str]) -> bool:
    """Whether a tool result supports the answer: an answer with exactly one number needs that
    number among the results' numbers; any other answer must occur in a result (ignoring case
    and whitespace).

    >>> answer_is_grounded("14 °C", ['{"temperature_c": 14, "humidity_pct": 71}'])
    True
    >>> answer_is_grounded("Tokyo", ["Thiper Dynamics ... is headquartered in Tokyo."])
    True
    """
    observations = list(observations)
    numbers = _NUMBER.findall(answer.replace(",", ""))
    if len(numbers) == 1:
        found = (n for obs in observations for n in _NUMBER.findall(obs.replace(",", "")))
        return any(answer_matches(numbers[0], n, "number") for n in found)
    text = " ".join(answer.split()).casefold().rstrip(".")
    return bool(text) and any(text in " ".join(obs.split()).casefold() for obs in observations)


def validate_trajectory(
    trajectory: Trajectory,
    task: Task | None = None,
    *,
    world_seed: int | None = None,
    corpus_seed: int = 0,
    grounded: bool = False,
) -> list[str]:
    """Check a trajectory against the env contract; returns the problems found (``[]``: valid).

    Always checked: the trajectory has steps and no error; every action parses; every step but
    the last is a tool call and the last is a final answer that ends the episode; every call
    names a tool the trajectory offers; the recorded metrics are all true at the end
    (``format_ok``, ``tool_correct``, ``exec_ok``, ``answer_correct``, ``success``). Calls of our
    tools (calculator, weather, search) are executed again: they must succeed and reproduce the
    recorded observation (weather in ``WeatherWorld(world_seed)``, by default the
    trajectory's ``seed``). For a registered env id, the system prompt and tools must be the
    env's and the episode must fit its ``max_episode_steps``.

    With a ``task`` (or for an env rollout, whose ``reset(seed)`` reproduces the prompt), the
    actions are also replayed through the real env: observations, roles, rewards, episode ends
    and metrics must equal the recorded ones and the answer must match ``task.answer``.

    Args:
        trajectory: The trajectory to check.
        task: The task it solves, when known (data strategies return it with
            :class:`Example`).
        world_seed: Seed of the weather world for re-executing weather calls (default: the
            trajectory's ``seed``, or 0 if negative).
        corpus_seed: Seed of the search corpus.
        grounded: Also require the final answer to occur in a tool result
            (:func:`answer_is_grounded`).
    """
    t = trajectory
    problems: list[str] = []
    if t.error is not None:
        problems.append(f"the episode failed: {t.error}")
    if not t.steps:
        return [*problems, "no steps"]
    parsed = [parse_action(step.action) for step in t.steps]
    offered = {str(spec["function"]["name"]) for spec in t.tools if "function" in spec}
    calls: list[tuple[int, ToolCall]] = []
    for i, (step, action) in enumerate(zip(t.steps, parsed, strict=True)):
        last = i == len(t.steps) - 1
        if isinstance(action, ToolCall):
            calls.append((i, action))
            if last:
                problems.append(f"step {i}: the last action is a tool call, not an answer")
            if action.name not in offered:
                problems.append(f"step {i}: calls {action.name!r}, not among {sorted(offered)}")
            if step.role != "tool":
                problems.append(f"step {i}: a tool call answered with role {step.role!r}")
        elif isinstance(action, AnswerAction):
            if not last:
                problems.append(f"step {i}: an answer before the last step")
        else:
            problems.append(f"step {i}: invalid action ({action.reason})")
        if step.terminated != last:
            problems.append(f"step {i}: terminated={step.terminated} (expected {last})")
        if not step.metrics.get("format_ok", False):
            problems.append(f"step {i}: format_ok is false")
    final = t.steps[-1].metrics
    problems += [f"final metric {k} is false" for k in METRIC_KEYS if not final.get(k, False)]

    spec = registry().get(t.env_id)
    env: ToolUseEnv | None = None
    if spec is not None:
        env = EnvPool(corpus_seed)[t.env_id]
        if t.system_prompt != system_prompt(env.tools.names):
            problems.append("system_prompt differs from the env's")
        if to_plain(t.tools) != to_plain(env.tools.specs):
            problems.append("tools differ from the env's")
        if spec.max_episode_steps is not None and len(t.steps) > spec.max_episode_steps:
            problems.append(f"{len(t.steps)} steps > max_episode_steps={spec.max_episode_steps}")
        if task is None:
            task = _rollout_task(env, t)

    if task is None:  # execute our tools directly
        seed = world_seed if world_seed is not None else max(t.seed, 0)
        ours = {spec_name for spec_name in offered if _is_our_spec(t.tools, spec_name)}
        tools = tool_registry(ours, world_seed=seed, corpus_seed=corpus_seed)
        for i, call in calls:
            if call.name not in ours:
                continue
            result = tools.call(call)
            if not result.ok:
                problems.append(f"step {i}: {call.name} failed: {result.content}")
            elif result.content != t.steps[i].observation:
                problems.append(f"step {i}: observation differs from the real {call.name} output")
    else:
        if t.prompt != task.prompt:
            problems.append("prompt differs from the task's")
        if env is None:
            problems.append(f"cannot replay: {t.env_id!r} is not a registered env")
        else:
            problems += replay_differences(env, task, t)
        answer = parsed[-1]
        if isinstance(answer, AnswerAction) and not answer_matches(
            answer.text, task.answer, task.answer_kind
        ):
            problems.append(f"answer {answer.text!r} does not match {task.answer!r}")

    if grounded and isinstance(parsed[-1], AnswerAction):
        tool_outputs = [t.steps[i].observation for i, _ in calls]
        if not answer_is_grounded(parsed[-1].text, tool_outputs):
            problems.append(f"answer {parsed[-1].text!r} occurs in no tool result")
    return problems


def _is_our_spec(tools: Sequence[Mapping[str, Any]], name: str) -> bool:
    """Whether the offered tool ``name`` is our tool (same spec), not a namesake."""
    if name not in TOOL_NAMES:
        return False
    ours = to_plain(tool_registry([name])[name].spec)
    return any(to_plain(spec) == ours for spec in tools)


def _rollout_task(env: ToolUseEnv, t: Trajectory) -> Task | None:
    """The task of an env rollout, if ``reset(t.seed)`` reproduces its prompt."""
    if t.seed < 0 or t.difficulty not in DIFFICULTIES:
        return None
    prompt, _ = env.reset(seed=t.seed, options={"difficulty": t.difficulty})
    return env.task if prompt == t.prompt else None


def replay_differences(env: ToolUseEnv, task: Task, t: Trajectory) -> list[str]:
    """Replay ``t``'s actions on ``task`` in ``env`` and list where the recorded steps differ
    from the env's (observations, roles, rewards, episode ends, metrics); ``[]``: the env
    reproduces every step."""
    replayed = replay_task(
        env,
        task,
        [s.action for s in t.steps],
        env_id=t.env_id,
        seed=t.seed,
        source=t.source,
        difficulty=t.difficulty,
    )
    problems = []
    if len(replayed.steps) != len(t.steps):
        problems.append(f"the env ended the replay after {len(replayed.steps)} steps")
    for i, (got, want) in enumerate(zip(replayed.steps, t.steps, strict=False)):
        for name in ("observation", "role", "reward", "terminated", "truncated"):
            if getattr(got, name) != getattr(want, name):
                problems.append(f"step {i}: {name} differs from the env's replay")
        if dict(got.metrics) != dict(want.metrics):
            problems.append(f"step {i}: metrics differ from the env's replay")
    return problems
