"""Kuhn poker: the PettingZoo API, the rules, the exact solver, and text that never raises.

The rules are checked against payoffs written out here by hand (not against
:func:`~llm_trainer.envs.multiagent.kuhn.payoff`), over all 6 deals and every action sequence,
invalid ones included; the solver against the known equilibrium family (value -1/18),
against brute force over every pure strategy, and against hands played through the text env.
"""

from __future__ import annotations

import itertools
import math
import pickle
import random
from collections import Counter
from typing import Any

import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from hypothesis import given
from hypothesis import strategies as st
from pettingzoo.test import api_test, seed_test

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import METRIC_KEYS
from llm_trainer.envs.multiagent.kuhn import (
    AGENTS,
    DEALS,
    MOVES,
    TERMINAL_HISTORIES,
    KuhnPokerEnv,
    KuhnSnapshot,
    legal_moves,
    parse_move,
    payoff,
)
from llm_trainer.envs.multiagent.kuhn_solver import (
    GAME_VALUE,
    INFO_SETS,
    SCRIPTED_STRATEGIES,
    SEAT_HISTORIES,
    Strategy,
    StrategyPolicy,
    always_bet_strategy,
    best_response,
    best_response_value,
    equilibrium_strategy,
    expected_value,
    exploitability,
    random_strategy,
)
from llm_trainer.envs.spaces import TextObservation

RANK = {"J": 0, "Q": 1, "K": 2}
# Chips won by player_0, by betting sequence, written from the rules of Kuhn poker: the
# showdowns pay the higher card the other player's stake (ante 1, plus 1 after a bet and a
# call); a fold loses the folder's ante.
SHOWDOWN_STAKES = {("check", "check"): 1, ("check", "bet", "call"): 2, ("bet", "call"): 2}
FOLD_PAYS_PLAYER_0 = {("check", "bet", "fold"): -1, ("bet", "fold"): +1}
GARBAGE = "I think I will raise the stakes!"
ALPHAS = [i / 36 for i in range(13)]  # 0, 1/36, ..., 1/3


def _rules(deal: tuple[str, str], history: tuple[str, ...]) -> int:
    if history in FOLD_PAYS_PLAYER_0:
        return FOLD_PAYS_PLAYER_0[history]
    stake = SHOWDOWN_STAKES[history]
    return stake if RANK[deal[0]] > RANK[deal[1]] else -stake


def _dealt(deal: tuple[str, str], **kwargs: Any) -> KuhnPokerEnv:
    env = KuhnPokerEnv(**kwargs)
    env.reset(seed=0, options={"deal": deal})
    return env


def _play(env: KuhnPokerEnv, actions: list[str]) -> dict[str, float]:
    """Step the agents to move with ``actions``; return what each was paid in all."""
    paid = dict.fromkeys(AGENTS, 0.0)
    for action in actions:
        env.step(action)
        for agent, reward in env.rewards.items():
            paid[agent] += reward
    return paid


def _hand_over(env: KuhnPokerEnv) -> bool:
    return all(env.terminations.values())


# -- the PettingZoo API -----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Observation is not a NumPy array")
@pytest.mark.filterwarnings("ignore:.* space for each agent probably should be")
def test_pettingzoo_api_test_passes() -> None:
    api_test(KuhnPokerEnv(), num_cycles=300)
    api_test(KuhnPokerEnv(render_mode="ansi", max_text_length=256), num_cycles=300)


def test_pettingzoo_seed_test_passes() -> None:
    seed_test(KuhnPokerEnv, num_cycles=300)


def test_every_hand_ends_within_three_moves_whatever_the_text() -> None:
    # Why PettingZoo's max_cycles_test does not apply: it needs an episode that runs for
    # max_cycles cycles (4) under random actions, and a Kuhn hand ends after 2 or 3 moves; an
    # invalid action plays the default move, so random text cannot stall a hand either.
    env = KuhnPokerEnv()
    env.action_space("player_0").seed(0)
    lengths = Counter()
    for seed in range(200):
        env.reset(seed=seed)
        moves = 0
        for agent in env.agent_iter():
            _, _, terminated, truncated, _ = env.last()
            assert not truncated
            env.step(None if terminated else env.action_space(agent).sample())
            moves += not terminated
        assert env.agents == []
        lengths[moves] += 1
    assert set(lengths) == {2}  # random text: check (default), check (default)


def test_observations_are_text_observations_in_the_space_and_never_longer_than_256() -> None:
    longest = 0
    for deal, inputs in itertools.product(DEALS, _all_input_sequences()):
        env = _dealt(deal, max_text_length=256)
        for action in inputs:
            for agent in AGENTS:
                observation = env.observe(agent)
                assert isinstance(observation, TextObservation)
                assert env.observation_space(agent).contains(observation)
                longest = max(longest, len(observation))
            env.step(action)
        for agent in AGENTS:
            longest = max(longest, len(env.observe(agent)))
    assert longest <= 256


def test_the_observation_shows_the_card_the_betting_the_legal_moves_and_the_format() -> None:
    env = _dealt(("Q", "J"))
    env.step("check")
    text = env.observe("player_1")
    assert "Your card: J." in text
    assert "player_0 checks" in text
    assert "legal moves: check, bet" in text
    assert "<answer>MOVE</answer>" in text
    assert "Waiting for player_1" in env.observe("player_0")


def test_no_observation_or_info_reveals_the_other_card_before_a_showdown() -> None:
    # For each own card and betting sequence, both possible opponent cards look the same.
    for seat, inputs in itertools.product((0, 1), _all_input_sequences()):
        for own in RANK:
            seen = set()
            for other in (c for c in RANK if c != own):
                deal = (own, other) if seat == 0 else (other, own)
                env = _dealt(deal)
                views = []
                for action in [*inputs, None]:
                    history = env.infos[AGENTS[seat]]["history"]
                    if not (_hand_over(env) and history[-1] != "fold"):
                        info = repr(env.infos[AGENTS[seat]])
                        views.append((str(env.observe(AGENTS[seat])), info))
                    if action is not None and not _hand_over(env):
                        env.step(action)
                seen.add(tuple(views))
            assert len(seen) == 1, (seat, own, inputs)


# -- the rules --------------------------------------------------------------------------------


def test_payoff_matches_the_rules_for_every_deal_and_betting_sequence() -> None:
    for deal, history in itertools.product(DEALS, TERMINAL_HISTORIES):
        assert payoff(deal, history) == _rules(deal, history)
    assert len(DEALS) == 6
    assert set(TERMINAL_HISTORIES) == set(SHOWDOWN_STAKES) | set(FOLD_PAYS_PLAYER_0)


@pytest.mark.parametrize("deal", DEALS)
@pytest.mark.parametrize("history", TERMINAL_HISTORIES)
def test_each_legal_hand_pays_what_kuhn_poker_pays(
    deal: tuple[str, str], history: tuple[str, ...]
) -> None:
    env = _dealt(deal)
    actions = [
        f"<answer>{m}</answer>" if i % 2 else f" {m.upper()}\n" for i, m in enumerate(history)
    ]
    paid = _play(env, actions)
    chips = _rules(deal, history)
    assert paid == {"player_0": chips, "player_1": -chips}
    assert _hand_over(env)
    for seat, agent in enumerate(AGENTS):
        info = env.infos[agent]
        mine = chips if seat == 0 else -chips
        assert info["chips"] == mine
        assert info["history"] == history
        assert info["success"] is (mine > 0)
        assert all(info[key] for key in ("format_ok", "tool_correct", "exec_ok", "answer_correct"))
        assert not info["invalid_action"]
        assert info["legal_moves"] == ()
        assert f"You {'won' if mine > 0 else 'lost'} {abs(mine)} chip" in env.observe(agent)
    # Each agent then sees its accumulated reward once, and leaves.
    for agent in env.agent_iter():
        _, reward, terminated, _, _ = env.last()
        assert terminated
        assert reward == paid[agent]
        env.step(None)
    assert env.agents == []


def _all_input_sequences() -> list[list[str]]:
    """Every sequence of the four move words and a garbage text until the hand ends,
    following the documented rule (an invalid action plays check if legal, else fold)."""
    inputs = [*MOVES, GARBAGE]
    sequences = []
    stack: list[tuple[list[str], tuple[str, ...]]] = [([], ())]
    while stack:
        actions, history = stack.pop()
        if history in TERMINAL_HISTORIES:
            sequences.append(actions)
            continue
        for action in inputs:
            legal = legal_moves(history)
            move = action if action in legal else ("check" if "check" in legal else "fold")
            stack.append(([*actions, action], (*history, move)))
    return sequences


def test_every_action_sequence_in_every_deal_pays_the_rules_less_the_penalties() -> None:
    sequences = _all_input_sequences()
    assert len(sequences) == 41  # (4 x (4 + 5)) + 5: four inputs check, one bets
    for deal, actions in itertools.product(DEALS, sequences):
        env = _dealt(deal)
        history: tuple[str, ...] = ()
        penalties = dict.fromkeys(AGENTS, 0.0)
        paid = dict.fromkeys(AGENTS, 0.0)  # what last() hands each agent, summed
        for i, action in enumerate(actions):
            agent = env.agent_selection
            paid[agent] += env.last()[1]
            legal = legal_moves(history)
            valid = action in legal
            if not valid:
                penalties[agent] -= 0.1
            history = (*history, action if valid else ("check" if "check" in legal else "fold"))
            env.step(action)
            info = env.infos[agent]
            assert info["invalid_action"] is (not valid)
            assert info["format_ok"] is (penalties[agent] == 0.0)
            if i < len(actions) - 1:
                assert not _hand_over(env)
        assert _hand_over(env)
        chips = _rules(deal, history)
        for seat, agent in enumerate(AGENTS):
            info = env.infos[agent]
            assert info["history"] == history
            assert info["chips"] == (chips if seat == 0 else -chips)
        for agent in env.agent_iter():
            paid[agent] += env.last()[1]
            env.step(None)
        assert paid["player_0"] == pytest.approx(chips + penalties["player_0"])
        assert paid["player_1"] == pytest.approx(-chips + penalties["player_1"])


def test_an_invalid_action_costs_a_tenth_and_plays_check_or_fold() -> None:
    env = _dealt(("K", "J"))
    env.step("<answer>raise</answer>")
    info = env.infos["player_0"]
    assert env.rewards == {"player_0": -0.1, "player_1": 0.0}
    assert info["invalid_action"]
    assert info["invalid_reason"] == "unknown move 'raise': use one of check, bet"
    assert info["history"] == ("check",)
    assert not info["format_ok"]
    env.step("bet")
    assert "Your last reply was invalid (unknown move 'raise'" in env.observe("player_0")
    env.step('<tool_call>{"name": "calculator", "arguments": {}}</tool_call>')
    info = env.infos["player_0"]
    assert info["invalid_reason"] == "this game has no tools"
    assert not info["tool_correct"]
    assert info["history"] == ("check", "bet", "fold")
    assert not info["answer_correct"]
    assert not info["success"]  # the K folded
    assert env.infos["player_1"]["success"]
    assert env.rewards == {"player_0": -1.1, "player_1": 1.0}


@pytest.mark.parametrize(
    "action",
    [
        "bet",
        "BET",
        "  Bet\n",
        "<answer>bet</answer>",
        "<answer> BeT </answer>\n",
        "\t<answer>bet</answer>",
        "<think>K is the best card.</think>\n<answer>bet</answer>",
    ],
)
def test_moves_are_read_in_any_case_with_any_surrounding_whitespace(action: str) -> None:
    assert parse_move(action, ("check", "bet")).move == "bet"


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("call", "illegal move 'call': the legal moves are check, bet"),
        ("b e t", "expected <answer>MOVE</answer> with MOVE one of check, bet"),
        ("<answer>bet</answer> and more", "expected <answer>MOVE</answer> with MOVE one of"),
        ("<answer>bet</answer><answer>check</answer>", "expected <answer>MOVE</answer>"),
        ("<answer></answer>", "unknown move '': use one of check, bet"),
        ("x" * 300, "action longer than 256 characters"),
        (" bet" * 100, "action longer than 256 characters"),
    ],
)
def test_anything_else_is_an_invalid_action_with_its_reason(action: str, reason: str) -> None:
    parsed = parse_move(action, ("check", "bet"), max_length=256)
    assert parsed.move is None
    assert parsed.invalid_reason is not None
    assert parsed.invalid_reason.startswith(reason)


# -- text that never raises ------------------------------------------------------------------

written_moves = st.tuples(
    st.sampled_from(("", " ", "\n", "\t \n", "\u3000")),
    st.sampled_from(MOVES).flatmap(
        lambda m: st.sampled_from((m, m.upper(), m.title(), f" {m}\t", f"{m}.", f"'{m}'"))
    ),
    st.sampled_from(("", " ", "\n", "!")),
    st.booleans(),
)


def _written(before: str, word: str, after: str, tags: bool) -> str:
    return f"{before}<answer>{word}</answer>{after}" if tags else f"{before}{word}{after}"


moves_as_written = written_moves.map(lambda parts: _written(*parts))
texts = st.one_of(
    st.text(max_size=300),
    moves_as_written,
    st.text(max_size=40).map(lambda t: f"<answer>{t}</answer>"),
    st.text(max_size=40).map(lambda t: f"<think>{t}</think><answer>bet</answer>"),
    st.sampled_from(("<answer>", "</answer>", "<answer>bet", "<think>", "\x00", "💰", "")),
    st.integers(8_000, 9_000).map(lambda n: "bet" + " " * n),
    st.integers(1, 20_000).map(lambda n: "<answer>" + "call" * n + "</answer>"),
)


@given(seed=st.integers(0, 2**32 - 1), actions=st.lists(texts, min_size=3, max_size=3))
def test_any_text_is_a_move_or_an_invalid_action_never_raised(
    seed: int, actions: list[str]
) -> None:
    env = KuhnPokerEnv()
    env.reset(seed=seed)
    for action in actions:
        if _hand_over(env):
            break
        agent = env.agent_selection
        before = env.infos[agent]["history"]
        legal = env.infos[agent]["legal_moves"]
        env.step(action)
        info = env.infos[agent]
        assert info["history"][: len(before)] == before
        assert len(info["history"]) == len(before) + 1
        move = info["history"][-1]
        assert move in legal
        reward = env.rewards[agent]
        assert math.isfinite(reward)
        for key in METRIC_KEYS:
            assert type(info[key]) is bool, key
        if info["invalid_action"]:
            assert move == ("check" if "check" in legal else "fold")
            reason = info["invalid_reason"]
            assert isinstance(reason, str)
            assert reason
            assert "\n" not in reason
            assert len(reason) <= 120
        else:
            assert move in action.casefold()
        if not _hand_over(env):
            assert reward == (-0.1 if info["invalid_action"] else 0.0)
        for agent_ in env.agents:
            assert env.observation_space(agent_).contains(env.observe(agent_))
    assert len(env.infos["player_0"]["history"]) <= 3


@given(parts=written_moves, history=st.sampled_from(((), ("check",), ("bet",), ("check", "bet"))))
def test_a_move_is_valid_exactly_when_its_word_is_legal_whatever_the_case_and_spaces(
    parts: tuple[str, str, str, bool], history: tuple[str, ...]
) -> None:
    _, word, after, _ = parts
    legal = legal_moves(history)
    expected = word.strip().casefold() if after != "!" else None
    parsed = parse_move(_written(*parts), legal)
    assert parsed.move == (expected if expected in legal else None)


def test_a_non_str_action_raises_type_error_and_a_dead_step_needs_none() -> None:
    env = _dealt(("J", "Q"))
    with pytest.raises(TypeError, match="action must be a str"):
        env.step(3)  # type: ignore[arg-type]
    _play(env, ["bet", "fold"])
    with pytest.raises(ValueError, match="only valid action is None"):
        env.step("bet")


# -- seeds and snapshots ----------------------------------------------------------------------


def test_the_same_seed_deals_the_same_cards_and_touches_no_global_rng() -> None:
    python_state, numpy_state = random.getstate(), np.random.get_state()
    first, second = KuhnPokerEnv(), KuhnPokerEnv()
    deals = []
    for seed in range(600):
        first.reset(seed=seed)
        second.reset(seed=seed + 1)  # another env's stream does not change the first's
        second.reset(seed=seed)
        assert first.infos == second.infos
        assert first.observe("player_1") == second.observe("player_1")
        deals.append((first.infos["player_0"]["card"], first.infos["player_1"]["card"]))
    again = KuhnPokerEnv()
    for seed in (0, 7, 599):
        again.reset(seed=seed)
        assert (again.infos["player_0"]["card"], again.infos["player_1"]["card"]) == deals[seed]
    counts = Counter(deals)
    assert set(counts) == set(DEALS)
    assert min(counts.values()) >= 70  # 100 expected per deal
    # Unseeded resets continue the seeded stream: a fixed sequence after a seed.
    first.reset(seed=5)
    second.reset(seed=5)
    for _ in range(20):
        first.reset()
        second.reset()
        assert first.infos == second.infos
    assert random.getstate() == python_state
    after = np.random.get_state()
    assert after[0] == numpy_state[0]
    assert np.array_equal(after[1], numpy_state[1])


def _trace(env: KuhnPokerEnv, steps: list[str | None]) -> list[Any]:
    """Everything visible while ``steps`` are played (``None``: the dead steps at the end)."""
    trace = []
    for action in steps:
        agent = env.agent_selection
        observation, reward, terminated, truncated, info = env.last()
        views = [str(env.observe(a)) for a in AGENTS]
        trace.append((agent, str(observation), reward, terminated, truncated, repr(info), views))
        env.step(action)
        trace.append(
            (
                env.agent_selection,
                list(env.agents),
                dict(env.rewards),
                repr(env.infos),
                env.render(),
            )
        )
    return trace


@pytest.mark.parametrize("deal", DEALS)
def test_a_snapshot_continues_identically_in_this_env_or_another(deal: tuple[str, str]) -> None:
    for actions in _all_input_sequences():
        steps: list[str | None] = [*actions, None, None]
        for cut in range(len(steps) + 1):
            env = _dealt(deal, render_mode="ansi")
            for action in steps[:cut]:
                env.step(action)
            snapshot = env.get_state()
            assert isinstance(snapshot, KuhnSnapshot)
            hash(snapshot)
            assert pickle.loads(pickle.dumps(snapshot)) == snapshot
            expected = _trace(env, steps[cut:])
            assert env.agents == []
            env.reset(seed=123)  # play something else in between
            _play(env, ["bet"])
            env.set_state(snapshot)
            assert _trace(env, steps[cut:]) == expected
            other = KuhnPokerEnv(render_mode="ansi")
            other.set_state(snapshot)
            assert _trace(other, steps[cut:]) == expected


def test_set_state_refuses_anything_but_a_snapshot() -> None:
    env = _dealt(("K", "Q"))
    with pytest.raises(TypeError, match="KuhnSnapshot"):
        env.set_state(env.get_state().state)  # type: ignore[arg-type]


# -- arguments --------------------------------------------------------------------------------


def test_render_ansi_shows_the_hand_and_none_renders_nothing() -> None:
    env = _dealt(("Q", "K"), render_mode="ansi")
    _play(env, ["check", "blah"])
    assert env.render() == (
        "deal: player_0 Q, player_1 K\n"
        "player_0 checks\n"
        "player_1 checks (invalid action: expected <answer>MOVE</answer> with MOVE one of "
        "check, bet)\n"
        "result: player_0 -1, player_1 +1"
    )
    assert _dealt(("Q", "K")).render() is None


@pytest.mark.parametrize(
    "kwargs", [{"render_mode": "human"}, {"max_text_length": 255}, {"max_text_length": True}]
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="KuhnPoker"):
        KuhnPokerEnv(**kwargs)


@pytest.mark.parametrize("deal", [("K", "K"), ("K",), "KQ", ("A", "K"), None, (1, 2)])
def test_a_bad_deal_option_raises_config_error(deal: Any) -> None:
    with pytest.raises(ConfigError, match="reset option deal"):
        KuhnPokerEnv().reset(seed=0, options={"deal": deal})


def test_reset_before_observe_is_needed_and_unknown_options_are_ignored() -> None:
    env = KuhnPokerEnv()
    with pytest.raises(ResetNeeded, match="reset"):
        env.observe("player_0")
    env.reset(seed=0, options={"options": 1})
    assert env.agents == list(AGENTS)


# -- the solver -------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", ALPHAS)
def test_every_equilibrium_is_worth_minus_one_eighteenth_and_unexploitable(alpha: float) -> None:
    eq = equilibrium_strategy(alpha)
    assert expected_value(eq, eq) == pytest.approx(-1 / 18, abs=1e-12)
    assert pytest.approx(-1 / 18) == GAME_VALUE
    assert exploitability((eq, eq)) == pytest.approx(0.0, abs=1e-9)
    assert best_response_value(eq, 0) == pytest.approx(-1 / 18, abs=1e-12)
    assert best_response_value(eq, 1) == pytest.approx(1 / 18, abs=1e-12)
    for beta in (0.0, 1 / 3):  # equilibria are interchangeable
        other = equilibrium_strategy(beta)
        assert expected_value(eq, other) == pytest.approx(-1 / 18, abs=1e-12)
        assert exploitability((eq, other)) == pytest.approx(0.0, abs=1e-9)


def test_scripted_strategies_are_exploitable_by_known_amounts() -> None:
    random_, always = random_strategy(), always_bet_strategy()
    # Uniform random: 11/24 (OpenSpiel reports 0.4583 for Kuhn's uniform random policy).
    assert exploitability((random_, random_)) == pytest.approx(11 / 24, abs=1e-12)
    assert exploitability((always, always)) == pytest.approx(1 / 3, abs=1e-12)
    assert exploitability((random_, always)) > 0.3
    assert set(SCRIPTED_STRATEGIES) == {"random", "always_bet", "equilibrium"}
    # Leaving the equilibrium is exploitable: player_0 bluffing J more than 1/3 of the time.
    off = equilibrium_strategy(1 / 3).with_seat(0, {**equilibrium_strategy(1 / 3), ("J", ()): 0.6})
    assert exploitability((off, off)) > 0.01


def _pure_strategies(base: Strategy, seat: int) -> list[Strategy]:
    sets = [s for s in INFO_SETS if s[1] in SEAT_HISTORIES[seat]]
    return [
        base.with_seat(seat, {**base, **dict(zip(sets, bits, strict=True))})
        for bits in itertools.product((0.0, 1.0), repeat=len(sets))
    ]


def _random_strategies(n: int, seed: int) -> list[Strategy]:
    rng = np.random.default_rng(seed)
    return [
        Strategy(dict(zip(INFO_SETS, rng.random(len(INFO_SETS)).tolist(), strict=True)))
        for _ in range(n)
    ]


def test_best_response_is_the_best_of_all_64_pure_strategies() -> None:
    strategies = [random_strategy(), always_bet_strategy(), *_random_strategies(15, seed=1)]
    for strategy in strategies:
        for seat in (0, 1):
            sign = 1 if seat == 0 else -1
            values = [
                sign * (expected_value(p, strategy) if seat == 0 else expected_value(strategy, p))
                for p in _pure_strategies(strategy, seat)
            ]
            assert len(values) == 64
            value = best_response_value(strategy, seat)
            assert value == pytest.approx(max(values), abs=1e-12)
            response = best_response(strategy, seat)
            played = (
                expected_value(response, strategy)
                if seat == 0
                else -expected_value(strategy, response)
            )
            assert played == pytest.approx(value, abs=1e-12)


def test_exploitability_is_never_negative() -> None:
    strategies = _random_strategies(40, seed=2)
    for s0, s1 in itertools.pairwise(strategies):
        assert exploitability((s0, s1)) >= -1e-12
        assert best_response_value(s1, 0) >= expected_value(s0, s1) - 1e-12
        assert best_response_value(s0, 1) >= -expected_value(s0, s1) - 1e-12


@pytest.mark.parametrize(
    "bad",
    [
        {},
        dict.fromkeys(INFO_SETS, 1.5),
        dict.fromkeys(INFO_SETS, math.nan),
        {**dict.fromkeys(INFO_SETS, 0.5), ("A", ()): 0.5},
        {**dict.fromkeys(INFO_SETS, 0.5), "K": 0.5},
    ],
)
def test_a_malformed_strategy_is_a_value_error(bad: dict[Any, float]) -> None:
    with pytest.raises(ValueError, match=r"information set|probability"):
        Strategy(bad)


@pytest.mark.parametrize("alpha", [-0.01, 0.34, math.nan, True, "1/6"])
def test_alpha_outside_zero_to_one_third_is_a_value_error(alpha: Any) -> None:
    with pytest.raises(ValueError, match="alpha must be in"):
        equilibrium_strategy(alpha)


# -- strategies played through the text env --------------------------------------------------


@pytest.mark.parametrize(
    ("name_0", "strategy_0", "name_1", "strategy_1"),
    [
        ("eq(1/6)", equilibrium_strategy(1 / 6), "eq(0)", equilibrium_strategy(0.0)),
        ("random", random_strategy(), "always_bet", always_bet_strategy()),
        ("always_bet", always_bet_strategy(), "eq(1/3)", equilibrium_strategy(1 / 3)),
    ],
)
def test_the_text_env_played_by_two_strategies_matches_the_exact_value(
    name_0: str, strategy_0: Strategy, name_1: str, strategy_1: Strategy
) -> None:
    env = KuhnPokerEnv()
    players = {
        "player_0": StrategyPolicy(strategy_0, seed=1),
        "player_1": StrategyPolicy(strategy_1, seed=2),
    }
    hands = 3_000
    chips = []
    for hand in range(hands):
        env.reset(seed=hand)
        for seat, agent in enumerate(AGENTS):
            players[agent].reset(seed=10_000 * seat + hand)
        for agent in env.agent_iter():
            observation, reward, terminated, _, info = env.last()
            if terminated:
                if agent == "player_0":
                    chips.append(info["chips"])
                    assert reward == info["chips"]  # the adapters never send invalid text
                env.step(None)
            else:
                env.step(players[agent].act(observation, info))
    mean, sd = float(np.mean(chips)), float(np.std(chips))
    exact = expected_value(strategy_0, strategy_1)
    # 4 standard errors: the hands are seeded, so this is a fixed check, not a flaky one.
    assert abs(mean - exact) < 4 * sd / math.sqrt(hands) + 1e-9, (name_0, name_1, mean, exact)


def test_a_strategy_policy_refuses_to_act_out_of_turn_and_batches() -> None:
    env = _dealt(("K", "Q"))
    policy = StrategyPolicy(always_bet_strategy())
    with pytest.raises(ValueError, match="no legal move"):
        policy.act(env.observe("player_1"), env.infos["player_1"])
    observation = env.observe("player_0")
    assert policy.act_batch([observation], [env.infos["player_0"]]) == ["<answer>bet</answer>"]


def test_strategy_policies_with_the_same_seed_play_the_same_moves() -> None:
    env = _dealt(("Q", "J"))
    observation, info = env.observe("player_0"), env.infos["player_0"]
    info = {**info, "history": ("check", "bet"), "legal_moves": ("call", "fold")}
    first, second = StrategyPolicy(random_strategy(), seed=4), StrategyPolicy(random_strategy())
    second.reset(seed=4)
    moves = [first.act(observation, info) for _ in range(50)]
    assert moves == [second.act(observation, info) for _ in range(50)]
    assert set(moves) == {"<answer>call</answer>", "<answer>fold</answer>"}
