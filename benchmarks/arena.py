"""The arena: round-robin matches between agents in a two-player game, rated with intervals.

``run_arena(ArenaConfig("kuhn-arena-v0", ("kuhn:equilibrium", "kuhn:always_bet", "random")))``
plays an arena suite (:class:`~llm_trainer.benchmarks.suites.ArenaSuiteSpec`, ``kind: arena``
in ``registry.yaml``) and writes one result file; ``llm-trainer arena`` is the command and
``llm-trainer leaderboard`` shows its board beside the single-agent ones.

* **Entrants** are agent specs, as ``llm-trainer bench --agent`` takes them
  (:func:`~llm_trainer.agents.factory.make_agent`): ``random``, ``python:module:factory``,
  ``transformers:DIR``, ``vllm:DIR``, ``openai:URL#model``, a saved agent directory, and the
  scripted Kuhn poker players ``kuhn:equilibrium``, ``kuhn:always_bet``, ``kuhn:random``;
  ``NAME=SPEC`` names one on the board (by default the spec, paths shortened). Every entrant
  is built before the first match, so a bad spec fails at once, in one line.
* **Schedule**: each suite seed is a round; in each round every pair of entrants (in entrant
  order) plays one **match**: the round's ``episodes_per_seating`` deals (env seeds
  :meth:`~llm_trainer.benchmarks.suites.ArenaSuiteSpec.episode_seeds`, the same for every
  pair) with the first entrant as ``player_0``, then the same deals with the seats swapped
  (duplicate format: both players hold each hand once, so the luck of the cards and the seat
  advantage cancel within a match). Episodes are played through the
  :class:`~llm_trainer.agents.coordinator.MultiAgentCoordinator` (lockstep envs, one batched
  call per policy and round of actions), which resets every episode's env and each seat's
  policy from the episode's seed. A policy without per-slot state (its ``reset`` takes no
  ``slot``: the scripted players) gets one instance per coordinator slot, so every episode
  depends on its seed only: the result is the same for any ``num_envs``.
* **Scoring**: an episode scores each player its final ``info[score_key]`` (``chips`` in Kuhn
  poker: zero-sum, without the invalid-action penalty) or, without a ``score_key``, its
  return. A match is won by the player with the higher total over its episodes (equal totals:
  a draw). A match in which an episode failed because of a player's policy is lost by that
  player (a draw when both failed, or the env did), and recorded with the first error.
* **Result file** (:mod:`llm_trainer.benchmarks.arena_results`, written atomically): the
  suite's definition and hash, the entrants (name, spec, fingerprint of their files), one
  record per match (:class:`~llm_trainer.benchmarks.arena_results.MatchRecord`), provenance,
  and the ratings summary (OpenSkill ratings with bootstrap 95% intervals, see
  :mod:`llm_trainer.benchmarks.ratings`, each entrant's record and score per episode, and the
  head-to-head table). A finished result of the same configuration (suite, entrants, their
  files) is reused; another one at the same path needs ``fresh``.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llm_trainer.agents.coordinator import MultiAgentEpisode, play_multiagent
from llm_trainer.agents.factory import make_agent, resolve_agent_spec
from llm_trainer.agents.policy import Policy, resets_slots
from llm_trainer.benchmarks.arena_results import (
    ArenaResult,
    Entrant,
    MatchRecord,
    arena_config_hash,
    arena_summary,
    check_complete,
    load_arena_result,
    schedule,
)
from llm_trainer.benchmarks.results import collect_provenance, write_json_atomic
from llm_trainer.benchmarks.runner import (
    DEFAULT_RESULTS_DIR,
    agent_fingerprint,
    default_agent_name,
    slug,
)
from llm_trainer.benchmarks.suites import ArenaSuiteSpec, arena_suite_spec
from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.registration import make_multiagent

#: ``NAME=SPEC``: an entrant with a name of its own.
_NAMED = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)=(?P<spec>.+)$")


def parse_entrant(text: str) -> Entrant:
    """``SPEC`` or ``NAME=SPEC`` as an :class:`Entrant` (the spec checked, nothing built).

    >>> parse_entrant("kuhn:equilibrium").name, parse_entrant("eq=kuhn:equilibrium").name
    ('kuhn:equilibrium', 'eq')

    Raises:
        ConfigError: for an unknown spec, naming the allowed ones.
    """
    match = _NAMED.match(text)
    name, spec = (match["name"], match["spec"]) if match else (None, text)
    resolve_agent_spec(spec)
    return Entrant(name or default_agent_name(spec), spec)


@dataclass(frozen=True, slots=True)
class ArenaConfig:
    """One ``llm-trainer arena`` run."""

    suite: str
    """Arena suite id from ``registry.yaml`` (``kuhn-arena-v0``)."""
    entrants: tuple[str, ...]
    """At least two agent specs (``NAME=SPEC`` to name one), in schedule order."""
    out: Path | None = None
    """Result file; defaults to ``results/<suite>/arena.json``."""
    fresh: bool = False
    """Replace a finished result of another configuration at ``out``."""
    num_envs: int = 16
    """Envs played in lockstep (the largest batch of one policy call); results do not depend
    on it."""
    agent_seed: int = 0
    """Seed passed to each entrant's constructor (episodes re-seed it)."""
    progress: bool | None = None
    """Show a progress bar on stderr (``None``: when stderr is a terminal)."""

    def __post_init__(self) -> None:
        if len(self.entrants) < 2:
            raise ConfigError(f"an arena needs at least two entrants, got {list(self.entrants)}")
        if (
            isinstance(self.num_envs, bool)
            or not isinstance(self.num_envs, int)
            or (self.num_envs < 1)
        ):
            raise ConfigError(f"num_envs must be a positive integer, got {self.num_envs!r}")
        names = [e.name for e in self.parsed_entrants()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(
                f"entrant names must be distinct, {duplicates} appear twice; name entrants "
                "with NAME=SPEC"
            )

    def parsed_entrants(self) -> list[Entrant]:
        """The entrants, specs checked (nothing built)."""
        return [parse_entrant(text) for text in self.entrants]

    def out_path(self) -> Path:
        return (
            Path(self.out)
            if self.out is not None
            else DEFAULT_RESULTS_DIR / slug(self.suite) / "arena.json"
        )


# -- playing -----------------------------------------------------------------------------------


class _PerSlot:
    """One instance of a policy per coordinator slot, for policies that keep one random
    stream for every env they play (their ``reset`` takes no ``slot``): each seat of each env
    then draws from its own stream, seeded by its episode, whatever the batch size."""

    def __init__(self, build: Callable[[], Policy]) -> None:
        self._build = build
        self._slots: dict[int, Policy] = {}

    def reset(self, *, seed: int | None = None, slot: int = 0) -> None:
        if slot not in self._slots:
            self._slots[slot] = self._build()
        self._slots[slot].reset(seed=seed)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        return self._slots[int(info["slot"])].act(observation, info)

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        return [self.act(o, i) for o, i in zip(observations, infos, strict=True)]


def build_entrants(
    suite: ArenaSuiteSpec, entrants: Sequence[Entrant], agent_seed: int = 0
) -> tuple[tuple[str, str], dict[str, Policy]]:
    """The env's two agents (seat order) and each entrant's policy for the env, by name (every
    spec built now, so a bad one fails before any match).

    Raises:
        ConfigError: for an entrant that cannot be built, naming it, or an env that is not a
            two-player game.
    """
    from pettingzoo import AECEnv

    env = make_multiagent(suite.env)
    with contextlib.closing(env):
        if not isinstance(env, AECEnv):  # the suite's parser allows pettingzoo-aec envs only
            raise ConfigError(f"arena suite {suite.id}: {suite.env} is no PettingZoo AEC env")
        agents = [str(a) for a in env.possible_agents]
        if len(agents) != 2:
            raise ConfigError(
                f"arena suite {suite.id}: {suite.env} has agents {agents}; an arena plays "
                "two-player games"
            )
        policies: dict[str, Policy] = {}
        for entrant in entrants:
            spec = entrant.spec

            def build(spec: str = spec) -> Policy:
                return make_agent(spec, env, seed=agent_seed)

            try:
                policy = build()
            except ConfigError:
                raise
            except Exception as exc:  # e.g. a factory that rejects this env
                raise ConfigError(
                    f"entrant {entrant.name!r} ({spec}) cannot play {suite.env}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            policies[entrant.name] = policy if resets_slots(policy) else _PerSlot(build)
    return (agents[0], agents[1]), policies


def _episode_scores(
    suite: ArenaSuiteSpec, episode: MultiAgentEpisode, agents: Sequence[str]
) -> tuple[list[float], list[int], list[int], bool]:
    """Per seat: score, invalid (0/1), policy failure (0/1); and whether the env failed."""
    error = episode.error
    if error is not None:
        blamed = [int(error.startswith(f"{agent}'s policy:")) for agent in agents]
        return [0.0, 0.0], [0, 0], blamed, not any(blamed)
    scores = []
    for agent in agents:
        if suite.score_key is None:
            scores.append(float(episode.returns[agent]))
            continue
        info = episode.final_infos[agent]
        if suite.score_key not in info:
            raise ConfigError(
                f"arena suite {suite.id}: {suite.env} reports no {suite.score_key!r} in "
                f"{agent}'s final info (keys: {sorted(info)})"
            )
        scores.append(float(info[suite.score_key]))
    invalid = [int(not episode.final_infos[a].get("format_ok", False)) for a in agents]
    return scores, invalid, [0, 0], False


def _play_pair(
    suite: ArenaSuiteSpec,
    names: tuple[str, str],
    policies: Mapping[str, Policy],
    agents: Sequence[str],
    num_envs: int,
    on_episode: Callable[[MultiAgentEpisode], None],
) -> list[MatchRecord]:
    """Every match of one pair: each round's deals in both seat assignments."""
    per_round = suite.episodes_per_seating
    seeds = [s for seed in suite.seeds for s in suite.episode_seeds(seed)]
    halves = []
    for first, second in (names, names[::-1]):
        seating = {agents[0]: policies[first], agents[1]: policies[second]}
        halves.append(
            play_multiagent(suite.env, seating, seeds, num_envs=num_envs, on_episode=on_episode)
        )
    matches = []
    for r, seed in enumerate(suite.seeds):
        scores, first_seat = [0.0, 0.0], [0.0, 0.0]
        invalid, errors = [0, 0], [0, 0]
        env_errors, seconds, message = 0, 0.0, None
        for half, episodes in enumerate(halves):
            # player k of the pair sits in seat (k + half) % 2 in this half
            for episode in episodes[r * per_round : (r + 1) * per_round]:
                seat_scores, seat_invalid, seat_errors, env_failed = _episode_scores(
                    suite, episode, agents
                )
                for k in (0, 1):
                    seat = (k + half) % 2
                    scores[k] += seat_scores[seat]
                    if seat == 0:
                        first_seat[k] += seat_scores[seat]
                    invalid[k] += seat_invalid[seat]
                    errors[k] += seat_errors[seat]
                env_errors += env_failed
                seconds += episode.seconds
                message = message or episode.error
        matches.append(
            MatchRecord(
                round=seed,
                players=names,
                scores=(round(scores[0], 9), round(scores[1], 9)),
                first_seat=(round(first_seat[0], 9), round(first_seat[1], 9)),
                episodes=2 * per_round,
                invalid_episodes=(invalid[0], invalid[1]),
                errors=(errors[0], errors[1]),
                env_errors=env_errors,
                error=message,
                seconds=round(seconds, 6),
            )
        )
    return matches


@dataclass(frozen=True, slots=True)
class ArenaRun:
    """What :func:`run_arena` did."""

    result: ArenaResult
    path: Path
    reused: bool
    """A finished result of the same configuration existed and was returned as is."""
    wall_seconds: float


def run_arena(config: ArenaConfig, suite: ArenaSuiteSpec | None = None) -> ArenaRun:
    """Play the round robin of ``config`` (or reuse its finished result) and write the result
    file; see the module docstring.

    Args:
        config: The run.
        suite: The arena suite; by default ``arena_suite_spec(config.suite)`` (tests pass
            suites of their own).

    Raises:
        ConfigError: for a bad configuration or entrant, or a result of another configuration
            at the output path (without ``fresh``).
    """
    start = time.perf_counter()
    suite = suite or arena_suite_spec(config.suite)
    entrants = [
        Entrant(e.name, e.spec, agent_fingerprint(e.spec)) for e in config.parsed_entrants()
    ]
    chash = arena_config_hash(suite, entrants, config.agent_seed)
    out = config.out_path()
    if out.exists() and not config.fresh:
        existing = load_arena_result(out)
        if existing.config_hash != chash:
            raise ConfigError(
                f"{out} holds an arena result of another configuration (suite, entrants or "
                "their files differ); pass --fresh to overwrite it, or choose another --out"
            )
        return ArenaRun(existing, out, True, time.perf_counter() - start)
    agents, policies = build_entrants(suite, entrants, config.agent_seed)
    names = [e.name for e in entrants]
    pairs = list(itertools.combinations(names, 2))
    started_at = _now()
    total = len(pairs) * len(suite.seeds) * suite.episodes_per_match
    show = config.progress if config.progress is not None else Console(stderr=True).is_terminal
    by_pair: dict[tuple[str, str], list[MatchRecord]] = {}
    with _progress_bar(show) as bar:
        task = bar.add_task(f"{suite.id}: {len(names)} entrants", total=total)
        for a, b in pairs:
            by_pair[(a, b)] = _play_pair(
                suite, (a, b), policies, agents, config.num_envs, lambda _: bar.advance(task)
            )
    position = {seed: r for r, seed in enumerate(suite.seeds)}
    matches = tuple(by_pair[(a, b)][position[s]] for s, a, b in schedule(suite, names))
    draft = ArenaResult(suite, tuple(entrants), chash, matches)
    result = ArenaResult(
        suite,
        tuple(entrants),
        chash,
        matches,
        provenance=collect_provenance(
            suite,
            started_at=started_at,
            finished_at=_now(),
            num_envs=config.num_envs,
            agent_seed=config.agent_seed,
            wall_seconds=round(time.perf_counter() - start, 3),
        ),
        summary=arena_summary(draft),
    )
    check_complete(result, str(out))
    write_json_atomic(out, result.to_json())
    return ArenaRun(result, out, False, time.perf_counter() - start)


def _progress_bar(show: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("episodes"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


__all__ = [
    "ArenaConfig",
    "ArenaRun",
    "build_entrants",
    "parse_entrant",
    "run_arena",
]
