"""Arena result files: one record per match, provenance, ratings summary; schema version 1.

One JSON file per arena run (:mod:`llm_trainer.benchmarks.arena` plays it)::

    {
      "schema": "llm-trainer/arena-result",
      "schema_version": 1,
      "suite": {...the arena suite's definition...},
      "suite_hash": "…",
      "config_hash": "…",            # suite hash + entrants (name, spec, fingerprint) + seed
      "entrants": [{"name", "spec", "fingerprint"}, ...],
      "provenance": {"git_commit", "packages", "hardware", "seeds", "num_envs", ...},
      "matches": [                   # schedule order: round, then pairs in entrant order
        {"round", "players", "scores", "first_seat", "episodes", "invalid_episodes",
         "errors", "env_errors", "error", "seconds"}, ...],
      "summary": {...}               # arena_summary(); recomputable from "matches"
    }

Everything but ``seconds`` and ``provenance`` is a deterministic function of the suite and the
entrants. The leaderboard (:mod:`llm_trainer.benchmarks.leaderboard`) reads these files with
:func:`load_arena_result` and recomputes the ratings from the matches (:func:`standings`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_trainer.benchmarks.ratings import Game, PlayerRating, RatingConfig, rate
from llm_trainer.benchmarks.results import NotAResultError, read_result_json
from llm_trainer.benchmarks.suites import ArenaSuiteSpec, content_hash
from llm_trainer.core.errors import ConfigError, RegistryError

ARENA_SCHEMA = "llm-trainer/arena-result"
ARENA_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Entrant:
    """One player of an arena."""

    name: str
    """Its name on the board."""
    spec: str
    """The agent spec it is built from."""
    fingerprint: str | None = None
    """SHA-256 prefix of its files (:func:`~llm_trainer.benchmarks.runner.agent_fingerprint`)."""


@dataclass(frozen=True, slots=True)
class MatchRecord:
    """One match: two entrants, one round's deals played from both seats."""

    round: int
    """The suite seed (round) of the match."""
    players: tuple[str, str]
    """The entrants, in entrant order; the first is ``player_0`` in the first seating."""
    scores: tuple[float, float]
    """Each player's total score over the match's episodes."""
    first_seat: tuple[float, float]
    """Each player's score from the episodes it played as ``player_0``."""
    episodes: int
    invalid_episodes: tuple[int, int]
    """Episodes whose final info has ``format_ok`` false for that player (it wrote an invalid
    action at least once)."""
    errors: tuple[int, int]
    """Episodes that failed because of that player's policy."""
    env_errors: int = 0
    """Episodes that failed in the env."""
    error: str | None = None
    """The first failure's message."""
    seconds: float = 0.0
    """Wall time of the match's episodes (their share of lockstep batches)."""

    @property
    def outcome(self) -> float:
        """The first player's result: 1 a win, 0.5 a draw, 0 a loss (see the module
        docstring: a policy failure loses the match)."""
        if self.errors[0] or self.errors[1]:
            return 0.5 if self.errors[0] and self.errors[1] else float(self.errors[1] > 0)
        if self.env_errors:
            return 0.5
        margin = round(self.scores[0] - self.scores[1], 9)
        return 1.0 if margin > 0 else 0.0 if margin < 0 else 0.5

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "players": list(self.players),
            "scores": list(self.scores),
            "first_seat": list(self.first_seat),
            "episodes": self.episodes,
            "invalid_episodes": list(self.invalid_episodes),
            "errors": list(self.errors),
            "env_errors": self.env_errors,
            "error": self.error,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "match") -> MatchRecord:
        """Parse and check one record.

        Raises:
            ConfigError: naming ``where`` and the bad field.
        """
        try:
            if not isinstance(data, dict):
                raise TypeError("a match record must be an object")
            extra = data.keys() - _MATCH_FIELDS
            if extra:
                raise ValueError(f"unknown field(s) {sorted(extra)}")
            error = data["error"]
            if error is not None and not isinstance(error, str):
                raise TypeError(f"error must be a string or null, got {error!r}")
            return cls(
                round=_int(data["round"]),
                players=_pair(data["players"], str),
                scores=_pair(data["scores"], float),
                first_seat=_pair(data["first_seat"], float),
                episodes=_int(data["episodes"]),
                invalid_episodes=_pair(data["invalid_episodes"], int),
                errors=_pair(data["errors"], int),
                env_errors=_int(data["env_errors"]),
                error=error,
                seconds=float(data["seconds"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: malformed match record ({exc})") from None


_MATCH_FIELDS = frozenset(MatchRecord.__dataclass_fields__)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _pair(value: Any, kind: type[Any]) -> Any:
    if not isinstance(value, list) or len(value) != 2:
        raise TypeError(f"expected a pair, got {value!r}")
    if kind is float:
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
            raise TypeError(f"expected numbers, got {value!r}")
        return (float(value[0]), float(value[1]))
    if kind is int:
        return (_int(value[0]), _int(value[1]))
    if not all(isinstance(v, kind) for v in value):
        raise TypeError(f"expected {kind.__name__}s, got {value!r}")
    return (value[0], value[1])


@dataclass(frozen=True, slots=True)
class ArenaResult:
    """A complete round robin of an arena suite."""

    suite: ArenaSuiteSpec
    entrants: tuple[Entrant, ...]
    config_hash: str
    matches: tuple[MatchRecord, ...]
    """Every match, in schedule order (round, then pairs in entrant order)."""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    """:func:`arena_summary` (recomputable from the matches)."""

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entrants]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": ARENA_SCHEMA,
            "schema_version": ARENA_SCHEMA_VERSION,
            "suite": self.suite.definition(),
            "suite_hash": self.suite.hash,
            "config_hash": self.config_hash,
            "entrants": [
                {"name": e.name, "spec": e.spec, "fingerprint": e.fingerprint}
                for e in self.entrants
            ],
            "provenance": _plain(self.provenance),
            "matches": [m.to_json() for m in self.matches],
            "summary": _plain(self.summary),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def schedule(suite: ArenaSuiteSpec, names: Sequence[str]) -> list[tuple[int, str, str]]:
    """Every match of a round robin, in order: ``(round, first, second)`` for each round
    (suite seed), then each pair in entrant order.

    >>> from llm_trainer.benchmarks.suites import arena_suite_spec
    >>> schedule(arena_suite_spec("kuhn-arena-v0"), ["a", "b", "c"])[:4]
    [(0, 'a', 'b'), (0, 'a', 'c'), (0, 'b', 'c'), (1, 'a', 'b')]
    """
    return [(s, a, b) for s in suite.seeds for a, b in itertools.combinations(names, 2)]


def arena_config_hash(suite: ArenaSuiteSpec, entrants: Sequence[Entrant], agent_seed: int) -> str:
    """What identifies an arena run: reusing a result requires it to match."""
    return content_hash(
        {
            "schema_version": ARENA_SCHEMA_VERSION,
            "suite_hash": suite.hash,
            "entrants": [[e.name, e.spec, e.fingerprint] for e in entrants],
            "agent_seed": agent_seed,
        }
    )


def check_complete(result: ArenaResult, where: str) -> None:
    """Raise :class:`ConfigError` unless the matches are exactly the schedule's, each with the
    suite's number of episodes."""
    expected = schedule(result.suite, result.names)
    got = [(m.round, *m.players) for m in result.matches]
    if got != expected:
        raise ConfigError(
            f"{where}: the matches are not the round robin of suite {result.suite.id} for "
            f"entrants {result.names} in order ({len(got)} records, {len(expected)} expected)"
        )
    for m in result.matches:
        if m.episodes != result.suite.episodes_per_match:
            raise ConfigError(
                f"{where}: match {m.players} of round {m.round} has {m.episodes} episodes, "
                f"expected {result.suite.episodes_per_match}"
            )


# -- ratings summary ---------------------------------------------------------------------------


def games_of(names: Sequence[str], matches: Sequence[MatchRecord]) -> list[Game]:
    """The matches as rating games (player indices into ``names``), in order."""
    index = {name: i for i, name in enumerate(names)}
    return [Game(index[m.players[0]], index[m.players[1]], m.outcome) for m in matches]


@dataclass(frozen=True, slots=True)
class ArenaStanding:
    """An entrant's line on the arena board."""

    player: PlayerRating
    """Its rating with its interval, and its win/draw/loss record."""
    episodes: int
    score_per_episode: float
    """Mean game score per episode it played (chips per hand in Kuhn poker)."""
    invalid_episodes: int
    errors: int

    @property
    def name(self) -> str:
        return self.player.name


def standings(
    result: ArenaResult, config: RatingConfig | None = None, *, reuse: bool = False
) -> tuple[list[ArenaStanding], dict[str, dict[str, float]]]:
    """Every entrant's rating (with its bootstrap interval), record and score per episode, in
    entrant order, and the head-to-head table ``{row: {column: row's mean score per episode
    against column}}``.

    With ``reuse``, the intervals of the result's stored summary are taken when that summary
    was computed with ``config`` and its ratings equal the ratings refitted from the matches
    (one pass); otherwise (and without ``reuse``) every interval is bootstrapped again (each
    resample refits every match: about 3 s for 120 matches and 1,000 resamples).
    """
    config = config or RatingConfig()
    names = result.names
    games = games_of(names, result.matches)
    stored = _stored_ratings(result, config) if reuse else None
    ratings = rate(names, games, config, intervals=stored[1] if stored else None)
    if stored and any(abs(r.rating.mean - stored[0][r.name]) > 1e-9 for r in ratings):
        ratings = rate(names, games, config)  # the stored summary is not of these matches
    totals = dict.fromkeys(names, 0.0)
    episodes = dict.fromkeys(names, 0)
    invalid = dict.fromkeys(names, 0)
    errors = dict.fromkeys(names, 0)
    for m in result.matches:
        for k, me in enumerate(m.players):
            totals[me] += m.scores[k]
            episodes[me] += m.episodes
            invalid[me] += m.invalid_episodes[k]
            errors[me] += m.errors[k]
    rows = [
        ArenaStanding(
            r,
            episodes[r.name],
            totals[r.name] / episodes[r.name] if episodes[r.name] else 0.0,
            invalid[r.name],
            errors[r.name],
        )
        for r in ratings
    ]
    return rows, head_to_head(result)


def _stored_ratings(
    result: ArenaResult, config: RatingConfig
) -> tuple[dict[str, float], dict[str, tuple[float, float]]] | None:
    """The stored summary's ratings and intervals, when computed with ``config``."""
    summary = result.summary
    method = summary.get("ratings")
    entrants = summary.get("entrants")
    if not isinstance(method, Mapping) or not isinstance(entrants, Mapping):
        return None
    settings = (method.get("n_resamples"), method.get("seed"), method.get("confidence"))
    if settings != (config.n_resamples, config.seed, config.confidence):
        return None
    try:
        points = {n: float(entrants[n]["rating"]) for n in result.names}
        bounds = {
            n: (float(entrants[n]["ci_low"]), float(entrants[n]["ci_high"])) for n in result.names
        }
    except (KeyError, TypeError, ValueError):
        return None
    return points, bounds


def head_to_head(result: ArenaResult) -> dict[str, dict[str, float]]:
    """``{row: {column: row's mean score per episode against column}}`` over their matches."""
    score: dict[tuple[str, str], float] = {}
    count: dict[tuple[str, str], int] = {}
    for m in result.matches:
        for k, (me, other) in enumerate((m.players, m.players[::-1])):
            score[(me, other)] = score.get((me, other), 0.0) + m.scores[k]
            count[(me, other)] = count.get((me, other), 0) + m.episodes
    names = result.names
    return {a: {b: score[(a, b)] / count[(a, b)] for b in names if (a, b) in score} for a in names}


def arena_summary(result: ArenaResult, config: RatingConfig | None = None) -> dict[str, Any]:
    """The ratings summary stored in a result file (what the board recomputes)."""
    config = config or RatingConfig()
    rows, head = standings(result, config)
    return {
        "matches": len(result.matches),
        "episodes": len(result.matches) * result.suite.episodes_per_match,
        "errors": sum(sum(m.errors) + m.env_errors for m in result.matches),
        "ratings": {
            "system": "openskill BradleyTerryFull (Weng-Lin), tau 0, one pass in schedule order",
            "interval": "percentile bootstrap, match results resampled within each pair",
            "n_resamples": config.n_resamples,
            "seed": config.seed,
            "confidence": config.confidence,
        },
        "entrants": {
            row.name: {
                **row.player.as_dict(),
                "episodes": row.episodes,
                "score_per_episode": row.score_per_episode,
                "invalid_episodes": row.invalid_episodes,
                "errors": row.errors,
            }
            for row in rows
        },
        "head_to_head": head,
    }


# -- loading -----------------------------------------------------------------------------------


def load_arena_result(path: str | Path) -> ArenaResult:
    """Read and check an arena result file.

    Raises:
        NotAResultError: when the file is not JSON or has no arena ``schema``.
        ConfigError: when the file is missing or unreadable, of another schema version, or an
            incomplete or inconsistent result.
    """
    path = Path(path)
    data = read_result_json(path)
    if not isinstance(data, dict) or data.get("schema") != ARENA_SCHEMA:
        raise NotAResultError(
            f"{path}: not an llm-trainer arena result (no schema {ARENA_SCHEMA!r})"
        )
    if data.get("schema_version") != ARENA_SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: arena result schema version {data.get('schema_version')!r} is not "
            f"supported (this llm-trainer reads version {ARENA_SCHEMA_VERSION})"
        )
    try:
        suite = ArenaSuiteSpec.from_definition(data.get("suite", {}), f"{path}: suite")
    except RegistryError as exc:
        raise ConfigError(str(exc)) from None
    if data.get("suite_hash") != suite.hash:
        raise ConfigError(f"{path}: suite_hash does not match the stored suite definition")
    raw_entrants = data.get("entrants")
    if not isinstance(raw_entrants, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) for e in raw_entrants
    ):
        raise ConfigError(f"{path}: 'entrants' must be a list of {{name, spec, fingerprint}}")
    entrants = tuple(
        Entrant(e["name"], str(e.get("spec", e["name"])), e.get("fingerprint"))
        for e in raw_entrants
    )
    raw_matches = data.get("matches")
    if not isinstance(raw_matches, list):
        raise ConfigError(f"{path}: 'matches' must be a list")
    result = ArenaResult(
        suite=suite,
        entrants=entrants,
        config_hash=str(data.get("config_hash", "")),
        matches=tuple(
            MatchRecord.from_json(m, f"{path}: matches[{i}]") for i, m in enumerate(raw_matches)
        ),
        provenance=data.get("provenance", {}),
        summary=data.get("summary", {}),
    )
    check_complete(result, str(path))
    return result


__all__ = [
    "ARENA_SCHEMA",
    "ARENA_SCHEMA_VERSION",
    "ArenaResult",
    "ArenaStanding",
    "Entrant",
    "MatchRecord",
    "arena_config_hash",
    "arena_summary",
    "check_complete",
    "games_of",
    "head_to_head",
    "load_arena_result",
    "schedule",
    "standings",
]
