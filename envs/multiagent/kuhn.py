"""``LLMTrainer/KuhnPoker-v0``: Kuhn poker as a two-player, zero-sum text game (PettingZoo AEC).

Kuhn poker (Kuhn, 1950) is the smallest poker with bluffing: three cards, one bet, and a known
family of equilibria, so LLM self-play can be measured exactly (exploitability, game value
-1/18; :mod:`llm_trainer.envs.multiagent.kuhn_solver`). This module holds the rules as pure
functions (:func:`legal_moves`, :func:`is_terminal`, :func:`payoff`, :func:`parse_move`), which
the env and the solver share, and the env, :class:`KuhnPokerEnv`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from pettingzoo import AECEnv

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import ToolCall
from llm_trainer.envs.common import (
    INVALID_ACTION_PENALTY,
    RENDER_MODES,
    check_text_env_arguments,
    registered_ids,
    short_repr,
)
from llm_trainer.envs.spaces import MAX_TEXT_LENGTH, TextObservation, UnicodeText
from llm_trainer.envs.tools import AnswerAction, parse_action
from llm_trainer.envs.tools.parser import ANSWER_CLOSE, ANSWER_OPEN

#: The deck, lowest first.
CARDS: tuple[str, ...] = ("J", "Q", "K")
#: Every move word an action may name.
MOVES: tuple[str, ...] = ("check", "bet", "call", "fold")
#: The agents, in seat order: ``player_0`` acts first.
AGENTS: tuple[str, str] = ("player_0", "player_1")
#: The six deals ``(card of player_0, card of player_1)``, each drawn with probability 1/6.
DEALS: tuple[tuple[str, str], ...] = tuple((a, b) for a in CARDS for b in CARDS if a != b)
#: Every betting sequence that ends a hand.
TERMINAL_HISTORIES: tuple[tuple[str, ...], ...] = (
    ("check", "check"),
    ("check", "bet", "call"),
    ("check", "bet", "fold"),
    ("bet", "call"),
    ("bet", "fold"),
)

_RANK = {card: rank for rank, card in enumerate(CARDS)}
_THIRD_PERSON = {"check": "checks", "bet": "bets", "call": "calls", "fold": "folds"}
_PAST_TENSE = {"check": "checked", "bet": "bet", "call": "called", "fold": "folded"}
_AFTER_BET: tuple[str, ...] = ("call", "fold")
_OPENING: tuple[str, ...] = ("check", "bet")

SYSTEM_PROMPT = (
    "You are playing Kuhn poker. The deck has three cards, J < Q < K. Each of the two players "
    "antes 1 chip and is dealt one card; the third card is not used. player_0 acts first: "
    "check, or bet 1 chip. After a check, player_1 may check (showdown) or bet 1 chip; after a "
    "check and a bet, player_0 may call or fold. Facing a bet, a player calls (puts in 1 chip, "
    "then showdown) or folds (the bettor takes the pot). At a showdown the higher card takes "
    "the pot. Reply with exactly one legal move as <answer>MOVE</answer>, e.g. <answer>bet"
    "</answer>."
)


# -- the rules, as pure functions (shared with kuhn_solver) -----------------------------------


def legal_moves(history: Sequence[str]) -> tuple[str, ...]:
    """The moves allowed after ``history`` (empty once the hand is over).

    >>> legal_moves(()), legal_moves(("check",)), legal_moves(("bet",))
    (('check', 'bet'), ('check', 'bet'), ('call', 'fold'))
    >>> legal_moves(("bet", "call"))
    ()
    """
    history = tuple(history)
    if is_terminal(history):
        return ()
    return _AFTER_BET if history and history[-1] == "bet" else _OPENING


def is_terminal(history: Sequence[str]) -> bool:
    """Whether ``history`` (a legal betting sequence) ends the hand."""
    return tuple(history) in TERMINAL_HISTORIES


def to_move(history: Sequence[str]) -> int:
    """The seat (0 or 1) to act after the non-terminal ``history``: the players alternate."""
    return len(history) % 2


def payoff(deal: Sequence[str], history: Sequence[str]) -> int:
    """Chips won by ``player_0`` (``player_1`` wins the negative) at the end of a hand.

    A fold loses the folder's stake (1 chip: the ante; a fold only ever follows the other
    player's bet); a showdown wins the other player's stake (1 after two checks, 2 after a
    bet and a call) for the higher card.

    >>> payoff(("K", "J"), ("bet", "fold")), payoff(("J", "K"), ("check", "bet", "call"))
    (1, -2)

    Raises:
        ValueError: if ``history`` does not end a hand or ``deal`` is not one of :data:`DEALS`.
    """
    deal, history = tuple(deal), tuple(history)
    if deal not in DEALS:
        raise ValueError(f"deal must be one of {DEALS}, got {short_repr(deal)}")
    if history not in TERMINAL_HISTORIES:
        raise ValueError(f"history {short_repr(history)} does not end a hand")
    if history[-1] == "fold":
        folder = len(history) % 2 == 0  # True: player_1 made the last move, and folded
        return 1 if folder else -1
    stake = 2 if "bet" in history else 1
    return stake if _RANK[deal[0]] > _RANK[deal[1]] else -stake


class ParsedMove(NamedTuple):
    """What :func:`parse_move` read: the move, or why the action is invalid."""

    move: str | None
    """The legal move named by the action; ``None`` when the action is invalid."""
    invalid_reason: str | None
    """Why the action is invalid (one line); ``None`` when it is a legal move."""
    tool_call: bool = False
    """Whether the action was a (well-formed) tool call; the game has no tools."""


def parse_move(action: str, legal: Sequence[str], max_length: int = MAX_TEXT_LENGTH) -> ParsedMove:
    """Read a move from a completion; never raises on any ``str``.

    Accepted: ``<answer>MOVE</answer>`` (after an optional ``<think>...</think>`` block; the
    grammar of :func:`~llm_trainer.envs.tools.parse_action`), or the bare word; either way
    case-insensitive, with any surrounding whitespace. ``MOVE`` must be in ``legal``.

    >>> parse_move("<answer> Bet </answer>", ("check", "bet"))
    ParsedMove(move='bet', invalid_reason=None, tool_call=False)
    >>> parse_move("  CALL\\n", ("call", "fold")).move
    'call'
    >>> parse_move("call", ("check", "bet")).invalid_reason
    "illegal move 'call': the legal moves are check, bet"
    >>> parse_move("I raise!", ("check", "bet")).invalid_reason
    'expected <answer>MOVE</answer> with MOVE one of check, bet'
    """
    legal_text = ", ".join(legal)
    if len(action) > max_length:
        return ParsedMove(None, f"action longer than {max_length} characters")
    word = action.strip().casefold()
    tool_call = False
    if word not in MOVES:
        parsed = parse_action(action)
        if type(parsed) is AnswerAction:
            word = parsed.text.casefold()  # parse_action strips the whitespace
            if word not in MOVES:
                return ParsedMove(
                    None, f"unknown move {short_repr(parsed.text, 40)}: use one of {legal_text}"
                )
        else:
            tool_call = type(parsed) is ToolCall
            reason = "this game has no tools" if tool_call else f"expected {_format(legal_text)}"
            return ParsedMove(None, reason, tool_call)
    if word not in legal:
        return ParsedMove(None, f"illegal move {word!r}: the legal moves are {legal_text}")
    return ParsedMove(word, None)


def _format(legal_text: str) -> str:
    return f"{ANSWER_OPEN}MOVE{ANSWER_CLOSE} with MOVE one of {legal_text}"


def default_move(history: Sequence[str]) -> str:
    """The move played for an invalid action: check when legal, else fold."""
    return "check" if "check" in legal_moves(history) else "fold"


# -- the env ---------------------------------------------------------------------------------


class KuhnState(NamedTuple):
    """The game state of one hand; immutable (each move builds the next one)."""

    deal: tuple[str, str]
    """``(card of player_0, card of player_1)``."""
    history: tuple[str, ...] = ()
    """The moves played so far (defaults for invalid actions included)."""
    n_invalid: tuple[int, int] = (0, 0)
    """Invalid actions per seat."""
    n_tool_calls: tuple[int, int] = (0, 0)
    """Tool calls per seat (each one is also an invalid action)."""
    last_invalid: tuple[str | None, str | None] = (None, None)
    """Per seat: why its latest action was invalid, or ``None``."""


class KuhnSnapshot(NamedTuple):
    """Everything :meth:`KuhnPokerEnv.set_state` restores: the hand and the AEC bookkeeping.

    Immutable and hashable; the infos are recomputed from ``state``.
    """

    state: KuhnState
    agents: tuple[str, ...]
    agent_selection: str
    skip_agent_selection: str | None
    rewards: tuple[tuple[str, float], ...]
    cumulative_rewards: tuple[tuple[str, float], ...]
    terminations: tuple[tuple[str, bool], ...]
    truncations: tuple[tuple[str, bool], ...]
    transcript: tuple[str, ...]


class KuhnPokerEnv(AECEnv[str, str, str | None]):
    """Kuhn poker for two LLM agents: one hand per episode, moves as text.

    ## Description
    A three-card deck J < Q < K. Both players ante 1 chip and get one card each from
    ``np_random``; the third card stays hidden. ``player_0`` checks or bets 1 chip. After a
    check, ``player_1`` checks (showdown) or bets; after a bet, the other player calls
    (showdown) or folds. At most one bet per hand, so a hand takes 2 or 3 moves:
    ``check check``, ``check bet call``, ``check bet fold``, ``bet call``, ``bet fold``. The
    game is zero-sum with value -1/18 for ``player_0`` at every equilibrium (the family and
    exact exploitability are in :mod:`llm_trainer.envs.multiagent.kuhn_solver`).

    ## Agents
    ``player_0`` (acts first) and ``player_1``; :attr:`agent_selection` says who is to move.

    ## Action Space
    ``UnicodeText(max_text_length)``: the completion. Valid: ``<answer>MOVE</answer>``
    (optionally after one ``<think>...</think>`` block) or the bare word ``MOVE``,
    case-insensitive with any surrounding whitespace, ``MOVE`` one of the legal moves
    (``check``/``bet`` to open or after a check, ``call``/``fold`` facing a bet). Anything else,
    a tool call, an illegal move or a text longer than ``max_text_length`` included, is an
    invalid action: the player gets -0.1 and the default move is played for it (``check`` when
    legal, else ``fold``), so every hand ends within 3 moves whatever the agents write. A
    non-``str`` action raises ``TypeError``; nothing else does.

    ## Observation Space
    ``UnicodeText(max_text_length)`` per agent (a :class:`TextObservation`, i.e. a
    ``numpy.str_``): the player's seat and card, the betting so far, the legal moves and the
    answer format when it is to move, a note when its latest action was invalid, and at the
    end the result (the other card only at a showdown). Never longer than 256 characters.

    ## Rewards
    | event                                            | reward                         |
    |--------------------------------------------------|--------------------------------|
    | a legal move that does not end the hand          | 0                              |
    | the hand ends: fold                              | +1 to the bettor, -1 to folder |
    | the hand ends: showdown after check, check       | +1 higher card, -1 lower card  |
    | the hand ends: showdown after a bet and a call   | +2 higher card, -2 lower card  |
    | invalid action (besides the default move played) | -0.1 to that player            |

    The chips are zero-sum; invalid-action penalties are not (``info["chips"]`` holds the chips
    alone). Rewards follow PettingZoo's convention: ``env.rewards`` is the last step's, and
    ``env.last()`` returns what the agent to move accumulated since it last acted.

    ## Starting State
    A deal drawn uniformly from the six from ``self.np_random`` (seeded by ``reset(seed=...)``;
    no global RNG), or fixed by ``reset(options={"deal": ("K", "J")})`` (cards of player_0,
    player_1). Other options are ignored (PettingZoo's ``api_test`` passes one).

    ## Episode End
    Both agents terminate when the hand ends (after 2 or 3 steps); they then leave
    :attr:`agents` through the usual ``step(None)`` of each. Never truncated.

    ## Info
    Per agent: ``system_prompt`` (the rules), ``tools`` (``()``), ``role`` (``"user"``),
    ``seat`` (0 or 1), ``turn`` (moves so far), ``card``, ``history`` (the moves so far, a
    tuple), ``legal_moves`` (empty unless it is the agent's move), ``invalid_action`` and
    ``invalid_reason`` (of this agent's latest action), ``chips`` (its chip result; 0 until
    the end), and the metrics: ``format_ok`` (it has moved, every action valid), ``tool_correct``
    (it has moved and called no tool: the game needs none), ``exec_ok`` (it has moved: no tool
    can fail), ``answer_correct`` (the hand is over and every one of its moves was its own valid
    choice, no default) and ``success`` (the hand is over and it won chips).

    ## Arguments
    ``render_mode`` (``None`` or ``"ansi"``: the hand as text, both cards shown),
    ``max_text_length`` (int >= 256, default 8192). A bad value raises
    :class:`~llm_trainer.core.errors.ConfigError`. ``get_state()``/``set_state()`` snapshot and
    restore a hand (an immutable :class:`KuhnSnapshot`).

    ## Version History
    * v0: initial version.

    ## Example
    >>> env = KuhnPokerEnv()
    >>> env.reset(seed=0, options={"deal": ("K", "Q")})
    >>> env.agent_selection, env.infos["player_0"]["legal_moves"]
    ('player_0', ('check', 'bet'))
    >>> print(env.observe("player_0"))
    You are player_0 (you act first). Your card: K.
    Betting so far: none. Pot: 2 chips.
    Your move; legal moves: check, bet. Reply <answer>MOVE</answer>,
    e.g. <answer>check</answer>.
    >>> env.step("<answer>bet</answer>")
    >>> env.step("I fold, I think")  # not a move: -0.1, and fold is played for player_1
    >>> env.rewards, env.terminations["player_0"]
    ({'player_0': 1.0, 'player_1': -1.1}, True)
    >>> env.infos["player_1"]["invalid_reason"], env.infos["player_0"]["success"]
    ('expected <answer>MOVE</answer> with MOVE one of call, fold', True)
    """

    metadata = {  # noqa: RUF012 - PettingZoo's API (an instance variable of AECEnv)
        "name": "kuhn_poker_v0",
        "render_modes": list(RENDER_MODES),
        "render_fps": 1,
        # A hand can take three moves (check, bet, call): player_0 moves twice in one cycle.
        "is_parallelizable": False,
    }

    def __init__(
        self, *, render_mode: str | None = None, max_text_length: int = MAX_TEXT_LENGTH
    ) -> None:
        # pettingzoo leaves AECEnv.__init__ unannotated, and mypy's untyped_calls_exclude
        # (pyproject.toml lists pettingzoo) does not cover calls through super().
        super().__init__()  # type: ignore[no-untyped-call]
        check_text_env_arguments(self.env_name, render_mode, max_text_length)
        self.render_mode = render_mode
        self.max_text_length = max_text_length
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []
        # One space object per agent, the same one on every call (api_test checks identity).
        self._observation_spaces = {a: UnicodeText(max_text_length) for a in AGENTS}
        self._action_spaces = {a: UnicodeText(max_text_length) for a in AGENTS}
        self._np_random: np.random.Generator | None = None
        self.np_random_seed: int | None = None
        self._state: KuhnState | None = None
        self._transcript: tuple[str, ...] = ()

    # -- the PettingZoo API ------------------------------------------------------------------

    def observation_space(self, agent: str) -> UnicodeText:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> UnicodeText:
        return self._action_spaces[agent]

    @property
    def np_random(self) -> np.random.Generator:
        """This env's generator (seeded by ``reset(seed=...)``; from entropy until then)."""
        if self._np_random is None:
            self._np_random, self.np_random_seed = seeding.np_random()
        return self._np_random

    def reset(self, seed: int | None = None, options: Mapping[str, Any] | None = None) -> None:
        if seed is not None:
            self._np_random, self.np_random_seed = seeding.np_random(seed)
        deal = self._deal_from_options(options)
        if deal is None:
            deal = DEALS[int(self.np_random.integers(len(DEALS)))]
        self._state = KuhnState(deal)
        self.agents = list(AGENTS)
        self.rewards = dict.fromkeys(AGENTS, 0.0)
        self._cumulative_rewards = dict.fromkeys(AGENTS, 0.0)
        self.terminations = dict.fromkeys(AGENTS, False)
        self.truncations = dict.fromkeys(AGENTS, False)
        self.agent_selection = AGENTS[0]
        self._set_skip_agent_selection(None)
        self._transcript = (f"deal: player_0 {deal[0]}, player_1 {deal[1]}",)
        self.infos = self._infos()

    def step(self, action: str | None) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        if not isinstance(action, str):
            raise TypeError(f"action must be a str (the model's completion), got {type(action)}")
        state = self._live_state()
        seat = AGENTS.index(agent)
        parsed = parse_move(action, legal_moves(state.history), self.max_text_length)
        move = parsed.move or default_move(state.history)
        self._cumulative_rewards[agent] = 0.0
        self.rewards = dict.fromkeys(self.agents, 0.0)
        invalid = list(state.n_invalid)
        tools = list(state.n_tool_calls)
        last_invalid = list(state.last_invalid)
        last_invalid[seat] = parsed.invalid_reason
        if parsed.invalid_reason is not None:
            invalid[seat] += 1
            tools[seat] += parsed.tool_call
            self.rewards[agent] = INVALID_ACTION_PENALTY
        history = (*state.history, move)
        state = KuhnState(
            state.deal,
            history,
            (invalid[0], invalid[1]),
            (tools[0], tools[1]),
            (last_invalid[0], last_invalid[1]),
        )
        self._state = state
        note = f" (invalid action: {parsed.invalid_reason})" if parsed.invalid_reason else ""
        self._transcript += (f"{agent} {_THIRD_PERSON[move]}{note}",)
        if is_terminal(history):
            chips = payoff(state.deal, history)
            self.rewards[AGENTS[0]] += chips
            self.rewards[AGENTS[1]] -= chips
            self.terminations = dict.fromkeys(self.agents, True)
            self._transcript += (f"result: player_0 {chips:+d}, player_1 {-chips:+d}",)
        else:
            self.agent_selection = AGENTS[to_move(history)]
        self._accumulate_rewards()
        self.infos = self._infos()

    def observe(self, agent: str) -> TextObservation:
        text = self._observation(self._live_state(), AGENTS.index(agent))
        return TextObservation(text[: self.max_text_length])

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return "\n".join(self._transcript)
        return None

    def close(self) -> None:
        """Nothing to release."""

    # -- snapshots (for MCTS and other planners) ---------------------------------------------

    def get_state(self) -> KuhnSnapshot:
        """Snapshot the hand and the AEC bookkeeping (an immutable value)."""
        return KuhnSnapshot(
            self._live_state(),
            tuple(self.agents),
            self.agent_selection,
            self.__dict__.get("_skip_agent_selection"),
            tuple(self.rewards.items()),
            tuple(self._cumulative_rewards.items()),
            tuple(self.terminations.items()),
            tuple(self.truncations.items()),
            self._transcript,
        )

    def set_state(self, snapshot: KuhnSnapshot) -> None:
        """Restore a snapshot from :meth:`get_state`.

        ``np_random`` is not restored: moves draw nothing, so the hand continues identically;
        the next ``reset`` continues this env's own seed stream.
        """
        if not isinstance(snapshot, KuhnSnapshot) or not isinstance(snapshot.state, KuhnState):
            raise TypeError(f"expected a KuhnSnapshot from get_state(), got {type(snapshot)}")
        self._state = snapshot.state
        self.agents = list(snapshot.agents)
        self.agent_selection = snapshot.agent_selection
        self._set_skip_agent_selection(snapshot.skip_agent_selection)
        self.rewards = dict(snapshot.rewards)
        self._cumulative_rewards = dict(snapshot.cumulative_rewards)
        self.terminations = dict(snapshot.terminations)
        self.truncations = dict(snapshot.truncations)
        self._transcript = snapshot.transcript
        self.infos = self._infos()

    # -- helpers -----------------------------------------------------------------------------

    @property
    def env_name(self) -> str:
        """The registered id of this env (or its class name), for messages."""
        ids = registered_ids(type(self))
        return ids[0] if len(ids) == 1 else type(self).__name__

    def _set_skip_agent_selection(self, agent: str | None) -> None:
        """Set or clear AECEnv's bookkeeping between dead steps. AECEnv reads it with
        ``getattr(self, "_skip_agent_selection", None)`` and types it ``str``, so "none" is
        an absent attribute."""
        if agent is None:
            self.__dict__.pop("_skip_agent_selection", None)
        else:
            self._skip_agent_selection = agent

    def _live_state(self) -> KuhnState:
        if self._state is None:
            raise ResetNeeded("call reset() first: no hand has been dealt")
        return self._state

    def _deal_from_options(self, options: Mapping[str, Any] | None) -> tuple[str, str] | None:
        if not options or "deal" not in options:
            return None
        deal = options["deal"]
        if (
            isinstance(deal, list | tuple)
            and len(deal) == 2
            and all(isinstance(c, str) for c in deal)
            and (deal[0], deal[1]) in DEALS
        ):
            return (deal[0], deal[1])
        raise ConfigError(
            f"{self.env_name}: reset option deal must be two different cards of "
            f"{', '.join(CARDS)} (player_0's, player_1's), got {short_repr(deal)}"
        )

    def _infos(self) -> dict[str, dict[str, Any]]:
        state = self._live_state()
        return {agent: self._info(state, AGENTS.index(agent)) for agent in self.agents}

    def _info(self, state: KuhnState, seat: int) -> dict[str, Any]:
        history = state.history
        over = is_terminal(history)
        n_moves = (len(history) + 1 - seat) // 2  # seat 0 moves at 0 and 2, seat 1 at 1
        acted = n_moves > 0
        chips = 0
        if over:
            chips = payoff(state.deal, history) * (1 if seat == 0 else -1)
        to_act = not over and to_move(history) == seat
        valid = state.n_invalid[seat] == 0
        return {
            "system_prompt": SYSTEM_PROMPT,
            "tools": (),
            "role": "user",
            "seat": seat,
            "turn": len(history),
            "card": state.deal[seat],
            "history": history,
            "legal_moves": legal_moves(history) if to_act else (),
            "invalid_action": state.last_invalid[seat] is not None,
            "invalid_reason": state.last_invalid[seat],
            "chips": chips,
            "format_ok": acted and valid,
            "tool_correct": acted and state.n_tool_calls[seat] == 0,
            "exec_ok": acted,
            "answer_correct": over and acted and valid,
            "success": over and chips > 0,
        }

    def _observation(self, state: KuhnState, seat: int) -> str:
        agent, other = AGENTS[seat], AGENTS[1 - seat]
        history = state.history
        first = " (you act first)" if seat == 0 else ""
        lines = [f"You are {agent}{first}. Your card: {state.deal[seat]}."]
        moves = ", ".join(f"{AGENTS[i % 2]} {_THIRD_PERSON[m]}" for i, m in enumerate(history))
        pot = 2 + history.count("bet") + history.count("call")
        lines.append(f"Betting so far: {moves or 'none'}. Pot: {pot} chips.")
        reason = state.last_invalid[seat]
        if reason is not None:
            last = len(history) - 1 if (len(history) - 1) % 2 == seat else len(history) - 2
            played = _PAST_TENSE[history[last]]
            lines.append(f"Your last reply was invalid ({reason[:80]}), so you {played}.")
        if is_terminal(history):
            chips = payoff(state.deal, history) * (1 if seat == 0 else -1)
            if history[-1] == "fold":
                how = "you folded" if to_move(history[:-1]) == seat else f"{other} folded"
            else:
                how = f"showdown, your {state.deal[seat]} against {state.deal[1 - seat]}"
            result = "won" if chips > 0 else "lost"
            lines.append(f"Hand over: {how}. You {result} {abs(chips)} chip(s).")
        elif to_move(history) == seat:
            legal = legal_moves(history)
            lines.append(
                f"Your move; legal moves: {', '.join(legal)}. Reply {_format_hint(legal[0])}."
            )
        else:
            lines.append(f"Waiting for {other}.")
        return "\n".join(lines)


def _format_hint(example: str) -> str:
    return f"{ANSWER_OPEN}MOVE{ANSWER_CLOSE}, e.g. {ANSWER_OPEN}{example}{ANSWER_CLOSE}"
