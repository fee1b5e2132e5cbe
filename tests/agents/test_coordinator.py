"""The multi-agent coordinator on real envs: Kuhn poker with scripted players, MALT-v0 with its
scripted oracle team, and the tiny LLM in both seats.

The scripted players are real policies (subclasses of the solver's ``StrategyPolicy`` that keep
one generator per slot and log their calls); the expected results come from playing the same
hands with the plain PettingZoo loop (``env.agent_iter()``), not from the coordinator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import llm_trainer
from llm_trainer.agents import (
    MALTOracle,
    MultiAgentCoordinator,
    MultiAgentEpisode,
    play_multiagent,
)
from llm_trainer.core.errors import BackendError, BatchActError, ConfigError
from llm_trainer.core.seeding import derive_seed
from llm_trainer.envs.multiagent.kuhn import AGENTS, KuhnPokerEnv
from llm_trainer.envs.multiagent.kuhn_solver import (
    Strategy,
    StrategyPolicy,
    equilibrium_strategy,
    random_strategy,
)
from llm_trainer.envs.multiagent.malt import AGENTS as MALT_AGENTS
from llm_trainer.envs.multiagent.malt import MALTEnv

SEEDS = list(range(12))


class RecordingPlayer(StrategyPolicy):
    """A Kuhn player with one generator per slot (so its draws do not depend on which envs
    share a batch) that logs every call: ``(method, [(agent, env_index), ...])``."""

    def __init__(self, strategy: Strategy, log: list[tuple[str, list[tuple[str, int]]]]) -> None:
        super().__init__(strategy)
        self.log = log
        self.rngs: dict[int, np.random.Generator] = {}
        self.ended: list[tuple[int, float, bool]] = []

    def reset(self, *, seed: int | None = None, slot: int | None = None) -> None:
        assert slot is not None
        assert seed is not None
        self.rngs[slot] = np.random.default_rng(seed)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        self.log.append(("act", [(info["agent"], info["env_index"])]))
        return self.move(observation, info)

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        self.log.append(("act_batch", [(i["agent"], i["env_index"]) for i in infos]))
        return [self.move(o, i) for o, i in zip(observations, infos, strict=True)]

    def move(self, observation: str, info: Mapping[str, Any]) -> str:
        self._rng = self.rngs[info["slot"]]
        return StrategyPolicy.act(self, observation, info)

    def end_episode(
        self, info: Mapping[str, Any], *, reward: float, slot: int, env_id: str
    ) -> None:
        self.ended.append((slot, reward, bool(info["success"])))


class JackShy(RecordingPlayer):
    """Fails (as a batched LLM backend would) on every entry where it holds the J."""

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        if info["card"] == "J":
            raise BackendError("no completion for the J")
        return super().act(observation, info)

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        actions = super().act_batch(observations, infos)
        errors = {i["slot"]: BackendError("no completion") for i in infos if i["card"] == "J"}
        if not errors:
            return actions
        kept = [None if i["slot"] in errors else a for a, i in zip(actions, infos, strict=True)]
        raise BatchActError("some slots failed", actions=kept, errors=errors)


class BrokenKuhn(KuhnPokerEnv):
    """Kuhn poker whose reset fails for seed 5 and whose step fails when the deal is Q, J."""

    def reset(self, seed: int | None = None, options: Mapping[str, Any] | None = None) -> None:
        if seed == 5:
            raise RuntimeError("no deck for seed 5")
        super().reset(seed=seed, options=options)

    def step(self, action: str | None) -> None:
        if action is not None and self.get_state().state.deal == ("Q", "J"):
            raise RuntimeError("the table collapsed")
        super().step(action)


def players(
    log: list[tuple[str, list[tuple[str, int]]]], cls: type[RecordingPlayer] = RecordingPlayer
) -> dict[str, RecordingPlayer]:
    return {
        "player_0": RecordingPlayer(equilibrium_strategy(0.2), log),
        "player_1": cls(random_strategy(), log),
    }


def direct_play(seed: int) -> tuple[list[tuple[str, str]], dict[str, float], tuple[str, str]]:
    """The hand of ``seed`` through the plain AEC loop, each seat drawing from
    ``derive_seed(seed, agent)`` as the coordinator seeds it: (agent, action) in order, the
    sum of each agent's ``last()`` rewards, and the deal."""
    env = KuhnPokerEnv()
    env.reset(seed=seed)
    strategies = {"player_0": equilibrium_strategy(0.2), "player_1": random_strategy()}
    seats = {a: StrategyPolicy(strategies[a], seed=derive_seed(seed, a)) for a in AGENTS}
    order: list[tuple[str, str]] = []
    returns = dict.fromkeys(AGENTS, 0.0)
    deal = env.get_state().state.deal
    for agent in env.agent_iter():
        observation, reward, terminated, truncated, info = env.last()
        returns[agent] += reward
        if terminated or truncated:
            env.step(None)
            continue
        action = seats[agent].act(observation, info)
        order.append((agent, action))
        env.step(action)
    return order, returns, deal


def fingerprint(episode: MultiAgentEpisode) -> str:
    """Everything deterministic about an episode but the env's name, as one string."""
    return json.dumps(
        {
            "seed": episode.seed,
            "error": episode.error,
            "trajectories": {
                a: {**t.to_dict(), "env_id": None} for a, t in episode.trajectories.items()
            },
            "transcript": [
                (e.agent, e.action, e.reward, dict(e.rewards)) for e in episode.transcript
            ],
            "returns": dict(episode.returns),
        },
        sort_keys=True,
    )


def play_kuhn(
    num_envs: int, seeds: Sequence[int] = SEEDS, **kwargs: Any
) -> list[MultiAgentEpisode]:
    log: list[tuple[str, list[tuple[str, int]]]] = []
    return play_multiagent(
        "LLMTrainer/KuhnPoker-v0", players(log), seeds, num_envs=num_envs, **kwargs
    )


def simulated_calls(lengths: Sequence[int], num_envs: int, shared: bool) -> list[tuple[str, int]]:
    """The calls lockstep must make for Kuhn hands of these lengths (2 or 3 moves, seats
    alternating from player_0): each round every busy env acts once, envs that finish take
    the next hand in env order, one call per policy per round (``act`` for one entry)."""
    queue = list(lengths)
    envs: list[list[int]] = [[queue.pop(0), 0] if queue else [0, 0] for _ in range(num_envs)]
    calls = []
    while any(length for length, _ in envs):
        waiting = [AGENTS[moved % 2] for length, moved in envs if length]
        groups = [waiting] if shared else [[a for a in waiting if a == x] for x in AGENTS]
        for group in (g for g in groups if g):
            calls.append(("act" if len(group) == 1 else "act_batch", len(group)))
        for state in envs:
            if state[0]:
                state[1] += 1
                if state[1] == state[0]:
                    state[:] = [queue.pop(0), 0] if queue else [0, 0]
    return calls


# -- Kuhn poker with scripted players ---------------------------------------------------------


def test_episodes_match_the_plain_aec_loop_hand_by_hand() -> None:
    episodes = play_kuhn(num_envs=4)
    assert [e.seed for e in episodes] == SEEDS
    for episode in episodes:
        order, returns, deal = direct_play(episode.seed)
        assert episode.error is None
        assert [(e.agent, e.action) for e in episode.transcript] == order
        assert dict(episode.returns) == returns
        for agent, trajectory in episode.trajectories.items():
            own = [e.action for e in episode.transcript if e.agent == agent]
            assert [s.action for s in trajectory.steps] == own
            assert trajectory.total_reward == returns[agent]  # per-agent steps sum to the env's
            assert trajectory.prompt.startswith(f"You are {agent}")
            assert f"Your card: {deal[AGENTS.index(agent)]}." in trajectory.prompt
            assert trajectory.steps[-1].terminated
            assert "Hand over" in trajectory.steps[-1].observation
            assert trajectory.steps[-1].metrics["success"] == (returns[agent] > 0)
            assert trajectory.env_id == "LLMTrainer/KuhnPoker-v0"
            assert trajectory.seed == episode.seed
            assert not trajectory.steps[-1].completion_token_ids  # scripted: no tokens
            assert episode.final_infos[agent]["chips"] == returns[agent]
            assert episode.usage[agent] is None
        assert sum(episode.returns.values()) == 0  # zero-sum, no invalid actions
        # the transcript's per-step rewards add up to each agent's return too
        for agent in AGENTS:
            assert sum(e.rewards.get(agent, 0.0) for e in episode.transcript) == returns[agent]


def test_same_seeds_give_identical_episodes_whatever_num_envs() -> None:
    reference = [fingerprint(e) for e in play_kuhn(num_envs=4)]
    assert [fingerprint(e) for e in play_kuhn(num_envs=4)] == reference
    for num_envs in (1, 3, 12):
        assert [fingerprint(e) for e in play_kuhn(num_envs=num_envs)] == reference
    other = [fingerprint(e) for e in play_kuhn(num_envs=4, seeds=[s + 100 for s in SEEDS])]
    assert other != reference


def test_one_call_per_role_per_round_with_every_waiting_env_in_it() -> None:
    log: list[tuple[str, list[tuple[str, int]]]] = []
    team = players(log)
    with MultiAgentCoordinator(KuhnPokerEnv, team, num_envs=8) as coordinator:
        episodes = coordinator.play(SEEDS[:8])
        lengths = [len(e.transcript) for e in episodes]
        assert [(m, len(entries)) for m, entries in log] == simulated_calls(lengths, 8, False)
        assert log[0] == ("act_batch", [("player_0", k) for k in range(8)])
        assert log[1] == ("act_batch", [("player_1", k) for k in range(8)])
        log.clear()
        episodes = coordinator.play(SEEDS)  # 12 hands on 8 envs: the envs get out of phase
    lengths = [len(e.transcript) for e in episodes]
    assert [(m, len(entries)) for m, entries in log] == simulated_calls(lengths, 8, False)
    for _, entries in log:
        assert len({env for _, env in entries}) == len(entries)  # an env acts once per call
        assert len({agent for agent, _ in entries}) == 1  # one role per call
    assert sum(len(entries) for _, entries in log) == sum(lengths)
    # end_episode once per agent per hand, with its return
    ended = team["player_1"].ended[-len(SEEDS) :]
    assert sorted(r for _, r, _ in ended) == sorted(e.returns["player_1"] for e in episodes)


def test_a_policy_in_both_seats_gets_one_batch_per_round() -> None:
    log: list[tuple[str, list[tuple[str, int]]]] = []
    shared = RecordingPlayer(random_strategy(), log)
    seats = {"player_0": shared, "player_1": shared}
    episodes = play_multiagent(KuhnPokerEnv, seats, SEEDS, num_envs=5)
    lengths = [len(e.transcript) for e in episodes]
    assert [(m, len(entries)) for m, entries in log] == simulated_calls(lengths, 5, True)
    assert any(len({a for a, _ in entries}) == 2 for _, entries in log)  # seats merged
    # every (env, seat) is its own slot: 5 envs x 2 seats
    assert sorted(shared.rngs) == list(range(10))
    for episode in episodes:
        assert sum(episode.returns.values()) == 0


def test_an_agent_failing_on_one_slot_fails_only_that_episode() -> None:
    clean = {e.seed: fingerprint(e) for e in play_kuhn(num_envs=4)}
    for num_envs in (1, 4):  # ``act`` raising, and a batch raising BatchActError
        log: list[tuple[str, list[tuple[str, int]]]] = []
        episodes = play_multiagent(KuhnPokerEnv, players(log, JackShy), SEEDS, num_envs=num_envs)
        failed = {e.seed for e in episodes if e.error is not None}
        jacks = {s for s in SEEDS if direct_play(s)[2][1] == "J"}
        assert failed == jacks
        assert 0 < len(failed) < len(SEEDS)
        for episode in episodes:
            if episode.error is None:
                assert fingerprint(episode) == clean[episode.seed]
                continue
            assert episode.error.startswith("player_1's policy: BackendError")
            assert all(t.error == episode.error for t in episode.trajectories.values())
            assert [e.agent for e in episode.transcript] == ["player_0"]  # the bet or check


def test_an_env_failing_on_one_episode_fails_only_that_episode() -> None:
    clean = {e.seed: fingerprint(e) for e in play_kuhn(num_envs=3)}
    log: list[tuple[str, list[tuple[str, int]]]] = []
    episodes = play_multiagent(BrokenKuhn, players(log), SEEDS, num_envs=3)
    broken = {s for s in SEEDS if s != 5 and direct_play(s)[2] == ("Q", "J")}
    assert broken
    for episode in episodes:
        if episode.seed == 5:
            assert episode.error == "env: RuntimeError: no deck for seed 5"
            assert not episode.transcript
        elif episode.seed in broken:
            assert episode.error == "env: RuntimeError: the table collapsed"
        else:
            assert episode.error is None
            assert fingerprint(episode) == clean[episode.seed]


def test_a_user_error_stops_the_run() -> None:
    class Misconfigured(RecordingPlayer):
        def act_batch(
            self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
        ) -> list[str]:
            raise ConfigError("sampling.temperature must be >= 0")

    log: list[tuple[str, list[tuple[str, int]]]] = []
    seats = {
        "player_0": RecordingPlayer(random_strategy(), log),
        "player_1": Misconfigured(random_strategy(), log),
    }
    with pytest.raises(ConfigError, match="temperature"):
        play_multiagent(KuhnPokerEnv, seats, SEEDS, num_envs=4)


def test_an_episode_past_max_actions_is_recorded_as_failed() -> None:
    episodes = play_kuhn(num_envs=4, max_actions=2)
    for episode in episodes:
        long = len(direct_play(episode.seed)[0]) == 3
        assert (episode.error is not None) == long
        if long:
            assert episode.error == "the episode did not end within 2 actions"


def test_trainable_and_frozen_agents_are_marked() -> None:
    log: list[tuple[str, list[tuple[str, int]]]] = []
    with MultiAgentCoordinator(
        KuhnPokerEnv, players(log), trainable={"player_0"}, num_envs=2
    ) as coordinator:
        assert coordinator.frozen == {"player_1"}
        episodes = coordinator.play([0, 1, 2])
    for episode in episodes:
        assert episode.trainable == {"player_0"}
        assert episode.frozen == {"player_1"}
        assert episode.is_trainable("player_0")
        assert not episode.is_trainable("player_1")
        assert list(episode.trainable_trajectories()) == ["player_0"]
        assert episode.agents == AGENTS
        assert [t.source for t in episode.trajectories.values()] == [
            "policy:player_0",
            "policy:player_1",
        ]
    with pytest.raises(KeyError, match="player_2"):
        episodes[0].is_trainable("player_2")
    everyone = play_multiagent(KuhnPokerEnv, players(log), [0], trainable=AGENTS)
    assert everyone[0].trainable == set(AGENTS)
    assert play_multiagent(KuhnPokerEnv, players(log), [0])[0].trainable == set()


def test_bad_arguments_are_refused_in_one_line() -> None:
    log: list[tuple[str, list[tuple[str, int]]]] = []
    with pytest.raises(ValueError, match=r"missing \['player_1'\]"):
        MultiAgentCoordinator(KuhnPokerEnv, {"player_0": players(log)["player_0"]})
    with pytest.raises(ValueError, match=r"unknown \['dealer'\]"):
        MultiAgentCoordinator(KuhnPokerEnv, {**players(log), "dealer": players(log)["player_0"]})
    with pytest.raises(ValueError, match="trainable names unknown agents"):
        MultiAgentCoordinator(KuhnPokerEnv, players(log), trainable={"player_3"})
    with pytest.raises(TypeError, match="set of agent names"):
        MultiAgentCoordinator(KuhnPokerEnv, players(log), trainable="player_0")
    with pytest.raises(ValueError, match="num_envs must be an int >= 1"):
        MultiAgentCoordinator(KuhnPokerEnv, players(log), num_envs=0)
    with pytest.raises(TypeError, match="is not a Policy"):
        MultiAgentCoordinator(KuhnPokerEnv, {"player_0": object(), "player_1": object()})
    with pytest.raises(TypeError, match="PettingZoo AEC envs"):
        MultiAgentCoordinator(lambda: llm_trainer.make("LLMTrainer/Calculator-v0"), {})
    with pytest.raises(ValueError, match="env_kwargs go with a registered env id"):
        MultiAgentCoordinator(KuhnPokerEnv, players(log), env_kwargs={"max_text_length": 300})
    with pytest.raises(TypeError, match="seeds must be ints"):
        play_multiagent(KuhnPokerEnv, players(log), ["0"])  # type: ignore[list-item]
    assert play_multiagent(KuhnPokerEnv, players(log), []) == []


# -- MALT-v0 with its scripted oracle team ----------------------------------------------------


class OracleRole:
    """One MALT role played by ``MALTOracle``s bound to the coordinator's envs, routed by
    ``info["env_index"]``; logs each call's batch size."""

    def __init__(self, envs: Sequence[Any], role: str, log: list[tuple[str, int]]) -> None:
        self.oracles = [MALTOracle(env, role) for env in envs]
        self.role, self.log = role, log

    def reset(self, *, seed: int | None = None) -> None:
        """Nothing to reset: the oracle reads the episode from its env."""

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        self.log.append((self.role, len(infos)))
        return [
            self.oracles[i["env_index"]].act(o, i) for o, i in zip(observations, infos, strict=True)
        ]


def test_malt_team_through_the_coordinator_routes_the_env_protocol() -> None:
    log: list[tuple[str, int]] = []

    def team(envs: Sequence[Any]) -> dict[str, OracleRole]:
        return {role: OracleRole(envs, role, log) for role in MALT_AGENTS}

    episodes = play_multiagent(
        "LLMTrainer/MALT-v0",
        team,
        list(range(6)),
        num_envs=3,
        env_kwargs={"max_cycles": 2},
        trainable={"generator", "refiner"},
    )
    # 2 batches of 3 episodes x 2 rounds x 3 roles: one call per role per round, 3 entries
    assert log == [(role, 3) for _ in range(4) for role in MALT_AGENTS]
    for episode in episodes:
        assert episode.error is None
        assert episode.env_id == "LLMTrainer/MALT-v0"
        assert [e.agent for e in episode.transcript] == list(MALT_AGENTS) * 2
        assert dict(episode.returns) == dict.fromkeys(MALT_AGENTS, 1.0)
        assert episode.frozen == {"verifier"}
        assert set(episode.trainable_trajectories()) == {"generator", "refiner"}
        env = MALTEnv(max_cycles=2)
        env.reset(seed=episode.seed)
        question = env.task.statement
        for role, trajectory in episode.trajectories.items():
            assert len(trajectory.steps) == 2
            assert trajectory.total_reward == 1.0
            assert trajectory.prompt.startswith(f"Question:\n{question}")
            assert trajectory.system_prompt.startswith(f"You are the {role}")
            assert episode.final_infos[role]["refiner_correct"] is True
        # what each role saw is the env's protocol: the verifier the solution, the refiner
        # the solution and the critique; the generator its own earlier round in round 2
        generator, verifier, refiner = (episode.trajectories[r] for r in MALT_AGENTS)
        solution = episode.transcript[0].action
        assert f"Proposed solution:\n{solution}" in verifier.prompt
        assert f"Critique:\n{MALTOracle.VERDICT}" in refiner.prompt
        assert "Your previous solution:" in generator.steps[0].observation


# -- the tiny LLM in both seats ---------------------------------------------------------------


def test_a_tiny_llm_plays_both_seats_with_token_records(tmp_path: Path) -> None:
    from llm_trainer.agents.tinylm import TinyLMConfig
    from llm_trainer.algorithms.config import ModelConfig
    from llm_trainer.algorithms.evaluation import model_agent
    from llm_trainer.algorithms.models import load_model

    tiny = TinyLMConfig(n_layers=1, hidden_size=64, n_heads=2, intermediate_size=128)
    model, tokenizer = load_model(ModelConfig(tiny=tiny), tmp_path / "model")
    agent = model_agent(model, tokenizer, max_new_tokens=6)
    seeds = [0, 1, 2, 3]
    episodes = play_multiagent(
        KuhnPokerEnv,
        {"player_0": agent, "player_1": agent},
        seeds,
        num_envs=4,
        trainable=AGENTS,
    )
    for episode in episodes:
        assert episode.error is None
        for seat, trajectory in episode.trajectories.items():
            assert trajectory.steps
            usage = episode.usage[seat]
            assert usage is not None
            assert usage.completion_tokens == sum(
                len(s.completion_token_ids) for s in trajectory.steps
            )
            for step in trajectory.steps:
                assert step.prompt_token_ids
                assert step.completion_token_ids
                assert len(step.logprobs) == len(step.completion_token_ids)
                # the seat's own conversation: one agent, two slots that never mix
                prompt = tokenizer.decode(step.prompt_token_ids)
                assert f"You are {seat}" in prompt
                assert f"You are {AGENTS[1 - AGENTS.index(seat)]}" not in prompt
            assert trajectory.total_reward == pytest.approx(episode.returns[seat])
