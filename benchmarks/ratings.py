"""Ratings of players from their game results: OpenSkill, with bootstrap intervals.

The rating system is the Weng-Lin Bradley-Terry model of the maintained ``openskill`` package
(Weng and Lin, "A Bayesian Approximation Method for Online Ranking", JMLR 2011): each player
has a TrueSkill-style Gaussian belief ``(mu, sigma)`` about its skill, with Elo's logistic
chance of winning, updated after every game. The dynamics parameter ``tau`` is 0: the players
of a benchmark (a saved agent, a scripted strategy) do not change between games, so the belief
only sharpens. A player's **rating** is its ``mu`` after all the games (25 for every player
before any game).

* **The fit** (:func:`fit_ratings`) is one pass over the games in the given order (for an
  arena: round by round, pairs in entrant order). A sequential system depends on the order of
  the games, so the order is part of the method and stays fixed.
* **The interval** (:func:`rate`) is a percentile bootstrap: each resample keeps the schedule
  (which pair plays in which slot) and redraws every slot's result, with replacement, from the
  results of the games of *that* pair (resampling stratified by pair, as the bench bootstrap
  stratifies by cell: every pair keeps its number of games), then refits. The interval of a
  player is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of its refitted
  ratings. A pair whose games all ended the same way resamples to itself, so two players that
  never beat each other's opponents differently get tight intervals; the intervals narrow as
  the rounds grow, like the standard error of a mean.

Every random draw comes from a :class:`numpy.random.Generator` seeded by ``seed``; no global
RNG is touched. The ``openskill`` package is part of the ``bench`` extra and is imported only
when ratings are computed.

>>> games = [Game(0, 1, 1.0), Game(0, 1, 1.0), Game(0, 1, 0.5)]
>>> [round(mu, 2) for mu, _ in fit_ratings(2, games)]
[28.79, 21.21]
>>> a, b = rate(["a", "b"], games * 4, RatingConfig(n_resamples=200))
>>> a.rating.low <= a.rating.mean <= a.rating.high, b.rating.high < a.rating.low
(True, True)
>>> a.games, a.wins, a.draws, a.losses, round(a.score_rate, 3)
(12, 8, 4, 0, 0.833)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from llm_trainer.benchmarks.stats import Interval
from llm_trainer.core.errors import ConfigError

if TYPE_CHECKING:
    from openskill.models import BradleyTerryFull

#: Default bootstrap resamples of a rating interval (each refits every game through openskill,
#: about 20 us a game on the 2-core reference machine: 1,000 resamples of 60 games take ~1.2 s).
N_RATING_BOOTSTRAP = 1000
#: OpenSkill's defaults: every player starts at mu 25, sigma 25/3; beta (the spread of one
#: game's performance) 25/6.
INITIAL_MU = 25.0
INITIAL_SIGMA = 25.0 / 3.0
BETA = 25.0 / 6.0


@dataclass(frozen=True, slots=True)
class Game:
    """One game between players ``a`` and ``b`` (indices into the player list)."""

    a: int
    b: int
    score: float
    """``a``'s result: 1 a win, 0.5 a draw, 0 a loss (``b``'s is ``1 - score``)."""

    def __post_init__(self) -> None:
        if self.score not in (0.0, 0.5, 1.0):
            raise ValueError(f"a game's score must be 0, 0.5 or 1, got {self.score!r}")
        if self.a == self.b:
            raise ValueError(f"a game needs two players, got {self.a} against itself")


@dataclass(frozen=True, slots=True)
class RatingConfig:
    """How ratings and their intervals are computed."""

    n_resamples: int = N_RATING_BOOTSTRAP
    """Bootstrap resamples of every interval."""
    seed: int = 0
    """Seed of the bootstrap's generator."""
    confidence: float = 0.95
    """Of every interval."""

    def __post_init__(self) -> None:
        if isinstance(self.n_resamples, bool) or self.n_resamples < 100:
            raise ConfigError(f"n_resamples must be >= 100, got {self.n_resamples!r}")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"confidence must be in (0, 1), got {self.confidence!r}")


@dataclass(frozen=True, slots=True)
class PlayerRating:
    """A player's rating with its bootstrap interval, and its record."""

    name: str
    rating: Interval
    """``mu`` after all the games, with its percentile-bootstrap interval."""
    sigma: float
    """The model's own uncertainty about ``mu`` after all the games."""
    games: int
    wins: int
    draws: int
    losses: int

    @property
    def score_rate(self) -> float:
        """``(wins + draws / 2) / games`` (0 without games)."""
        return (self.wins + self.draws / 2) / self.games if self.games else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "rating": self.rating.mean,
            "ci_low": self.rating.low,
            "ci_high": self.rating.high,
            "sigma": self.sigma,
            "games": self.games,
            "wins": self.wins,
            "draws": self.draws,
            "losses": self.losses,
            "score_rate": self.score_rate,
        }


def _model() -> BradleyTerryFull:
    try:
        from openskill.models import BradleyTerryFull
    except ImportError:
        raise ConfigError(
            "ratings need the openskill package: pip install 'llm-trainer[bench]'"
        ) from None
    return BradleyTerryFull(mu=INITIAL_MU, sigma=INITIAL_SIGMA, beta=BETA, tau=0.0)


def _check_games(n_players: int, games: Sequence[Game]) -> None:
    for game in games:
        if not (0 <= game.a < n_players and 0 <= game.b < n_players):
            raise ValueError(f"{game} names a player outside 0..{n_players - 1}")


def _fit(
    model: BradleyTerryFull,
    n_players: int,
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float64],
) -> list[tuple[float, float]]:
    ratings = [model.rating() for _ in range(n_players)]
    for i, j, score in zip(a.tolist(), b.tolist(), scores.tolist(), strict=True):
        ranks = [0.0, 1.0] if score == 1.0 else [1.0, 0.0] if score == 0.0 else [0.0, 0.0]
        [[ratings[i]], [ratings[j]]] = model.rate([[ratings[i]], [ratings[j]]], ranks=ranks)
    return [(r.mu, r.sigma) for r in ratings]


def fit_ratings(n_players: int, games: Sequence[Game]) -> list[tuple[float, float]]:
    """``(mu, sigma)`` of each player after one pass over ``games``, in order.

    Raises:
        ValueError: for a game naming a player outside ``0 .. n_players - 1``.
        ConfigError: when the ``openskill`` package is missing.
    """
    _check_games(n_players, games)
    a, b, scores = _arrays(games)
    return _fit(_model(), n_players, a, b, scores)


def _arrays(
    games: Sequence[Game],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    a = np.array([g.a for g in games], dtype=np.int64)
    b = np.array([g.b for g in games], dtype=np.int64)
    scores = np.array([g.score for g in games], dtype=np.float64)
    return a, b, scores


def resampled_scores(
    games: Sequence[Game], n_resamples: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """``(n_resamples, games)`` results: each slot's result redrawn, with replacement, from
    the games of its pair (from the slot's ``a``'s side), the schedule kept.

    >>> games = [Game(0, 1, 1.0), Game(1, 0, 1.0), Game(0, 2, 0.5)]
    >>> resampled_scores(games, 3, np.random.default_rng(0))[:, 2].tolist()  # one game
    [0.5, 0.5, 0.5]
    """
    a, b, scores = _arrays(games)
    low = np.minimum(a, b)
    high = np.maximum(a, b)
    # every result from the side of the pair's lower index, then back to each slot's side
    from_low = np.where(a == low, scores, 1.0 - scores)
    out = np.empty((n_resamples, len(games)), dtype=np.float64)
    pairs = np.unique(np.stack([low, high], axis=1), axis=0) if len(games) else np.zeros((0, 2))
    for i, j in pairs.tolist():
        (slots,) = np.nonzero((low == i) & (high == j))
        drawn = from_low[slots][rng.integers(0, slots.size, size=(n_resamples, slots.size))]
        out[:, slots] = np.where(a[slots] == low[slots], drawn, 1.0 - drawn)
    return out


def rate(
    players: Sequence[str],
    games: Sequence[Game],
    config: RatingConfig | None = None,
    *,
    intervals: Mapping[str, tuple[float, float]] | None = None,
) -> list[PlayerRating]:
    """Each player's rating (:func:`fit_ratings`) with its percentile-bootstrap interval
    (see the module docstring) and its win/draw/loss record, in the order of ``players``.

    ``intervals`` (``{player: (low, high)}``) are intervals computed before from the same
    games with the same ``config`` (a result file's summary): the bootstrap is then skipped.

    Raises:
        ValueError: for duplicate player names or a game naming an unknown player.
        ConfigError: when the ``openskill`` package is missing.
    """
    config = config or RatingConfig()
    if len(set(players)) != len(players):
        raise ValueError(f"player names must be distinct, got {list(players)}")
    n = len(players)
    _check_games(n, games)
    model = _model()
    a, b, scores = _arrays(games)
    point = _fit(model, n, a, b, scores)
    mus = np.array([mu for mu, _ in point], dtype=np.float64)
    if intervals is not None:
        lows = np.array([intervals[p][0] for p in players], dtype=np.float64)
        highs = np.array([intervals[p][1] for p in players], dtype=np.float64)
    elif games:
        rng = np.random.default_rng(config.seed)
        boot = np.array(
            [
                [mu for mu, _ in _fit(model, n, a, b, resample)]
                for resample in resampled_scores(games, config.n_resamples, rng)
            ],
            dtype=np.float64,
        ).reshape(config.n_resamples, n)
        tail = (1.0 - config.confidence) / 2
        lows, highs = np.quantile(boot, [tail, 1.0 - tail], axis=0)
    else:
        lows, highs = mus, mus
    out = []
    for k, name in enumerate(players):
        mine = np.concatenate([scores[a == k], 1.0 - scores[b == k]])
        out.append(
            PlayerRating(
                name,
                Interval(float(mus[k]), float(lows[k]), float(highs[k]), config.confidence),
                point[k][1],
                games=int(mine.size),
                wins=int((mine == 1.0).sum()),
                draws=int((mine == 0.5).sum()),
                losses=int((mine == 0.0).sum()),
            )
        )
    return out
