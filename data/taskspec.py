"""Task specifications for synthetic trajectories: which envs, difficulties, generators, filters.

A :class:`TaskSpec` says what :func:`~llm_trainer.data.synthesis.synthesize` makes. It is read
from YAML or JSON (a file, or a mapping already loaded) by :func:`load_task_spec`::

    seed: 0                      # every draw of the synthesis derives from it
    tasks:
      - env_id: LLMTrainer/MultiTool-v0
        difficulties: [2, 3]     # env-drawn tasks (oracle, llm) of each difficulty
        count: 10                # tasks per difficulty (templates, teacher: in all)
        generators:
          - oracle
          - templates
          - name: llm:transformers:/models/qwen   # any backend spec after "llm:"
            samples: 4           # sampled episodes per task; the env keeps the right ones
            temperature: 0.8
    filters: {min_steps: 2, max_steps: 8, max_chars: 4000}
    augment: {paraphrases: 1, reorder: true}

Generators: ``oracle`` (the scripted oracle plays env-drawn tasks), ``templates`` (the canonical
question -> call -> answer examples of :mod:`~llm_trainer.data.templates`), ``teacher``
(Toolformer-style teacher mode, :mod:`~llm_trainer.data.teacher`; needs ``model``) and
``llm:<backend spec>`` (``llm:transformers:DIR``, ``llm:vllm:DIR``, ``llm:openai:URL#model``:
the model samples episodes of env-drawn tasks). A generator is its name, or a mapping with its
name and the options of its kind.

Every problem is a :class:`~llm_trainer.core.errors.ConfigError` that names the field
(``tasks[0].generators[1].samples: ...``) and what is allowed; unknown env ids get a "did you
mean".

>>> spec = load_task_spec({"tasks": [{"env_id": "LLMTrainer/Calculator-v0", "count": 3}]})
>>> [(t.env_id, t.difficulties, t.count, [g.name for g in t.generators]) for t in spec.tasks]
[('LLMTrainer/Calculator-v0', (1,), 3, ['oracle'])]
>>> load_task_spec({"tasks": [{"env_id": "LLMTrainer/Calculater-v0"}]})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
llm_trainer.core.errors.ConfigError: tasks[0].env_id: ... Did you mean 'LLMTrainer/Calculator-v0'...
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from llm_trainer.core.config import build, strict_yaml
from llm_trainer.core.errors import ConfigError, UnknownEnvError, suggest
from llm_trainer.data.base import TOOL_NAMES

GeneratorKind = Literal["oracle", "templates", "teacher", "llm"]
GENERATOR_KINDS: tuple[str, ...] = get_args(GeneratorKind)
#: The options each kind of generator takes (besides ``name``).
KIND_OPTIONS: Mapping[str, tuple[str, ...]] = {
    "oracle": (),
    "templates": (),
    "teacher": ("model", "threshold"),
    "llm": ("samples", "temperature", "max_new_tokens", "batch_size"),
}
#: The env tag of the envs synthesis covers (the filters replay tool-use episodes).
TOOLUSE_TAG = "tooluse"
_T = TypeVar("_T")


@dataclass(frozen=True)
class GeneratorSpec:
    """One way of making trajectories: ``oracle``, ``templates``, ``teacher`` or
    ``llm:<backend spec>``.

    >>> GeneratorSpec("llm:openai:http://127.0.0.1:8000/v1#tiny").backend
    'openai:http://127.0.0.1:8000/v1#tiny'
    """

    name: str
    """``oracle``, ``templates``, ``teacher`` or ``llm:<backend spec>``."""
    samples: int = 1
    """``llm``: episodes sampled per task."""
    temperature: float = 0.8
    """``llm``: sampling temperature (0: greedy, and ``samples`` repeats one episode)."""
    max_new_tokens: int = 128
    """``llm``: most tokens per action."""
    batch_size: int = 16
    """``llm``: episodes played in lockstep (one batched generation per step)."""
    model: str | None = None
    """``teacher``: the local Hugging Face model directory that judges the calls."""
    threshold: float = 0.1
    """``teacher``: the loss reduction a call needs to be kept (nats per answer token)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ConfigError(f"name: expected a string, got {self.name!r}")
        kind = self.kind
        if kind not in GENERATOR_KINDS:
            raise ConfigError(
                f"name: unknown generator {self.name!r}{suggest(kind, GENERATOR_KINDS)}; "
                "allowed: oracle, templates, teacher, llm:<backend spec>"
            )
        if kind == "llm":
            from llm_trainer.agents.backends import parse_backend_spec

            try:
                parse_backend_spec(self.backend or "")
            except ConfigError as exc:
                raise ConfigError(f"name: {self.name!r}: {exc}") from None
        elif ":" in self.name:
            raise ConfigError(f"name: the {kind} generator takes no argument, got {self.name!r}")
        for name in ("samples", "max_new_tokens", "batch_size"):
            _check_int(name, getattr(self, name), minimum=1)
        if not (_is_number(self.temperature) and self.temperature >= 0):
            raise ConfigError(f"temperature: expected a number >= 0, got {self.temperature!r}")
        if not _is_number(self.threshold):
            raise ConfigError(f"threshold: expected a number, got {self.threshold!r}")
        if kind == "teacher" and not self.model:
            raise ConfigError(
                "model: the teacher generator needs a local Hugging Face model directory"
            )

    @property
    def kind(self) -> str:
        """``oracle``, ``templates``, ``teacher`` or ``llm``."""
        return self.name.partition(":")[0]

    @property
    def backend(self) -> str | None:
        """The backend spec of an ``llm`` generator (``None`` for the others)."""
        return self.name.partition(":")[2] if self.kind == "llm" else None


@dataclass(frozen=True)
class TaskEntry:
    """One env and the generators that make its trajectories."""

    env_id: str
    """A registered tool-use env (``LLMTrainer/Calculator-v0``, ``Weather-v0``, ``Search-v0``,
    ``MultiTool-v0``)."""
    difficulties: tuple[int, ...] = (1,)
    """Difficulties of the env-drawn tasks (oracle, llm); each must be one of the env's."""
    count: int = 10
    """Tasks per difficulty for the oracle and llm generators; examples in all for templates
    and teacher (whose tasks have no env difficulty)."""
    generators: tuple[GeneratorSpec, ...] = field(
        default_factory=lambda: (GeneratorSpec("oracle"),)
    )
    """The generators to run, in order."""

    def __post_init__(self) -> None:
        from llm_trainer.envs.registration import spec

        if not isinstance(self.env_id, str):
            raise ConfigError(f"env_id: expected a string, got {self.env_id!r}")
        try:
            env = spec(self.env_id)
        except UnknownEnvError as exc:
            raise ConfigError(f"env_id: {exc}") from None
        if TOOLUSE_TAG not in env.tags or not set(env.capabilities.tools) <= set(TOOL_NAMES):
            raise ConfigError(
                f"env_id: synthesis covers the tool-use envs {tooluse_env_ids()}, "
                f"not {self.env_id!r}"
            )
        if not self.difficulties:
            raise ConfigError("difficulties: name at least one")
        allowed = env.capabilities.difficulties
        for d in self.difficulties:
            if isinstance(d, bool) or not isinstance(d, int) or d not in allowed:
                raise ConfigError(f"difficulties: {self.env_id} has {list(allowed)}, got {d!r}")
        if len(set(self.difficulties)) != len(self.difficulties):
            raise ConfigError(f"difficulties: listed twice in {list(self.difficulties)}")
        _check_int("count", self.count, minimum=1)
        if not self.generators:
            raise ConfigError("generators: name at least one")
        names = [g.name for g in self.generators]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"generators: {twice[0]!r} is listed twice")

    @property
    def tools(self) -> tuple[str, ...]:
        """The env's tools (what templates and teacher mode draw questions for)."""
        from llm_trainer.envs.registration import spec

        return spec(self.env_id).capabilities.tools


@dataclass(frozen=True)
class FilterSpec:
    """The quality filters' bounds (parsing, replay, the answer and duplicates are always
    checked)."""

    min_steps: int = 1
    """Fewest steps (actions) a trajectory may have."""
    max_steps: int | None = None
    """Most steps; ``None``: the env's own ``max_episode_steps`` is the only bound."""
    max_chars: int | None = None
    """Most characters of the task, the actions and the observations together; ``None``: no
    bound."""
    grounded: bool = False
    """Also require the final answer to occur in a tool result (a right answer the tools did
    not support is rejected)."""

    def __post_init__(self) -> None:
        _check_int("min_steps", self.min_steps, minimum=1)
        for name in ("max_steps", "max_chars"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        if self.max_steps is not None and self.max_steps < self.min_steps:
            raise ConfigError(f"max_steps: {self.max_steps} is below min_steps={self.min_steps}")


@dataclass(frozen=True)
class AugmentSpec:
    """Augmentations of the kept trajectories (each result is filtered again)."""

    paraphrases: int = 0
    """Paraphrased copies of each kept trajectory (its task reworded deterministically)."""
    paraphrase_strength: float = 0.5
    """Probability of each rewrite of the paraphraser, in (0, 1]."""
    reorder: bool = False
    """Add a copy of each kept trajectory whose independent tool calls are put in another
    order (MultiTool tasks with several calls), re-verified through the env."""

    def __post_init__(self) -> None:
        _check_int("paraphrases", self.paraphrases, minimum=0)
        strength = self.paraphrase_strength
        if not (_is_number(strength) and 0 < strength <= 1):
            raise ConfigError(f"paraphrase_strength: expected a number in (0, 1], got {strength!r}")


@dataclass(frozen=True)
class TaskSpec:
    """What to synthesize: the tasks and their generators, the filters, the augmentations."""

    tasks: tuple[TaskEntry, ...]
    """The envs and their generators."""
    filters: FilterSpec = field(default_factory=FilterSpec)
    """The quality filters' bounds."""
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    """Augmentations of the kept trajectories."""
    seed: int = 0
    """Every draw (task seeds, template examples, sampling, paraphrases) derives from it."""
    corpus_seed: int = 0
    """Seed of the search corpus (the envs' ``corpus_seed``)."""
    name: str = "synthetic"
    """Name of the stored datasets (``NAME`` and ``NAME-rejected``)."""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("tasks: name at least one task")
        for name in ("seed", "corpus_seed"):
            _check_int(name, getattr(self, name), minimum=0)
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"name: expected a non-empty string, got {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data that :func:`load_task_spec` reads back to an equal spec."""
        from llm_trainer.core.config import to_dict

        data: dict[str, Any] = {
            f.name: to_dict(getattr(self, f.name)) for f in fields(self) if f.name != "tasks"
        }
        data["tasks"] = [
            {
                "env_id": t.env_id,
                "difficulties": list(t.difficulties),
                "count": t.count,
                "generators": [_generator_dict(g) for g in t.generators],
            }
            for t in self.tasks
        ]
        return data


def tooluse_env_ids() -> list[str]:
    """The registered envs synthesis covers (tagged ``tooluse``, with our tools)."""
    from llm_trainer.envs.registration import registry

    return [
        s.id
        for s in registry().values()
        if TOOLUSE_TAG in s.tags and set(s.capabilities.tools) <= set(TOOL_NAMES)
    ]


def load_task_spec(source: str | Path | Mapping[str, Any] | TaskSpec) -> TaskSpec:
    """Read a task spec from a YAML or JSON file (``.json``: JSON, anything else: YAML), or
    from a mapping.

    Raises:
        ConfigError: for a missing file, invalid YAML/JSON or any invalid field, naming the
            file and the field.
    """
    if isinstance(source, TaskSpec):
        return source
    if isinstance(source, Mapping):
        return _parse(source)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"task spec not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON: {exc}") from None
    else:
        data = strict_yaml(text, str(path))
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping with a 'tasks' list")
    try:
        return _parse(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# -- parsing -------------------------------------------------------------------------------------


def _parse(data: Mapping[str, Any]) -> TaskSpec:
    allowed = [f.name for f in fields(TaskSpec)]
    _check_keys(data, allowed, "")
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise ConfigError(f"tasks: expected a non-empty list of tasks, got {raw_tasks!r}")
    tasks = tuple(_parse_task(raw, f"tasks[{i}]") for i, raw in enumerate(raw_tasks))
    values: dict[str, Any] = {"tasks": tasks}
    if "filters" in data:
        values["filters"] = _at("filters", lambda: build(FilterSpec, data["filters"], "filters"))
    if "augment" in data:
        values["augment"] = _at("augment", lambda: build(AugmentSpec, data["augment"], "augment"))
    for name in ("seed", "corpus_seed", "name"):
        if name in data:
            values[name] = _scalar(name, data[name])
    return TaskSpec(**values)


def _scalar(name: str, value: Any) -> Any:
    """A top-level scalar of the spec, type-checked (an int, or the ``name`` string)."""
    expected = str if name == "name" else int
    if isinstance(value, bool) or not isinstance(value, expected):
        kind = "a string" if expected is str else "an integer"
        raise ConfigError(f"{name}: expected {kind}, got {value!r}")
    return value


def _parse_task(raw: Any, path: str) -> TaskEntry:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping with an env_id, got {raw!r}")
    _check_keys(raw, [f.name for f in fields(TaskEntry)], path)
    if "env_id" not in raw:
        raise ConfigError(f"{path}.env_id: missing (a registered tool-use env id)")
    entry = _at(
        path, lambda: build(TaskEntry, {k: v for k, v in raw.items() if k != "generators"}, path)
    )
    if "generators" not in raw:
        return entry
    gens = raw["generators"]
    if not isinstance(gens, list):
        raise ConfigError(f"{path}.generators: expected a list, got {gens!r}")
    parsed = tuple(_parse_generator(g, f"{path}.generators[{j}]") for j, g in enumerate(gens))
    return _at(path, lambda: replace(entry, generators=parsed))


def _parse_generator(raw: Any, path: str) -> GeneratorSpec:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{path}: expected a generator name or a mapping with a 'name', got {raw!r}"
        )
    if "name" not in raw:
        raise ConfigError(f"{path}.name: missing (oracle, templates, teacher, llm:<backend>)")
    _check_keys(raw, [f.name for f in fields(GeneratorSpec)], path)
    generator = _at(path, lambda: build(GeneratorSpec, raw, path))
    own = KIND_OPTIONS[generator.kind]
    for key in raw:
        if key != "name" and key not in own:
            takes = f"takes {', '.join(own)}" if own else "takes no options"
            raise ConfigError(f"{path}.{key}: the {generator.kind} generator {takes}")
    return generator


def _generator_dict(g: GeneratorSpec) -> dict[str, Any] | str:
    own = KIND_OPTIONS[g.kind]
    if not own:
        return g.name
    return {"name": g.name, **{k: getattr(g, k) for k in own}}


def _at(path: str, make: Callable[[], _T]) -> _T:
    """``make()``, with ``path.`` put before the message of a ConfigError that lacks it."""
    try:
        return make()
    except ConfigError as exc:
        message = str(exc)
        if not path or message.startswith(path):
            raise
        raise ConfigError(f"{path}.{message}") from None


def _check_keys(raw: Mapping[str, Any], allowed: list[str], path: str) -> None:
    where = f"{path}." if path else ""
    for key in raw:
        if key not in allowed:
            raise ConfigError(
                f"{where}{key}: unknown field{suggest(str(key), allowed)}; "
                f"allowed: {', '.join(allowed)}"
            )


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _is_number(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and not (isinstance(value, float) and math.isnan(value))
    )
