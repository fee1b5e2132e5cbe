"""What the knowledge graph may hold: node kinds, edge kinds, their attributes and their ids.

Every node kind has a typed record (a frozen dataclass: its fields are the attributes a node of
that kind may carry, each with a docstring) and every edge kind one for its attributes and a
rule for the kinds it joins. :func:`check_node` and :func:`check_edge` validate what a writer
gives against them, strictly: an unknown kind, an unknown attribute, a wrong type, a value that
is not JSON, or an edge between the wrong kinds is a :class:`~llm_trainer.core.errors.
ConfigError` naming it.

Node ids are ``<kind>:<identity>``, stable across processes and runs: a model is the digest of
its weights directory (:func:`~llm_trainer.core.digest.tree_digest`), a dataset its
trajectory-store version, a failure mode or a tool its name, and a problem, solution, agent or
experiment the hash of what identifies it (a problem: env id, reset seed and difficulty).

>>> Problem("What is 2 + 2?", env_id="LLMTrainer/Calculator-v0", seed=3, difficulty=1).node_id
'problem:b47c052ddde175f0'
>>> check_node("problem", {"statement": "2 + 2?", "colour": "red"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
llm_trainer.core.errors.ConfigError: problem.colour: unknown field; allowed: statement, ...
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from llm_trainer.core.config import build
from llm_trainer.core.errors import ConfigError, suggest

NodeKind = Literal[
    "problem", "solution", "agent", "model", "dataset", "experiment", "failure_mode", "tool"
]
EdgeKind = Literal[
    "solved_by", "attempted_by", "derived_from", "trained_on", "evaluated_on", "fails_with", "uses"
]


def content_id(kind: str, *identity: Any) -> str:
    """``<kind>:`` and the SHA-256 prefix of ``identity`` as canonical JSON.

    >>> content_id("agent", "oracle", None)
    'agent:216006ead27cbcbf'
    """
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{kind}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


# -- node records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """A task to solve: one env episode's task (env id, reset seed, difficulty), or a problem
    given as data (a statement in a domain)."""

    kind: ClassVar[str] = "problem"
    statement: str
    """The task as a solver sees it (an env's first observation): what related-problem search
    reads."""
    env_id: str = ""
    """The env that poses it (``LLMTrainer/Calculator-v0``); empty for a problem given as data."""
    seed: int | None = None
    """The env's reset seed."""
    difficulty: int | None = None
    """The env's difficulty."""
    domain: str = ""
    """A problem family (for problems given as data)."""
    tools: tuple[str, ...] = ()
    """Names of the tools the problem offers."""

    @property
    def node_id(self) -> str:
        if self.env_id:
            return content_id("problem", self.env_id, self.seed, self.difficulty)
        return content_id("problem", self.domain, self.statement)


@dataclass(frozen=True, slots=True)
class Solution:
    """A way a problem was solved (the agent's actions and what they returned)."""

    kind: ClassVar[str] = "solution"
    text: str
    """The solution as an example: each action and observation, joined by `` -> ``."""
    problem: str = ""
    """The id of the problem it solves (the agents that found it: its ``derived_from``
    edges)."""
    reward: float | None = None
    """The episode's total reward."""
    turns: int | None = None
    """Env steps it took."""

    @property
    def node_id(self) -> str:
        return content_id("solution", self.problem, self.text)


@dataclass(frozen=True, slots=True)
class Agent:
    """An agent spec as the benchmark runner plays it."""

    kind: ClassVar[str] = "agent"
    spec: str
    """The agent spec (``oracle``, ``transformers:DIR``, a saved agent directory...)."""
    name: str = ""
    """Its name on the leaderboard."""
    fingerprint: str | None = None
    """The digest of its files (:func:`~llm_trainer.benchmarks.runner.agent_fingerprint`):
    the same spec with other weights is another agent."""

    @property
    def node_id(self) -> str:
        return content_id("agent", self.spec, self.fingerprint)


@dataclass(frozen=True, slots=True)
class Model:
    """A model's weights directory, named by the digest of its files."""

    kind: ClassVar[str] = "model"
    digest: str
    """:func:`~llm_trainer.core.digest.tree_digest` of the directory."""
    path: str = ""
    """Where it was when recorded."""
    origin: str = ""
    """``tiny`` (built from scratch), ``given`` (a starting model) or ``trained`` (a run's
    ``final_model``)."""

    @property
    def node_id(self) -> str:
        return f"model:{self.digest}"


@dataclass(frozen=True, slots=True)
class Dataset:
    """A dataset of the trajectory store, named by its version (content hash)."""

    kind: ClassVar[str] = "dataset"
    version: str
    """The store's dataset id."""
    name: str = ""
    """Its name in the store."""
    size: int | None = None
    """Trajectories."""
    strategy: str = ""
    """How it was made (``oracle``, ``templates``, ``round-0``...)."""
    agent: str = ""
    """What acted (the store's ``Provenance.agent``)."""
    env_ids: tuple[str, ...] = ()
    """Envs of its trajectories."""
    store: str = ""
    """The trajectory-store file that holds it."""

    @property
    def node_id(self) -> str:
        return f"dataset:{self.version}"


@dataclass(frozen=True, slots=True)
class Experiment:
    """One run of ``run_experiment`` (``llm-trainer train``), named by its run directory."""

    kind: ClassVar[str] = "experiment"
    name: str
    """The run name."""
    algorithm: str = ""
    """The algorithm's registered name."""
    seed: int | None = None
    """The experiment's seed."""
    run_dir: str = ""
    """The run directory (its identity: a resumed run is the same experiment)."""
    status: Literal["", "running", "finished"] = ""
    """``running`` from the start, ``finished`` when the summary was written."""
    summary: Mapping[str, Any] = field(default_factory=dict)
    """Headline numbers of the summary (success before and after, wall time)."""

    @property
    def node_id(self) -> str:
        return content_id("experiment", self.run_dir or self.name)


@dataclass(frozen=True, slots=True)
class FailureMode:
    """A way attempts fail (``malformed_action``, ``wrong_tool``, ``wrong_answer``...)."""

    kind: ClassVar[str] = "failure_mode"
    name: str
    """A short identifier."""
    description: str = ""
    """What it means."""

    @property
    def node_id(self) -> str:
        return f"failure_mode:{self.name}"


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool problems offer and solutions call."""

    kind: ClassVar[str] = "tool"
    name: str
    """The function name (``calculator``)."""
    description: str = ""
    """The spec's description."""

    @property
    def node_id(self) -> str:
        return f"tool:{self.name}"


NodeRecord = Problem | Solution | Agent | Model | Dataset | Experiment | FailureMode | Tool

#: The record class of every node kind.
NODE_TYPES: Mapping[str, type[Any]] = {
    cls.kind: cls
    for cls in (Problem, Solution, Agent, Model, Dataset, Experiment, FailureMode, Tool)
}

# -- edge attributes ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """``attempted_by`` / ``solved_by``: one episode of a problem."""

    metrics: Mapping[str, Any] = field(default_factory=dict)
    """The env's metrics at the end (``format_ok`` ... ``success``)."""
    reward: float | None = None
    """Total reward."""
    turns: int | None = None
    """Env steps."""
    seconds: float | None = None
    """Wall time of the episode."""
    agent: str = ""
    """The agent's id (on ``solved_by`` edges to a solution)."""
    run: str = ""
    """The benchmark run (suite and configuration) or experiment it belongs to."""


@dataclass(frozen=True, slots=True)
class Derivation:
    """``derived_from``: where a node came from (its parent, in genealogy terms)."""

    relation: str = ""
    """How (``fine-tuned``, ``made in``, ``parent data``, ``mutation``...)."""
    generation: int | None = None
    """The child's generation, for evolutionary search."""


@dataclass(frozen=True, slots=True)
class Training:
    """``trained_on``: a model (or experiment) learnt from a dataset."""

    algorithm: str = ""
    """The algorithm."""
    steps: int | None = None
    """Optimizer steps."""
    experiment: str = ""
    """The experiment's id."""


@dataclass(frozen=True, slots=True)
class Evaluation:
    """``evaluated_on``: held-out scores."""

    metrics: Mapping[str, Any] = field(default_factory=dict)
    """The scores (success, tool accuracy, mean reward...)."""
    phase: Literal["", "before", "after"] = ""
    """Before or after the experiment's training."""
    env_id: str = ""
    """The held-out env."""
    difficulty: int | None = None
    """Its difficulty."""
    episodes: int | None = None
    """Held-out episodes."""
    first_seed: int | None = None
    """The first held-out seed."""


@dataclass(frozen=True, slots=True)
class Failure:
    """``fails_with``: an attempt that failed, and how."""

    agent: str = ""
    """The agent's id."""
    run: str = ""
    """The benchmark run or experiment."""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    """The env's metrics at the end."""
    error: str = ""
    """The exception, for an episode that raised."""


@dataclass(frozen=True, slots=True)
class Use:
    """``uses``: a problem offers a tool, a solution or an agent calls it."""

    calls: int | None = None
    """How many times (when counted)."""


#: Attribute record and the (source kinds, target kinds) of every edge kind.
EDGE_TYPES: Mapping[str, tuple[type[Any], frozenset[str], frozenset[str]]] = {
    "solved_by": (Attempt, frozenset({"problem"}), frozenset({"solution", "agent", "model"})),
    "attempted_by": (Attempt, frozenset({"problem"}), frozenset({"agent", "model"})),
    "derived_from": (
        Derivation,
        frozenset({"problem", "solution", "agent", "model", "dataset", "experiment"}),
        frozenset({"problem", "solution", "agent", "model", "dataset", "experiment"}),
    ),
    "trained_on": (Training, frozenset({"model", "experiment"}), frozenset({"dataset"})),
    "evaluated_on": (
        Evaluation,
        frozenset({"model", "agent"}),
        frozenset({"experiment", "dataset", "problem"}),
    ),
    "fails_with": (
        Failure,
        frozenset({"problem", "solution", "agent", "model"}),
        frozenset({"failure_mode"}),
    ),
    "uses": (Use, frozenset({"problem", "solution", "agent"}), frozenset({"tool"})),
}
NODE_KINDS: tuple[str, ...] = tuple(NODE_TYPES)
EDGE_KINDS: tuple[str, ...] = tuple(EDGE_TYPES)


# -- validation ---------------------------------------------------------------------------------


def check_kind(kind: str, known: tuple[str, ...], what: str) -> None:
    """Raise :class:`ConfigError` for a ``kind`` not in ``known`` (with a "did you mean")."""
    if kind not in known:
        raise ConfigError(
            f"unknown {what} kind {kind!r}{suggest(str(kind), known)}; kinds: {', '.join(known)}"
        )


_DEFAULTS: dict[type[Any], tuple[tuple[str, Any], ...]] = {}


def _defaults(cls: type[Any]) -> tuple[tuple[str, Any], ...]:
    """Each field of a record class and its default (``MISSING`` for a required one), read
    once per class."""
    found = _DEFAULTS.get(cls)
    if found is None:
        found = _DEFAULTS[cls] = tuple(
            (
                f.name,
                f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default,
            )
            for f in dataclasses.fields(cls)
        )
    return found


def _attrs(record: Any) -> dict[str, Any]:
    """A record's attributes as JSON-ready data, defaults left out."""
    out: dict[str, Any] = {}
    for name, default in _defaults(type(record)):
        value = getattr(record, name)
        if value is None or value == default:
            continue
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[name] = value
    return out


def _check_json(value: Any, where: str) -> None:
    """JSON scalars, lists and string-keyed mappings of them, finite numbers only."""
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {value!r} is not a finite number")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: key {key!r} is not a string")
            _check_json(item, f"{where}.{key}")
        return
    raise ConfigError(f"{where}: {type(value).__name__} {value!r} is not JSON data")


def record_attrs(record: Any, where: str = "") -> dict[str, Any]:
    """The attributes of a node or edge record, checked to be JSON data (an error names
    ``where``: the node or edge kind)."""
    attrs = _attrs(record)
    _check_json(attrs, where or type(record).__name__)
    return attrs


def check_node(kind: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` validated as a node of ``kind``; returns them normalised (defaults dropped).

    Raises:
        ConfigError: for an unknown kind or attribute (naming it), a wrong type, a missing
            required attribute or a value that is not JSON data.
    """
    check_kind(kind, NODE_KINDS, "node")
    return record_attrs(build(NODE_TYPES[kind], attrs, kind), kind)


def check_edge(kind: str, attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``attrs`` validated as the attributes of an edge of ``kind``; returns them normalised.

    Raises:
        ConfigError: as :func:`check_node`.
    """
    check_kind(kind, EDGE_KINDS, "edge")
    return record_attrs(build(EDGE_TYPES[kind][0], attrs or {}, kind), kind)


def check_endpoints(
    kind: str, source_kind: str, target_kind: str, source: str, target: str
) -> None:
    """Raise :class:`ConfigError` unless an edge of ``kind`` may join these node kinds."""
    _, sources, targets = EDGE_TYPES[kind]
    if source_kind not in sources or target_kind not in targets:
        raise ConfigError(
            f"a {kind} edge joins {'/'.join(sorted(sources))} -> {'/'.join(sorted(targets))}, "
            f"not {source_kind} -> {target_kind} ({source} -> {target})"
        )


def kind_of(node_id: str) -> str:
    """The kind named by a node id's prefix.

    Raises:
        ConfigError: when the id is not ``<kind>:<identity>`` with a known kind.
    """
    kind, sep, rest = node_id.partition(":")
    if not sep or not rest:
        raise ConfigError(f"node id {node_id!r} is not '<kind>:<identity>'")
    check_kind(kind, NODE_KINDS, "node")
    return kind


def edge_id(source: str, kind: str, target: str, key: str = "") -> str:
    """The id of an edge: one per (source, kind, target, key); writing it again updates it."""
    return content_id("edge", source, kind, target, key)
