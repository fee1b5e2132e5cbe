"""Benchmark suites: fixed, versioned grids of (env, difficulty) cells, seeds and episode counts.

Suites live in ``registry.yaml`` under ``suites:``, beside the envs they name, and are loaded
through the same strict loader: unknown keys, duplicate suite ids, unknown env ids, difficulties
an env does not declare, and fewer than three seeds are :class:`RegistryError`\\ s that name the
suite.

A suite is immutable once published: its :attr:`SuiteSpec.hash` covers its own fields and the
registry entries of its envs, every result file records it, and ``benchmarks/suites.lock.json``
pins the hash of every published suite (a test fails when a suite changes in place). Changing a
suite means adding ``name-v(N+1)``.

Each suite seed is one *run*: in every cell it plays ``episodes_per_cell / len(seeds)``
episodes. Episode ``i`` of seed ``s`` in cell ``(env, d)`` uses the env seed
:func:`episode_env_seed`, derived with :class:`numpy.random.SeedSequence`, so tasks are
independent across seeds, cells and indices, and every agent meets the same tasks (which is
what makes paired comparisons possible).

A suite with ``trials: n`` (at least :data:`MIN_TRIALS`) plays each of its tasks ``n`` times:
a run's ``episodes_per_cell / len(seeds)`` episodes per cell are ``/ n`` tasks times ``n``
trials. The trials of a task share its env seed (the same task) and reset the policy with
their own seed (:func:`episode_policy_seed`), so a sampling agent gets independent attempts:
what tau-bench's pass^k measures (every one of k attempts at a task succeeds). ``trials`` is
left out of the definition when it is 1, so the suites without it keep their hashes.

**Arena suites** (``kind: arena``, :class:`ArenaSuiteSpec`) are the multi-agent kind: a round
robin of entrants in a two-player PettingZoo AEC env (``LLMTrainer/KuhnPoker-v0``), played by
:mod:`llm_trainer.benchmarks.arena` and rated by :mod:`llm_trainer.benchmarks.ratings`. Each
suite seed is one *round*, in which every pair of entrants plays one *match*: the same
``episodes_per_seating`` deals (env seeds from :meth:`ArenaSuiteSpec.episode_seeds`) once in
each seat assignment (duplicate format: the luck of the cards and the seat advantage cancel
within a match). They live in the same ``suites:`` list and id namespace, under the same rules
(strict keys, at least three seeds, an immutable hash pinned in ``suites.lock.json``, under
``arena_suites``), but :func:`suites` and :func:`suite_spec` hold the single-agent grids only;
:func:`arena_suites` and :func:`arena_suite_spec` hold the arenas.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llm_trainer.core.errors import RegistryError, suggest
from llm_trainer.core.records import FrozenDict
from llm_trainer.core.seeding import derive_seed
from llm_trainer.envs.registration import (
    REGISTRY_PATH,
    EnvSpec,
    _check_keys,
    load_strict_yaml,
    parse_registry,
)

#: Suite ids are ``name-vN``; bump N whenever the suite (or an env it names) changes.
_SUITE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*-v\d+$")
MIN_SEEDS = 3
#: Fewest trials per task of a suite that repeats its tasks (tau2-bench reports pass^k over 4).
MIN_TRIALS = 4
LOCK_PATH = Path(__file__).resolve().parent / "suites.lock.json"


@dataclass(frozen=True, slots=True)
class Cell:
    """One (env, difficulty) cell of a suite."""

    env_id: str
    difficulty: int

    @property
    def label(self) -> str:
        """``LLMTrainer/Calculator-v0@2``: the key used in summaries and result files."""
        return f"{self.env_id}@{self.difficulty}"


@dataclass(frozen=True, slots=True, order=True)
class EpisodeKey:
    """Identifies one episode of a suite; two agents' episodes with the same key saw the same
    task (the pairing unit of :func:`llm_trainer.benchmarks.stats.paired_compare`)."""

    env_id: str
    difficulty: int
    seed: int
    """The suite seed (the run) this episode belongs to."""
    index: int
    """The episode's task index within its (cell, seed)."""
    trial: int | None = None
    """Which attempt at the task, from 0, in a suite with ``trials``; ``None`` otherwise."""

    @property
    def cell(self) -> Cell:
        return Cell(self.env_id, self.difficulty)

    @property
    def task(self) -> tuple[str, int, int, int]:
        """The task this episode plays (its trials share it)."""
        return (self.env_id, self.difficulty, self.seed, self.index)


@dataclass(frozen=True, slots=True)
class SuiteSpec:
    """One suite of ``registry.yaml``.

    >>> suite = suite_spec("tooluse-smoke-v0")
    >>> len(suite.cells()), len(suite.episode_keys()), suite.episodes_per_seed
    (12, 72, 2)
    """

    id: str
    """``name-vN``."""
    description: str
    """One line, shown by the leaderboard."""
    envs: tuple[str, ...]
    """Env ids (each must be registered)."""
    difficulties: tuple[int, ...]
    """Difficulties played in every env (each env must declare them)."""
    seeds: tuple[int, ...]
    """Suite seeds: one run each, at least three."""
    episodes_per_cell: int
    """Episodes per (env, difficulty) cell, split evenly across the seeds (trials included)."""
    env_specs: Mapping[str, Mapping[str, Any]] = FrozenDict({})
    """What the suite's hash covers of each env's registry entry (entry point, kwargs, time
    limit); filled in by the loader."""
    trials: int = 1
    """Attempts at each task (1: every episode is a task of its own)."""

    @property
    def episodes_per_seed(self) -> int:
        """Episodes per cell and seed (trials included)."""
        return self.episodes_per_cell // len(self.seeds)

    @property
    def tasks_per_seed(self) -> int:
        """Distinct tasks per cell and seed."""
        return self.episodes_per_seed // self.trials

    def cells(self) -> list[Cell]:
        """Every (env, difficulty) cell, envs in suite order, then difficulties."""
        return [Cell(e, d) for e in self.envs for d in self.difficulties]

    def episode_keys(self) -> list[EpisodeKey]:
        """Every episode of the suite, in canonical order (cell, seed, index, trial)."""
        trials: list[int | None] = list(range(self.trials)) if self.trials > 1 else [None]
        return [
            EpisodeKey(cell.env_id, cell.difficulty, seed, index, trial)
            for cell in self.cells()
            for seed in self.seeds
            for index in range(self.tasks_per_seed)
            for trial in trials
        ]

    def definition(self) -> dict[str, Any]:
        """The suite as plain JSON-ready data (what result files store and the hash covers)."""
        definition = {
            "id": self.id,
            "description": self.description,
            "envs": list(self.envs),
            "difficulties": list(self.difficulties),
            "seeds": list(self.seeds),
            "episodes_per_cell": self.episodes_per_cell,
            "env_specs": {k: dict(v) for k, v in self.env_specs.items()},
            "seed_derivation": SEED_DERIVATION,
        }
        if self.trials != 1:  # absent when 1: the suites published before trials keep their hash
            definition["trials"] = self.trials
        return definition

    @property
    def hash(self) -> str:
        """SHA-256 (first 16 hex digits) of :meth:`definition`, canonically serialised."""
        return content_hash(self.definition())

    @classmethod
    def from_definition(cls, data: Mapping[str, Any], where: str = "suite") -> SuiteSpec:
        """Rebuild a suite from :meth:`definition` (as stored in a result file).

        Raises:
            RegistryError: if ``data`` is not a suite definition.
        """
        try:
            if data["seed_derivation"] != SEED_DERIVATION:
                raise RegistryError(
                    f"{where}: seed derivation {data['seed_derivation']!r} is not supported "
                    f"(this version uses {SEED_DERIVATION!r})"
                )
            return cls(
                id=str(data["id"]),
                description=str(data["description"]),
                envs=tuple(str(e) for e in data["envs"]),
                difficulties=tuple(int(d) for d in data["difficulties"]),
                seeds=tuple(int(s) for s in data["seeds"]),
                episodes_per_cell=int(data["episodes_per_cell"]),
                env_specs=FrozenDict(
                    {str(k): FrozenDict(dict(v)) for k, v in data["env_specs"].items()}
                ),
                trials=int(data.get("trials", 1)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RegistryError(f"{where}: malformed suite definition ({exc!r})") from None


#: Names the rule of :func:`episode_env_seed`; stored in every definition so a change of the
#: rule can never be mistaken for the same suite.
SEED_DERIVATION = "seedsequence-v1"


@functools.lru_cache(maxsize=1 << 16)
def episode_env_seed(key: EpisodeKey) -> int:
    """The env seed of an episode: independent streams for every (seed, env, difficulty, index).

    >>> k = EpisodeKey("LLMTrainer/Calculator-v0", 1, 0, 0)
    >>> episode_env_seed(k) == episode_env_seed(k), 0 <= episode_env_seed(k) < 2**32
    (True, True)
    """
    # the env id enters as its CRC-32 (what "seedsequence-v1" names); the trial does not
    # enter: the trials of a task play the same task
    return derive_seed(key.seed, key.env_id, key.difficulty, key.index, bits=32)


def episode_policy_seed(key: EpisodeKey) -> int:
    """The seed the policy is reset with: the env seed for the first trial (every suite
    without trials), an independent one for each later trial.

    >>> k = EpisodeKey("LLMTrainer/Calculator-v0", 1, 0, 0)
    >>> episode_policy_seed(k) == episode_env_seed(k)
    True
    >>> again = EpisodeKey("LLMTrainer/Calculator-v0", 1, 0, 0, trial=1)
    >>> episode_env_seed(again) == episode_env_seed(k) != episode_policy_seed(again)
    True
    """
    env_seed = episode_env_seed(key)
    return env_seed if not key.trial else derive_seed(env_seed, "trial", key.trial, bits=32)


#: Names the rule of :meth:`ArenaSuiteSpec.episode_seeds` (stored in every arena definition).
ARENA_SEED_DERIVATION = "arena-seedsequence-v1"


@dataclass(frozen=True, slots=True)
class ArenaSuiteSpec:
    """One arena suite (``kind: arena``) of ``registry.yaml``: a round robin in a two-player
    multi-agent env.

    >>> arena = arena_suite_spec("kuhn-arena-v0")
    >>> arena.env, len(arena.seeds), arena.episodes_per_match
    ('LLMTrainer/KuhnPoker-v0', 20, 100)
    >>> arena.episode_seeds(0) == arena.episode_seeds(0) != arena.episode_seeds(1)
    True
    """

    id: str
    """``name-vN``."""
    description: str
    """One line, shown by the leaderboard."""
    env: str
    """A registered two-player PettingZoo AEC env id."""
    seeds: tuple[int, ...]
    """One round each (at least three): every pair of entrants plays one match per round."""
    episodes_per_seating: int
    """Episodes (deals) of a match in each seat assignment; a match plays them twice, with the
    seats swapped, so :attr:`episodes_per_match` is twice this."""
    score_key: str | None = None
    """The key of each agent's final ``info`` that holds its game result (``chips`` in Kuhn
    poker: the zero-sum chips, without invalid-action penalties); ``None``: the agent's
    episode return."""
    kind: Literal["arena"] = "arena"
    """Written ``kind: arena`` in the registry (grid suites leave it out)."""
    env_spec: Mapping[str, Any] = FrozenDict({})
    """What the hash covers of the env's registry entry (entry point, kwargs); filled in by
    the loader."""

    @property
    def episodes_per_match(self) -> int:
        """Episodes of one match: each deal played from both seats."""
        return 2 * self.episodes_per_seating

    def episode_seeds(self, seed: int) -> list[int]:
        """The env seeds of the deals of round ``seed`` (the same for every pairing, and for
        both seat assignments of a match)."""
        return [
            derive_seed(seed, "arena", self.env, index, bits=32)
            for index in range(self.episodes_per_seating)
        ]

    def definition(self) -> dict[str, Any]:
        """The suite as plain JSON-ready data (what result files store and the hash covers)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "description": self.description,
            "env": self.env,
            "seeds": list(self.seeds),
            "episodes_per_seating": self.episodes_per_seating,
            "score_key": self.score_key,
            "env_spec": dict(self.env_spec),
            "seed_derivation": ARENA_SEED_DERIVATION,
        }

    @property
    def hash(self) -> str:
        """SHA-256 (first 16 hex digits) of :meth:`definition`, canonically serialised."""
        return content_hash(self.definition())

    @classmethod
    def from_definition(cls, data: Mapping[str, Any], where: str = "suite") -> ArenaSuiteSpec:
        """Rebuild an arena suite from :meth:`definition` (as stored in a result file).

        Raises:
            RegistryError: if ``data`` is not an arena suite definition.
        """
        try:
            if data["kind"] != "arena":
                raise RegistryError(f"{where}: not an arena suite (kind {data['kind']!r})")
            if data["seed_derivation"] != ARENA_SEED_DERIVATION:
                raise RegistryError(
                    f"{where}: seed derivation {data['seed_derivation']!r} is not supported "
                    f"(this version uses {ARENA_SEED_DERIVATION!r})"
                )
            score_key = data["score_key"]
            return cls(
                id=str(data["id"]),
                description=str(data["description"]),
                env=str(data["env"]),
                seeds=tuple(int(s) for s in data["seeds"]),
                episodes_per_seating=int(data["episodes_per_seating"]),
                score_key=None if score_key is None else str(score_key),
                env_spec=FrozenDict(dict(data["env_spec"])),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RegistryError(f"{where}: malformed arena suite definition ({exc!r})") from None


def content_hash(data: Any) -> str:
    """SHA-256 (first 16 hex digits) of ``data`` as canonical JSON (sorted keys)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_suites(
    text: str, envs: Mapping[str, EnvSpec] | None = None, source: str = "registry.yaml"
) -> dict[str, SuiteSpec]:
    """Parse the ``suites:`` list of registry YAML into ``{id: SuiteSpec}``.

    Args:
        text: The whole registry YAML.
        envs: The registered env specs to check env ids against; parsed from ``text`` when
            omitted.
        source: Named in error messages.

    Raises:
        RegistryError: naming the suite, on any problem (arena suites included).
    """
    return _parse_all(text, envs, source)[0]


def parse_arena_suites(
    text: str, envs: Mapping[str, EnvSpec] | None = None, source: str = "registry.yaml"
) -> dict[str, ArenaSuiteSpec]:
    """Parse the arena suites (``kind: arena``) of the ``suites:`` list into
    ``{id: ArenaSuiteSpec}``; arguments and errors as in :func:`parse_suites`."""
    return _parse_all(text, envs, source)[1]


def _parse_all(
    text: str, envs: Mapping[str, EnvSpec] | None, source: str
) -> tuple[dict[str, SuiteSpec], dict[str, ArenaSuiteSpec]]:
    """Every suite of the ``suites:`` list: the grids and the arenas (one id namespace)."""
    data = load_strict_yaml(text, source)
    if envs is None:
        envs = parse_registry(text, source)
    entries = data.get("suites", []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise RegistryError(f"{source}: 'suites' must be a list")
    suites: dict[str, SuiteSpec] = {}
    arenas: dict[str, ArenaSuiteSpec] = {}
    for index, entry in enumerate(entries):
        where = f"{source}: suites[{index}]"
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind is not None and kind != "arena":
            raise RegistryError(
                f"{where}: 'kind' must be 'arena' (or left out, for a grid of env x difficulty "
                f"cells), got {kind!r}"
            )
        suite = _parse_arena(entry, envs, where) if kind else _parse_suite(entry, envs, where)
        if suite.id in suites or suite.id in arenas:
            raise RegistryError(f"{source}: duplicate suite id {suite.id!r} (suites[{index}])")
        if isinstance(suite, ArenaSuiteSpec):
            arenas[suite.id] = suite
        else:
            suites[suite.id] = suite
    return suites, arenas


_REQUIRED = ("id", "description", "envs", "difficulties", "seeds", "episodes_per_cell")


def _suite_id(entry: Any, where: str) -> str:
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: each suite must be a mapping, got {type(entry).__name__}")
    suite_id = entry.get("id")
    if not isinstance(suite_id, str) or not _SUITE_ID.match(suite_id):
        raise RegistryError(
            f"{where}: suite 'id' must look like 'name-v0' (lowercase), got {suite_id!r}"
        )
    return suite_id


def _check_common(values: dict[str, Any], required: tuple[str, ...], where: str) -> list[int]:
    """Check the required keys and the description; return the checked seeds."""
    for key in required:
        if key not in values:
            raise RegistryError(f"{where}: missing {key!r}")
    if not isinstance(values["description"], str) or not values["description"].strip():
        raise RegistryError(f"{where}: 'description' must be a non-empty string")
    seeds = _list_of(values["seeds"], int, "seeds", where)
    if len(set(seeds)) != len(seeds):
        raise RegistryError(f"{where}: 'seeds' has duplicates: {seeds}")
    if len(seeds) < MIN_SEEDS:
        raise RegistryError(
            f"{where}: needs at least {MIN_SEEDS} seeds per cell (seed-to-seed variation is part "
            f"of every result), got {len(seeds)}"
        )
    return seeds


def _parse_suite(entry: Any, envs: Mapping[str, EnvSpec], where: str) -> SuiteSpec:
    suite_id = _suite_id(entry, where)
    where = f"{where} (suite {suite_id})"
    values = _check_keys(entry, SuiteSpec, where)
    if "env_specs" in values:
        raise RegistryError(f"{where}: 'env_specs' is derived from the envs, not written")
    seeds = _check_common(values, _REQUIRED, where)
    env_ids = _list_of(values["envs"], str, "envs", where)
    difficulties = _list_of(values["difficulties"], int, "difficulties", where)
    for name, items in (("envs", env_ids), ("difficulties", difficulties)):
        if len(set(items)) != len(items):
            raise RegistryError(f"{where}: {name!r} has duplicates: {items}")
    episodes = values["episodes_per_cell"]
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise RegistryError(f"{where}: 'episodes_per_cell' must be a positive integer")
    if episodes % len(seeds):
        raise RegistryError(
            f"{where}: 'episodes_per_cell' ({episodes}) must be a multiple of the number of "
            f"seeds ({len(seeds)}): every seed plays the same number of episodes per cell"
        )
    trials = values.get("trials", 1)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise RegistryError(f"{where}: 'trials' must be a positive integer, got {trials!r}")
    if 1 < trials < MIN_TRIALS:
        raise RegistryError(
            f"{where}: 'trials' must be 1 (no repeats) or at least {MIN_TRIALS} (pass^k over "
            f"fewer trials per task says little), got {trials}"
        )
    if episodes % (len(seeds) * trials):
        raise RegistryError(
            f"{where}: 'episodes_per_cell' ({episodes}) must be a multiple of seeds x trials "
            f"({len(seeds)} x {trials}): every seed plays whole tasks, each {trials} times"
        )
    env_specs: dict[str, FrozenDict] = {}
    for env_id in env_ids:
        if env_id not in envs:
            raise RegistryError(f"{where}: unknown env id {env_id!r}{suggest(env_id, list(envs))}")
        env = envs[env_id]
        if env.capabilities.api != "gymnasium":
            raise RegistryError(f"{where}: {env_id!r} is a {env.capabilities.api} env")
        missing = [d for d in difficulties if d not in env.capabilities.difficulties]
        if missing:
            raise RegistryError(
                f"{where}: {env_id!r} does not declare difficulties {missing} (its capabilities "
                f"list {list(env.capabilities.difficulties)})"
            )
        env_specs[env_id] = FrozenDict(
            {
                "entry_point": env.entry_point,
                "kwargs": dict(env.kwargs),
                "max_episode_steps": env.max_episode_steps,
            }
        )
    return SuiteSpec(
        id=suite_id,
        description=values["description"].strip(),
        envs=tuple(env_ids),
        difficulties=tuple(difficulties),
        seeds=tuple(seeds),
        episodes_per_cell=episodes,
        env_specs=FrozenDict(env_specs),
        trials=trials,
    )


_ARENA_REQUIRED = ("id", "description", "env", "seeds", "episodes_per_seating")


def _parse_arena(entry: Any, envs: Mapping[str, EnvSpec], where: str) -> ArenaSuiteSpec:
    suite_id = _suite_id(entry, where)
    where = f"{where} (suite {suite_id})"
    values = _check_keys(entry, ArenaSuiteSpec, where)
    if "env_spec" in values:
        raise RegistryError(f"{where}: 'env_spec' is derived from the env, not written")
    seeds = _check_common(values, _ARENA_REQUIRED, where)
    env_id = values["env"]
    if not isinstance(env_id, str) or env_id not in envs:
        raise RegistryError(f"{where}: unknown env id {env_id!r}{suggest(str(env_id), list(envs))}")
    env = envs[env_id]
    if env.capabilities.api != "pettingzoo-aec":
        raise RegistryError(
            f"{where}: an arena plays a two-player pettingzoo-aec env; {env_id!r} is a "
            f"{env.capabilities.api} env"
        )
    episodes = values["episodes_per_seating"]
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise RegistryError(f"{where}: 'episodes_per_seating' must be a positive integer")
    score_key = values.get("score_key")
    if score_key is not None and (not isinstance(score_key, str) or not score_key.strip()):
        raise RegistryError(f"{where}: 'score_key' must be an info key (a non-empty string)")
    return ArenaSuiteSpec(
        id=suite_id,
        description=values["description"].strip(),
        env=env_id,
        seeds=tuple(seeds),
        episodes_per_seating=episodes,
        score_key=score_key,
        env_spec=FrozenDict({"entry_point": env.entry_point, "kwargs": dict(env.kwargs)}),
    )


def _list_of(raw: Any, kind: type[Any], name: str, where: str) -> list[Any]:
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(x, kind) and not isinstance(x, bool) for x in raw)
    ):
        raise RegistryError(f"{where}: {name!r} must be a non-empty list of {kind.__name__}")
    return raw


@functools.cache
def suites() -> Mapping[str, SuiteSpec]:
    """The suites of ``registry.yaml``, by id (read once per process)."""
    from llm_trainer.envs.registration import registry

    text = REGISTRY_PATH.read_text(encoding="utf-8")
    return FrozenDict(parse_suites(text, registry(), str(REGISTRY_PATH)))


def parse_suite(entry: Mapping[str, Any], where: str = "suite") -> SuiteSpec:
    """One suite written like an entry of registry.yaml's ``suites:`` (an inline benchmark,
    e.g. a cycle's), checked against the registered envs like the registry's own.

    Raises:
        RegistryError: naming ``where`` and the field, on any problem.
    """
    from llm_trainer.envs.registration import registry

    return _parse_suite(entry, registry(), where)


def suite_spec(suite_id: str) -> SuiteSpec:
    """The suite ``suite_id``.

    Raises:
        RegistryError: for an unknown id, with a "did you mean" and the known ids, or an arena
            suite (played by ``llm-trainer arena``).
    """
    known = suites()
    if suite_id in arena_suites():
        raise RegistryError(
            f"{suite_id!r} is an arena suite (a round robin of two-player matches): run it with "
            "`llm-trainer arena`, not `llm-trainer bench`"
        )
    if suite_id not in known:
        raise RegistryError(
            f"unknown suite {suite_id!r}{suggest(suite_id, list(known))}; "
            f"known suites: {', '.join(known)}"
        )
    return known[suite_id]


@functools.cache
def arena_suites() -> Mapping[str, ArenaSuiteSpec]:
    """The arena suites of ``registry.yaml``, by id (read once per process)."""
    from llm_trainer.envs.registration import registry

    text = REGISTRY_PATH.read_text(encoding="utf-8")
    return FrozenDict(parse_arena_suites(text, registry(), str(REGISTRY_PATH)))


def arena_suite_spec(suite_id: str) -> ArenaSuiteSpec:
    """The arena suite ``suite_id``.

    Raises:
        RegistryError: for an unknown id, with a "did you mean" and the known arena ids, or a
            grid suite (played by ``llm-trainer bench``).
    """
    known = arena_suites()
    if suite_id in suites():
        raise RegistryError(
            f"{suite_id!r} is a single-agent suite: run it with `llm-trainer bench`; arena "
            f"suites: {', '.join(known)}"
        )
    if suite_id not in known:
        raise RegistryError(
            f"unknown arena suite {suite_id!r}{suggest(suite_id, list(known))}; "
            f"known arena suites: {', '.join(known)}"
        )
    return known[suite_id]


def locked_hashes() -> dict[str, str]:
    """The published grid suites' hashes, from ``benchmarks/suites.lock.json``."""
    data = json.loads(LOCK_PATH.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data["suites"].items()}


def locked_arena_hashes() -> dict[str, str]:
    """The published arena suites' hashes (``arena_suites`` in ``suites.lock.json``)."""
    data = json.loads(LOCK_PATH.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.get("arena_suites", {}).items()}
