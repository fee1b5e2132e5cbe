"""Data strategy 3, ToolBench: read ToolBench-format files into our trajectories.

ToolBench (Qin et al., 2023, arXiv:2307.16789; github.com/OpenBMB/ToolBench) stores solved
queries in two shapes, both read here:

* the processed ("ToolLLaMA") format: a JSON list of records
  ``{"id": ..., "conversations": [{"from": "system" | "user" | "assistant" | "function",
  "value": ...}, ...]}``, where an assistant turn is ReAct text
  ``"Thought: ...\\nAction: NAME\\nAction Input: {json}"``, a function turn is the call's result
  (usually ``{"error": "", "response": "..."}``), and the system turn lists the APIs
  (``Specifically, you have access to the following APIs: [{...}, ...]``);
* the raw answer format: records with ``"answer_generation": {"valid_data", "query",
  "function": [API specs], "train_messages": [[{"role", "content", "function_call"}, ...]]}``.

The episode ends with the special API ``Finish`` whose input is ``{"return_type":
"give_answer", "final_answer": "..."}``. Mapping onto our format: each Action becomes
``<tool_call>{"name": NAME, "arguments": {...}}</tool_call>``, Finish becomes
``<answer>final_answer</answer>``, thoughts are dropped (or kept as a ``<think>`` block).

Records whose tools are all ours (``calculator``, ``weather``, ``search``, also as ToolBench's
``<api>_for_<tool>`` names or through ``tool_aliases``) map onto the matching registered env:
they are replayed through it, so the observations are our tools' real outputs (weather in
``WeatherWorld(weather_seed)``) and the metrics are the env's. Other records become
``env_id="toolbench"`` trajectories with the recorded results and the same metric rules
(``exec_ok``: no call reported an error; ``tool_correct``: every call names an offered API).
ToolBench has no reference answer apart from the annotated final answer, so a ``give_answer``
Finish counts as ``answer_correct`` (ToolBench's own "solved" label).

Bad input never brings a batch down: a malformed record is skipped and counted (or, with
``on_error="raise"``, raises :class:`~llm_trainer.data.base.DataFormatError` naming
the record's index). Records without a Finish (ToolBench's per-step prefixes) and give-ups are
skipped and counted, never errors. With no file, :func:`load_toolbench` falls back to synthetic
data: oracle rollouts of the tool-use envs, with a logged notice.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import METRIC_KEYS, FrozenDict, ToolCall, to_plain
from llm_trainer.core.trajectory import Step, Trajectory
from llm_trainer.data.base import (
    MULTITOOL_ENV_ID,
    TOOL_ENV_IDS,
    TOOL_NAMES,
    DataFormatError,
    EnvPool,
    env_id_for_tools,
    replay_task,
    solution_actions,
)
from llm_trainer.envs.registration import registry
from llm_trainer.envs.tools import AnswerAction, format_answer, parse_action
from llm_trainer.envs.tooluse.base import Task, system_prompt

logger = logging.getLogger(__name__)

SOURCE = "toolbench"
SYNTHETIC_SOURCE = "toolbench:synthetic"
#: The env id of records that do not map onto one of our envs.
TOOLBENCH_ENV_ID = "toolbench"
#: The example file shipped with the package (written for llm-trainer, in ToolBench's format).
EXAMPLE_PATH = Path(__file__).resolve().parent / "toolbench_example.json"
FINISH = "Finish"

OnError = Literal["raise", "skip"]
_ROLE_ALIASES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "function": "function",
    "tool": "function",
    "observation": "function",
}
_API_LIST_MARKER = "Specifically, you have access to the following APIs:"
_TAGS = re.compile(r"</?(?:tool_call|answer|think)>")


@dataclass(frozen=True, slots=True)
class ToolBenchConfig:
    """How ToolBench records are read."""

    on_error: OnError = "skip"
    """``"skip"``: a malformed record is skipped and counted (its index and reason are in the
    result); ``"raise"``: it raises :class:`DataFormatError` naming its index."""
    keep_thoughts: bool = False
    """Keep each ReAct thought as a ``<think>...</think>`` block before the action."""
    tool_aliases: Mapping[str, str] = field(default_factory=dict)
    """ToolBench API name -> our tool name (``calculator``, ``weather`` or ``search``), for APIs
    that should run as ours beyond the ``<api>_for_<tool>`` convention."""
    weather_seed: int = 0
    """Weather world that weather calls of mapped records run in (the example file's dates are
    those of ``WeatherWorld(0)``)."""
    corpus_seed: int = 0
    """Search corpus that search calls of mapped records run on."""
    synthetic_episodes: int = 64
    """Episodes of synthetic data when no file is given."""
    seed: int = 0
    """Seed of the synthetic data."""

    def __post_init__(self) -> None:
        if self.on_error not in get_args(OnError):
            raise ConfigError(
                f"ToolBenchConfig.on_error must be one of {list(get_args(OnError))}, "
                f"got {self.on_error!r}"
            )
        bad = {k: v for k, v in self.tool_aliases.items() if v not in TOOL_NAMES}
        if bad:
            raise ConfigError(
                f"ToolBenchConfig.tool_aliases must map onto {list(TOOL_NAMES)}, got {bad!r}"
            )
        object.__setattr__(self, "tool_aliases", FrozenDict(dict(self.tool_aliases)))
        for name in ("weather_seed", "corpus_seed", "seed", "synthetic_episodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"ToolBenchConfig.{name} must be an int >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class RecordError:
    """A record that could not be read: its index in its file, why, and the file."""

    index: int
    message: str
    where: str = ""


@dataclass(frozen=True, slots=True)
class ToolBenchResult:
    """What reading a ToolBench file gave.

    Attributes:
        trajectories: One per complete, well-formed record, in file order.
        records: Records in the file.
        errors: The malformed records (``on_error="skip"``).
        skipped: Records skipped, by reason: ``malformed``, ``incomplete`` (no Finish),
            ``gave_up`` (``give_up_and_restart``), ``invalid`` (``valid_data`` false).
        replaced_observations: Results of our tools that differed from the recorded ones (the
            trajectory has the real output).
        synthetic: Whether the data is the synthetic fallback.
    """

    trajectories: tuple[Trajectory, ...]
    records: int
    errors: tuple[RecordError, ...] = ()
    skipped: Mapping[str, int] = field(default_factory=dict)
    replaced_observations: int = 0
    synthetic: bool = False


class _SkipRecordError(Exception):
    """A record that is well-formed but not a usable episode (no Finish, a give-up)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _FormatError(Exception):
    """A malformed record (turned into a RecordError or a DataFormatError with its index)."""


@dataclass(slots=True)
class _Turn:
    role: str
    thought: str = ""
    action: str | None = None
    action_input: str | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class _Episode:
    prompt: str
    apis: tuple[Mapping[str, Any], ...]  # ToolBench API specs, Finish excluded, file order
    calls: tuple[tuple[str, str, Mapping[str, Any]], ...]  # (thought, API name, arguments)
    results: tuple[str, ...]  # the recorded function turns
    final_thought: str
    answer: str


# -- public API ----------------------------------------------------------------------------------


def load_toolbench(
    path: str | Path | None = None, config: ToolBenchConfig | None = None
) -> list[Trajectory]:
    """Read a ToolBench JSON file into trajectories; with ``path=None``, synthetic data.

    Logs how many records were read, skipped (and why) and replaced. See
    :func:`read_toolbench` for the details and the counts.

    Raises:
        FileNotFoundError: no file at ``path``.
        DataFormatError: the file is not JSON or not a list of records; a malformed record with
            ``on_error="raise"``.

    >>> ts = load_toolbench(EXAMPLE_PATH)
    >>> len(ts) > 0, all(t.source == "toolbench" for t in ts)
    (True, True)
    """
    result = read_toolbench(path, config)
    if not result.synthetic:
        logger.info(
            "ToolBench %s: %d records -> %d trajectories; skipped %s; %d tool results replaced",
            path, result.records, len(result.trajectories), dict(result.skipped),
            result.replaced_observations,
        )  # fmt: skip
        for error in result.errors[:5]:
            logger.warning(
                "ToolBench %s: skipped record %d: %s", error.where, error.index, error.message
            )
    return list(result.trajectories)


def read_toolbench(
    path: str | Path | None = None, config: ToolBenchConfig | None = None
) -> ToolBenchResult:
    """Read a ToolBench JSON file (a list of records, or one raw answer record) with the counts
    of what was skipped; ``path=None`` gives synthetic data (:func:`synthetic_trajectories`).

    ``path`` may also be a directory, read as every ``*.json`` file in it in name order (raw
    ToolBench answers come one file per query); a file that is not JSON is then a malformed
    record (index 0) of that file."""
    config = config or ToolBenchConfig()
    if path is None:
        logger.warning(
            "no ToolBench file given: falling back to %d synthetic trajectories (oracle rollouts "
            "of the tool-use envs, seed %d)", config.synthetic_episodes, config.seed,
        )  # fmt: skip
        trajectories = synthetic_trajectories(
            config.synthetic_episodes, config.seed, corpus_seed=config.corpus_seed
        )
        return ToolBenchResult(tuple(trajectories), len(trajectories), synthetic=True)
    path = Path(path)
    if not path.is_dir():
        return convert_toolbench(_read_json(path), config, where=str(path))
    results = []
    for file in sorted(path.glob("*.json")):
        try:
            results.append(convert_toolbench(_read_json(file), config, where=str(file)))
        except DataFormatError as exc:
            if config.on_error == "raise":
                raise
            error = RecordError(0, str(exc), str(file))
            results.append(ToolBenchResult((), 1, (error,), {"malformed": 1}))
    skipped: Counter[str] = Counter()
    for result in results:
        skipped.update(result.skipped)
    return ToolBenchResult(
        trajectories=tuple(t for r in results for t in r.trajectories),
        records=sum(r.records for r in results),
        errors=tuple(e for r in results for e in r.errors),
        skipped=dict(skipped),
        replaced_observations=sum(r.replaced_observations for r in results),
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path} is not UTF-8 text: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise DataFormatError(f"{path} is not valid JSON: nested too deeply") from None


def convert_toolbench(
    data: Any, config: ToolBenchConfig | None = None, *, where: str = "ToolBench data"
) -> ToolBenchResult:
    """Convert parsed ToolBench JSON (a list of records, or one record) into trajectories.

    Never raises for a bad record with ``on_error="skip"``; raises :class:`DataFormatError` when
    ``data`` is neither a list nor a record.
    """
    config = config or ToolBenchConfig()
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataFormatError(
            f"{where}: expected a JSON list of ToolBench records, got {type(data).__name__}"
        )
    pool = EnvPool(config.corpus_seed)
    trajectories: list[Trajectory] = []
    errors: list[RecordError] = []
    skipped: Counter[str] = Counter()
    replaced = 0
    for index, record in enumerate(data):
        try:
            trajectory, n_replaced = _convert(record, config, pool)
        except _SkipRecordError as skip:
            skipped[skip.reason] += 1
            continue
        except _FormatError as exc:
            if config.on_error == "raise":
                raise DataFormatError(f"{where}: {exc}", index) from None
            errors.append(RecordError(index, str(exc), where))
            skipped["malformed"] += 1
            continue
        trajectories.append(trajectory)
        replaced += n_replaced
    return ToolBenchResult(tuple(trajectories), len(data), tuple(errors), dict(skipped), replaced)


def synthetic_trajectories(n: int, seed: int, *, corpus_seed: int = 0) -> list[Trajectory]:
    """``n`` oracle rollouts of the four tool-use envs at difficulties 1-3, multi-step chains
    included: the stand-in for ToolBench data (``source="toolbench:synthetic"``).

    Each is a real episode (``seed`` is its reset seed), so
    :func:`~llm_trainer.data.base.validate_trajectory` replays it from the reset.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"n must be a non-negative int, got {n!r}")
    env_ids = (*TOOL_ENV_IDS.values(), MULTITOOL_ENV_ID)
    rng = np.random.default_rng(seed)
    pool = EnvPool(corpus_seed)
    out = []
    for i in range(n):
        env_id = env_ids[i % len(env_ids)]
        difficulty = 1 + (i // len(env_ids)) % 3
        reset_seed = int(rng.integers(2**31))
        env = pool[env_id]
        env.reset(seed=reset_seed, options={"difficulty": difficulty})
        task = env.task
        out.append(
            replay_task(
                env,
                task,
                solution_actions(task),
                env_id=env_id,
                seed=reset_seed,
                source=SYNTHETIC_SOURCE,
                difficulty=difficulty,
            )
        )
    return out


def to_toolbench(trajectories: Sequence[Trajectory]) -> list[dict[str, Any]]:
    """Write trajectories as ToolBench processed records (the inverse of the loader).

    Raises:
        ValueError: a trajectory whose actions are not tool calls followed by one answer.
    """
    records = []
    for t in trajectories:
        apis = [
            {
                "name": spec["function"]["name"],
                "description": spec["function"].get("description", ""),
                "parameters": to_plain(spec["function"].get("parameters", {})),
            }
            for spec in t.tools
        ]
        apis.append(_FINISH_API)
        conversations = [
            {"from": "system", "value": f"{_SYSTEM_PREAMBLE}\n{_API_LIST_MARKER} {apis!r}"},
            {"from": "user", "value": f"\n{t.prompt}\nBegin!\n"},
        ]
        for i, step in enumerate(t.steps):
            action = parse_action(step.action)
            if isinstance(action, ToolCall) and i < len(t.steps) - 1:
                arguments = json.dumps(action.arguments_dict(), ensure_ascii=False)
                failed = step.observation.startswith("error: ")
                response = {"error": step.observation[7:] if failed else "",
                            "response": "" if failed else step.observation}  # fmt: skip
                conversations += [
                    {"from": "assistant", "value": _react("", action.name, arguments)},
                    {"from": "function", "value": json.dumps(response, ensure_ascii=False)},
                ]
            elif isinstance(action, AnswerAction) and i == len(t.steps) - 1:
                finish = json.dumps({"return_type": "give_answer", "final_answer": action.text})
                conversations.append({"from": "assistant", "value": _react("", FINISH, finish)})
            else:
                raise ValueError(f"step {i} of {t.prompt!r} is neither a tool call nor the answer")
        records.append({"id": f"{t.source}:{t.env_id}:{t.seed}", "conversations": conversations})
    return records


# -- one record ----------------------------------------------------------------------------------

_SYSTEM_PREAMBLE = (
    "You are AutoGPT, you can use many tools(functions) to do the following task.\n"
    "At each step, give your thought, then call a function:\nThought:\nAction\nAction Input:\n"
    'ALWAYS call "Finish" at the end of the task with the final answer.'
)
_FINISH_API: dict[str, Any] = {
    "name": FINISH,
    "description": "Call this function at the end of the task to give the final answer.",
    "parameters": {
        "type": "object",
        "properties": {
            "return_type": {"type": "string", "enum": ["give_answer", "give_up_and_restart"]},
            "final_answer": {"type": "string"},
        },
        "required": ["return_type"],
    },
}


def _react(thought: str, action: str, action_input: str) -> str:
    return f"\nThought: {thought}\nAction: {action}\nAction Input: {action_input}"


def _convert(record: Any, config: ToolBenchConfig, pool: EnvPool) -> tuple[Trajectory, int]:
    episode = _parse(record)
    names = [str(api["name"]) for api in episode.apis] + [name for _, name, _ in episode.calls]
    resolved = [_resolve(name, config) for name in names]
    env_id = None if None in resolved else env_id_for_tools(r for r in resolved if r is not None)
    spec = registry().get(env_id) if env_id is not None else None
    limit = spec.max_episode_steps if spec is not None else None
    if limit is not None and len(episode.calls) + 1 > limit:
        env_id = None  # the real env would cut it: keep it as a generic ToolBench episode
    plan = tuple(
        ToolCall((_resolve(name, config) if env_id else None) or name, arguments)
        for _, name, arguments in episode.calls
    )
    actions = [
        _think(thought, config) + call.to_text()
        for (thought, _, _), call in zip(episode.calls, plan, strict=True)
    ]
    actions.append(_think(episode.final_thought, config) + format_answer(episode.answer))
    for action in actions:
        parsed = parse_action(action)
        if not isinstance(parsed, ToolCall | AnswerAction):
            raise _FormatError(
                f"cannot be written in the tool-call format ({parsed.reason}): {action[:80]!r}"
            )
    if env_id is None:
        return _generic(episode, plan, actions), 0
    env = pool[env_id]
    task = Task(
        prompt=episode.prompt,
        answer=episode.answer,
        answer_kind="text",
        plan=plan,
        required_tools=frozenset(call.name for call in plan),
        allowed_tools=frozenset(env.tools.names),
        world_seed=config.weather_seed,
    )
    trajectory = replay_task(
        env, task, actions, env_id=env_id, seed=config.weather_seed, source=SOURCE
    )
    replaced = sum(
        step.observation != _unwrap(recorded)[0]
        for step, recorded in zip(trajectory.steps, episode.results, strict=False)
    )
    return trajectory, replaced


def _think(thought: str, config: ToolBenchConfig) -> str:
    thought = thought.strip()
    if not config.keep_thoughts or not thought or _TAGS.search(thought):
        return ""
    return f"<think>{thought}</think>"


def _resolve(name: str, config: ToolBenchConfig) -> str | None:
    """Our tool behind a ToolBench API name, or ``None``."""
    if name in config.tool_aliases:
        return config.tool_aliases[name]
    if name in TOOL_NAMES:
        return name
    for tool in TOOL_NAMES:
        if name.endswith(f"_for_{tool}"):
            return tool
    return None


def _generic(episode: _Episode, plan: tuple[ToolCall, ...], actions: list[str]) -> Trajectory:
    """A ``toolbench`` trajectory: recorded results, metrics by the env's rules."""
    names = [str(api["name"]) for api in episode.apis]
    offered = set(names)
    required = {call.name for call in plan}
    called: set[str] = set()
    succeeded: set[str] = set()
    n_calls = n_failed = 0
    steps = []
    for i, action in enumerate(actions):
        if i < len(plan):
            call = plan[i]
            observation, ok = _unwrap(episode.results[i])
            called.add(call.name)
            succeeded |= {call.name} if ok else set()
            n_calls, n_failed = n_calls + 1, n_failed + (not ok)
            role, reward, terminated, correct = "tool", 0.0, False, False
        else:
            observation, role, terminated, correct = "", "user", True, True
            reward = 1.0 if required <= succeeded else 0.0
        metrics = {
            "format_ok": True,
            "tool_correct": bool(called) and required <= called <= offered,
            "exec_ok": n_calls > 0 and n_failed == 0,
            "answer_correct": correct,
            "success": correct and required <= succeeded,
        }
        assert tuple(metrics) == METRIC_KEYS
        steps.append(Step(action, observation, role, reward, terminated, False, metrics))
    tools = tuple(_function_spec(api) for api in episode.apis)
    return Trajectory(
        env_id=TOOLBENCH_ENV_ID,
        seed=-1,
        difficulty=0,
        system_prompt=system_prompt(names),
        tools=tools,
        prompt=episode.prompt,
        steps=tuple(steps),
        source=SOURCE,
    )


def _function_spec(api: Mapping[str, Any]) -> dict[str, Any]:
    """A ToolBench API spec as an OpenAI-style function spec (``optional`` dropped)."""
    params = api.get("parameters")
    params = dict(params) if isinstance(params, Mapping) else {}
    parameters = {
        "type": "object",
        "properties": to_plain(params.get("properties", {}))
        if isinstance(params.get("properties"), Mapping)
        else {},
        "required": [r for r in params.get("required", []) if isinstance(r, str)]
        if isinstance(params.get("required"), list)
        else [],
    }
    description = api.get("description", "")
    return {
        "type": "function",
        "function": {
            "name": str(api["name"]),
            "description": description if isinstance(description, str) else "",
            "parameters": parameters,
        },
    }


def _unwrap(value: str) -> tuple[str, bool]:
    """A recorded function result: ``{"error": e, "response": r}`` -> ``(r, True)`` or
    ``("error: e", False)``; any other text is the result as is."""
    try:
        payload = json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        return value, True
    if not isinstance(payload, dict) or not ({"error", "response"} & set(payload)):
        return value, True
    error = payload.get("error")
    if error:
        return f"error: {error}", False
    response = payload.get("response", "")
    return response if isinstance(response, str) else json.dumps(response), True


# -- parsing -------------------------------------------------------------------------------------


def _parse(record: Any) -> _Episode:
    if not isinstance(record, dict):
        raise _FormatError(f"expected a JSON object, got {type(record).__name__}")
    if "conversations" in record:
        turns, apis = _from_conversations(record["conversations"])
    elif "answer_generation" in record:
        turns, apis = _from_answer_generation(record["answer_generation"])
    else:
        raise _FormatError("neither 'conversations' nor 'answer_generation' in the record")
    return _walk(turns, apis)


def _from_conversations(conversations: Any) -> tuple[list[_Turn], list[dict[str, Any]] | None]:
    if not isinstance(conversations, list):
        raise _FormatError("'conversations' must be a list")
    turns: list[_Turn] = []
    apis = None
    for i, turn in enumerate(conversations):
        if not isinstance(turn, dict):
            raise _FormatError(f"turn {i} must be an object with 'from' and 'value'")
        role, value = turn.get("from"), turn.get("value")
        if not isinstance(role, str) or role.lower() not in _ROLE_ALIASES:
            raise _FormatError(
                f"turn {i}: unknown 'from' {role!r}; expected one of {sorted(_ROLE_ALIASES)}"
            )
        if not isinstance(value, str):
            raise _FormatError(f"turn {i}: 'value' must be a string")
        role = _ROLE_ALIASES[role.lower()]
        if role == "system":
            apis = _apis_from_system(value, i)
            continue
        if role == "assistant":
            turns.append(_react_turn(value, i))
        else:
            turns.append(_Turn(role, text=value))
    return turns, apis


def _react_turn(text: str, i: int) -> _Turn:
    """Split ReAct text into thought, action and action input."""
    at = text.rfind("Action Input:")
    if at < 0:
        if re.search(r"^\s*Action:", text, re.MULTILINE):
            raise _FormatError(f"turn {i}: 'Action:' without 'Action Input:'")
        return _Turn("assistant", thought=_strip_thought(text))
    head, action_input = text[:at], text[at + len("Action Input:") :].strip()
    matches = list(re.finditer(r"(?:^|\n)\s*Action:[ \t]*(?P<name>[^\n]*)", head))
    match = matches[-1] if matches else None
    if match is None or not match["name"].strip():
        raise _FormatError(f"turn {i}: 'Action Input:' without an 'Action: NAME' line before it")
    thought = _strip_thought(head[: match.start()])
    return _Turn(
        "assistant", thought=thought, action=match["name"].strip(), action_input=action_input
    )


def _strip_thought(text: str) -> str:
    text = text.strip()
    return text[len("Thought:") :].strip() if text.startswith("Thought:") else text


def _apis_from_system(text: str, i: int) -> list[dict[str, Any]] | None:
    at = text.find(_API_LIST_MARKER)
    if at < 0:
        return None
    rest = text[at + len(_API_LIST_MARKER) :]
    start, end = rest.find("["), rest.rfind("]")
    if start < 0 or end < start:
        raise _FormatError(f"turn {i}: no API list after {_API_LIST_MARKER!r}")
    source = rest[start : end + 1]
    parsed: Any = None
    for parse in (ast.literal_eval, json.loads):
        try:
            parsed = parse(source)
            break
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
    if not isinstance(parsed, list):
        raise _FormatError(f"turn {i}: the API list is not a list literal")
    return _check_apis(parsed, f"turn {i}")


def _check_apis(apis: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(apis, list):
        raise _FormatError(f"{where}: the API list must be a list")
    for api in apis:
        if not isinstance(api, dict) or not isinstance(api.get("name"), str) or not api["name"]:
            raise _FormatError(f"{where}: every API needs a non-empty string 'name'")
    return apis


def _from_answer_generation(raw: Any) -> tuple[list[_Turn], list[dict[str, Any]] | None]:
    if not isinstance(raw, dict):
        raise _FormatError("'answer_generation' must be an object")
    if raw.get("valid_data") is False:
        raise _SkipRecordError("invalid")
    chains = raw.get("train_messages")
    if not isinstance(chains, list) or not chains or not isinstance(chains[-1], list):
        raise _FormatError(
            "'answer_generation.train_messages' must be a non-empty list of message lists"
        )
    apis = _check_apis(raw["function"], "'function'") if "function" in raw else None
    turns = []
    for i, message in enumerate(chains[-1]):  # the last chain is the whole episode
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in _ROLE_ALIASES:
            raise _FormatError(f"message {i} must be an object with a known 'role'")
        role = _ROLE_ALIASES[role]
        content = message.get("content")
        content = content if isinstance(content, str) else ""
        if role == "system":
            continue
        if role != "assistant":
            turns.append(_Turn(role, text=content))
            continue
        call = message.get("function_call")
        if call is None:
            turns.append(_Turn("assistant", thought=content.strip()))
            continue
        if (
            not isinstance(call, dict)
            or not isinstance(call.get("name"), str)
            or not (call["name"].strip())
        ):
            raise _FormatError(f"message {i}: 'function_call' must have a non-empty string 'name'")
        arguments = call.get("arguments", "{}")
        arguments = arguments if isinstance(arguments, str) else json.dumps(arguments)
        turns.append(_Turn("assistant", content.strip(), call["name"].strip(), arguments))
    return turns, apis


def _walk(turns: list[_Turn], apis: list[dict[str, Any]] | None) -> _Episode:
    """Check the order of turns and collect the calls, their results and the answer."""
    if not turns or turns[0].role != "user" or not turns[0].text.strip():
        raise _FormatError("the first turn after the system prompt must be the user's query")
    prompt = _clean_query(turns[0].text)
    calls: list[tuple[str, str, dict[str, Any]]] = []
    results: list[str] = []
    pending_thought: list[str] = []
    waiting = False  # a call waits for its function turn
    for i, turn in enumerate(turns[1:], 1):
        if turn.role == "user":
            raise _FormatError(
                f"turn {i}: a second user turn (multi-turn queries are not supported)"
            )
        if turn.role == "function":
            if not waiting:
                raise _FormatError(f"turn {i}: a function result without a preceding Action")
            results.append(turn.text)
            waiting = False
            continue
        if waiting:
            raise _FormatError(f"turn {i}: an assistant turn before the previous Action's result")
        if turn.action is None:  # a thought alone: it belongs to the next action
            pending_thought.append(turn.thought)
            continue
        arguments = _arguments(turn.action_input or "", i)
        thought = "\n".join([*pending_thought, turn.thought]).strip()
        pending_thought = []
        if turn.action == FINISH:
            return _finish(arguments, i, prompt, apis, calls, results, thought)
        if _TAGS.search(turn.action):
            raise _FormatError(f"turn {i}: the Action name contains a protocol tag")
        calls.append((thought, turn.action, arguments))
        waiting = True
    raise _SkipRecordError("incomplete")


def _finish(
    arguments: dict[str, Any],
    i: int,
    prompt: str,
    apis: list[dict[str, Any]] | None,
    calls: list[tuple[str, str, dict[str, Any]]],
    results: list[str],
    thought: str,
) -> _Episode:
    return_type = arguments.get("return_type", "give_answer")
    if return_type == "give_up_and_restart":
        raise _SkipRecordError("gave_up")
    if return_type != "give_answer":
        raise _FormatError(f"turn {i}: unknown Finish return_type {return_type!r}")
    answer = arguments.get("final_answer")
    if not isinstance(answer, str) or not answer.strip():
        raise _FormatError(f"turn {i}: Finish(give_answer) needs a non-empty string 'final_answer'")
    if apis is None:  # no API list: the APIs are the ones called
        apis = [{"name": name} for name in dict.fromkeys(original for _, original, _ in calls)]
    offered = [api for api in apis if api["name"] != FINISH]
    if _TAGS.search(answer):
        raise _FormatError(
            f"turn {i}: the final answer contains a <tool_call>/<answer>/<think> tag"
        )
    return _Episode(prompt, tuple(offered), tuple(calls), tuple(results), thought, answer.strip())


def _arguments(text: str, i: int) -> dict[str, Any]:
    text = text.strip() or "{}"
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise _FormatError(f"turn {i}: 'Action Input' is not valid JSON: {text[:60]!r}") from None
    if not isinstance(value, dict):
        raise _FormatError(
            f"turn {i}: 'Action Input' must be a JSON object, got {type(value).__name__}"
        )
    return value


def _clean_query(text: str) -> str:
    """The user's query without ToolBench's trailing ``Begin!``."""
    text = text.strip()
    if text.endswith("Begin!"):
        text = text[: -len("Begin!")].rstrip()
    return text
