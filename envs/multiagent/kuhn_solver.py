"""Exact game theory for Kuhn poker: strategies, values, best responses, exploitability.

Kuhn poker is small enough to solve by enumeration: 6 deals, 5 betting sequences, 12
information sets (a player's card and the betting it has seen). A behaviour strategy gives, at
each information set, the probability of the *aggressive* move (``bet`` when opening or after a
check, ``call`` facing a bet); the other move (``check`` or ``fold``) takes the rest.

* :func:`expected_value` plays two strategies against each other over the 6 deals, exactly.
* :func:`best_response` / :func:`best_response_value`: the best a player can do against a
  fixed strategy, by backward induction over its information sets.
* :func:`exploitability` of a strategy pair: the mean of the two best-response gains,
  ``(BR_0(s_1) + BR_1(s_0)) / 2`` (OpenSpiel's NashConv / 2); 0 exactly at a Nash equilibrium.
* :func:`equilibrium_strategy` (``alpha`` in [0, 1/3]): Kuhn's one-parameter family of
  equilibria; the game value for ``player_0`` is -1/18 for every ``alpha``.
* Scripted players for tests and ratings (:data:`SCRIPTED_STRATEGIES`) and
  :class:`StrategyPolicy`, which plays a strategy through the text env
  (:class:`~llm_trainer.envs.multiagent.kuhn.KuhnPokerEnv`) as a
  :class:`~llm_trainer.agents.policy.Policy`.

>>> round(expected_value(equilibrium_strategy(0.2), equilibrium_strategy(0.0)), 6)
-0.055556
>>> round(exploitability((random_strategy(), random_strategy())), 6)
0.458333
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from llm_trainer.envs.common import short_repr
from llm_trainer.envs.multiagent.kuhn import (
    CARDS,
    DEALS,
    is_terminal,
    legal_moves,
    payoff,
    to_move,
)
from llm_trainer.envs.tools.parser import ANSWER_CLOSE, ANSWER_OPEN

#: An information set: the player's card and the moves played so far.
InfoSet = tuple[str, tuple[str, ...]]

#: The betting a player can face when it is to move, by seat.
SEAT_HISTORIES: tuple[tuple[tuple[str, ...], ...], ...] = (
    ((), ("check", "bet")),
    (("check",), ("bet",)),
)
#: All 12 information sets, player_0's first.
INFO_SETS: tuple[InfoSet, ...] = tuple(
    (card, history) for seat in (0, 1) for history in SEAT_HISTORIES[seat] for card in CARDS
)
#: The value of the game for player_0 at every equilibrium.
GAME_VALUE = -1 / 18


def aggressive_move(history: Sequence[str]) -> str:
    """``bet`` when it is legal after ``history``, else ``call``."""
    return "bet" if "bet" in legal_moves(history) else "call"


def passive_move(history: Sequence[str]) -> str:
    """``check`` when it is legal after ``history``, else ``fold``."""
    return "check" if "check" in legal_moves(history) else "fold"


class Strategy(Mapping[InfoSet, float]):
    """A behaviour strategy for both seats: P(aggressive move) at each of the 12 info sets.

    A read-only mapping ``{(card, history): probability}``; a seat's play reads only its own
    information sets (``player_0``: ``()`` and ``("check", "bet")``; ``player_1``:
    ``("check",)`` and ``("bet",)``), so one strategy can sit in either seat (self-play).

    >>> s = Strategy({info_set: 0.5 for info_set in INFO_SETS})
    >>> s.move_probs("K", ("check", "bet"))
    {'call': 0.5, 'fold': 0.5}

    Raises:
        ValueError: unless every info set is given exactly once with a probability in [0, 1].
    """

    __slots__ = ("_probs",)

    def __init__(self, probs: Mapping[InfoSet, float]) -> None:
        table: dict[InfoSet, float] = {}
        for key, value in probs.items():
            info_set = (key[0], tuple(key[1])) if isinstance(key, tuple) and len(key) == 2 else key
            if info_set not in INFO_SETS:
                raise ValueError(f"unknown information set {short_repr(key)}")
            p = float(value)
            if not 0.0 <= p <= 1.0:  # also refuses NaN
                raise ValueError(f"probability at {info_set} must be in [0, 1], got {value!r}")
            table[info_set] = p
        missing = [s for s in INFO_SETS if s not in table]
        if missing:
            raise ValueError(f"strategy misses the information sets {missing}")
        self._probs = table

    def __getitem__(self, info_set: InfoSet) -> float:
        return self._probs[info_set]

    def __iter__(self) -> Iterator[InfoSet]:
        return iter(INFO_SETS)

    def __len__(self) -> int:
        return len(INFO_SETS)

    def __repr__(self) -> str:
        items = (f"{c}{'/' if h else ''}{','.join(h)}: {p:.4g}" for (c, h), p in self.items())
        return f"Strategy({', '.join(items)})"

    def prob(self, card: str, history: Sequence[str]) -> float:
        """P(aggressive move: ``bet``, or ``call`` facing a bet) holding ``card`` after
        ``history``."""
        return self._probs[(card, tuple(history))]

    def move_probs(self, card: str, history: Sequence[str]) -> dict[str, float]:
        """The two legal moves and their probabilities."""
        p = self.prob(card, history)
        return {aggressive_move(history): p, passive_move(history): 1.0 - p}

    def with_seat(self, seat: int, other: Mapping[InfoSet, float]) -> Strategy:
        """This strategy with ``seat``'s information sets taken from ``other``."""
        return Strategy(
            {s: (other[s] if s[1] in SEAT_HISTORIES[seat] else p) for s, p in self.items()}
        )


# -- exact values ----------------------------------------------------------------------------


def expected_value(strategy_0: Strategy, strategy_1: Strategy) -> float:
    """Expected chips of ``player_0`` playing ``strategy_0`` against ``player_1`` playing
    ``strategy_1``, exactly (each of the 6 deals with probability 1/6).

    >>> expected_value(always_bet_strategy(), always_bet_strategy())  # always a showdown for 2
    0.0
    """
    total = 0.0
    for deal in DEALS:
        total += _value(deal, (), (strategy_0, strategy_1))
    return total / len(DEALS)


def _value(deal: tuple[str, str], history: tuple[str, ...], pair: tuple[Strategy, ...]) -> float:
    if is_terminal(history):
        return float(payoff(deal, history))
    seat = to_move(history)
    p = pair[seat].prob(deal[seat], history)
    high = _value(deal, (*history, aggressive_move(history)), pair) if p > 0.0 else 0.0
    low = _value(deal, (*history, passive_move(history)), pair) if p < 1.0 else 0.0
    return p * high + (1.0 - p) * low


def best_response(strategy: Strategy, seat: int) -> Strategy:
    """A pure best response, playing ``seat``, to ``strategy`` playing the other seat.

    The result plays the best response at ``seat``'s information sets (ties, including sets the
    response never reaches, go to the passive move) and copies ``strategy`` at the others.
    """
    return _best_response(strategy, seat)[1]


def best_response_value(strategy: Strategy, seat: int) -> float:
    """Expected chips of a best response playing ``seat`` against ``strategy`` playing the
    other seat (from the responder's side).

    >>> round(best_response_value(equilibrium_strategy(1 / 6), 0), 6)  # = the game value
    -0.055556
    """
    return _best_response(strategy, seat)[0]


def _best_response(strategy: Strategy, seat: int) -> tuple[float, Strategy]:
    if seat not in (0, 1):
        raise ValueError(f"seat must be 0 or 1, got {short_repr(seat)}")
    choice: dict[InfoSet, float] = {}
    total = 0.0
    for card in CARDS:
        # The opponent's possible cards, weighted by P(deal) x P(its moves so far).
        weights = {other: 1.0 / len(DEALS) for other in CARDS if other != card}
        total += _respond(strategy, seat, card, (), weights, choice)
    return total, strategy.with_seat(seat, {**dict(strategy), **choice})


def _respond(
    strategy: Strategy,
    seat: int,
    card: str,
    history: tuple[str, ...],
    weights: dict[str, float],
    choice: dict[InfoSet, float],
) -> float:
    if is_terminal(history):
        if seat == 0:
            return sum(w * payoff((card, o), history) for o, w in weights.items())
        return sum(-w * payoff((o, card), history) for o, w in weights.items())
    high_history = (*history, aggressive_move(history))
    low_history = (*history, passive_move(history))
    if to_move(history) == seat:
        high = _respond(strategy, seat, card, high_history, weights, choice)
        low = _respond(strategy, seat, card, low_history, weights, choice)
        choice[(card, history)] = 1.0 if high > low else 0.0
        return max(high, low)
    probs = {o: strategy.prob(o, history) for o in weights}
    high_weights = {o: w * probs[o] for o, w in weights.items()}
    low_weights = {o: w * (1.0 - probs[o]) for o, w in weights.items()}
    return _respond(strategy, seat, card, high_history, high_weights, choice) + _respond(
        strategy, seat, card, low_history, low_weights, choice
    )


def exploitability(strategy_pair: tuple[Strategy, Strategy]) -> float:
    """``(BR_0(s_1) + BR_1(s_0)) / 2`` for ``strategy_pair = (s_0, s_1)``: how much, on
    average over the two seats, a best response gains over the game value; >= 0, and 0
    exactly at a Nash equilibrium. For self-play pass ``(s, s)``.

    >>> exploitability((equilibrium_strategy(0.1), equilibrium_strategy(0.3))) < 1e-12
    True
    """
    strategy_0, strategy_1 = strategy_pair
    return (best_response_value(strategy_1, 0) + best_response_value(strategy_0, 1)) / 2


# -- scripted strategies ---------------------------------------------------------------------


def equilibrium_strategy(alpha: float = 1 / 6) -> Strategy:
    """Kuhn's equilibrium with parameter ``alpha`` in [0, 1/3].

    ``player_0``: with J bet with probability ``alpha`` (a bluff), fold to a bet; with Q
    check, call a bet with probability ``alpha + 1/3``; with K bet with probability
    ``3 * alpha``, call a bet. ``player_1`` (the same at every equilibrium): facing a bet,
    call with K, with Q with probability 1/3, fold J; after a check, bet K, check Q, bet J
    with probability 1/3.

    Raises:
        ValueError: for ``alpha`` outside [0, 1/3].
    """
    value = _real(alpha)
    if value is None or not 0.0 <= value <= 1 / 3:
        raise ValueError(f"alpha must be in [0, 1/3], got {short_repr(alpha)}")
    alpha, third = value, 1 / 3
    cb = ("check", "bet")
    return Strategy(
        {
            ("J", ()): alpha,
            ("Q", ()): 0.0,
            ("K", ()): 3 * alpha,
            ("J", cb): 0.0,
            ("Q", cb): alpha + third,
            ("K", cb): 1.0,
            ("J", ("check",)): third,
            ("Q", ("check",)): 0.0,
            ("K", ("check",)): 1.0,
            ("J", ("bet",)): 0.0,
            ("Q", ("bet",)): third,
            ("K", ("bet",)): 1.0,
        }
    )


def _real(value: object) -> float | None:
    """``value`` as a float if it is a real number (``bool`` excluded), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def random_strategy() -> Strategy:
    """Each legal move with probability 1/2 (exploitability 11/24 in self-play)."""
    return Strategy(dict.fromkeys(INFO_SETS, 0.5))


def always_bet_strategy() -> Strategy:
    """Always bet, always call."""
    return Strategy(dict.fromkeys(INFO_SETS, 1.0))


#: The scripted players by name, for configs and ratings.
SCRIPTED_STRATEGIES: Mapping[str, Callable[[], Strategy]] = {
    "random": random_strategy,
    "always_bet": always_bet_strategy,
    "equilibrium": equilibrium_strategy,
}


# -- playing a strategy through the text env -------------------------------------------------


class StrategyPolicy:
    """A :class:`~llm_trainer.agents.policy.Policy` that plays a :class:`Strategy` in
    :class:`~llm_trainer.envs.multiagent.kuhn.KuhnPokerEnv`, from either seat.

    It reads the card and the betting from ``info`` (``card``, ``history``), draws the move
    from its own generator (seeded by the constructor and by ``reset(seed=...)``) and answers
    ``<answer>MOVE</answer>``.

    >>> from llm_trainer.envs.multiagent.kuhn import KuhnPokerEnv
    >>> env = KuhnPokerEnv()
    >>> env.reset(seed=3)
    >>> players = {"player_0": StrategyPolicy(always_bet_strategy()),
    ...            "player_1": StrategyPolicy(always_bet_strategy())}
    >>> for agent in env.agent_iter():
    ...     observation, reward, terminated, truncated, info = env.last()
    ...     env.step(None if terminated else players[agent].act(observation, info))
    ...     if terminated:
    ...         print(agent, info["history"], info["chips"])
    player_1 ('bet', 'call') -2
    player_0 ('bet', 'call') 2
    """

    def __init__(self, strategy: Strategy, *, seed: int = 0) -> None:
        self.strategy = strategy
        self._rng = np.random.default_rng(seed)

    def reset(self, *, seed: int | None = None) -> None:
        """Re-seed the move draws when ``seed`` is given."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        """The strategy's move for ``info["card"]`` after ``info["history"]``.

        Raises:
            ValueError: if it is not this player's move (``info["legal_moves"]`` is empty).
        """
        history = tuple(info["history"])
        if not info.get("legal_moves"):
            raise ValueError(f"StrategyPolicy asked to act with no legal move after {history}")
        p = self.strategy.prob(info["card"], history)
        move = aggressive_move(history) if self._rng.random() < p else passive_move(history)
        return f"{ANSWER_OPEN}{move}{ANSWER_CLOSE}"

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """:meth:`act` for each entry, in order."""
        return [self.act(o, i) for o, i in zip(observations, infos, strict=True)]
