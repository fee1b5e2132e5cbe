"""The search finds what greedy misses, plays two-player games by negamax without reading the
hidden card, batches its leaves into one generation call, reflects on failures in later
prompts, and acts as a policy wherever one runs (the engine, ``llm-trainer evaluate``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

import llm_trainer
from llm_trainer.agents.factory import make_agent
from llm_trainer.agents.memory import TRUNCATION_MARK
from llm_trainer.algorithms.rollout import collect
from llm_trainer.algorithms.search import (
    MCTS,
    FeedbackReflector,
    GreedyPolicy,
    KnapsackProposer,
    LegalMovesProposer,
    LLMProposer,
    MCTSAgent,
    MCTSConfig,
    RolloutValue,
    SearchPolicy,
    search_env,
)
from llm_trainer.algorithms.search.context import REFLECTIONS_HEADER
from llm_trainer.cli import app
from llm_trainer.core.errors import ConfigError

SEEDS = list(range(20))


@pytest.mark.parametrize("value", ["terminal", "rollout"])
def test_a_scripted_proposer_finds_through_search_the_optimum_its_greedy_play_misses(
    value: str,
) -> None:
    greedy = collect(
        "LLMTrainer/Knapsack-v0", lambda envs: GreedyPolicy(KnapsackProposer()), SEEDS, num_envs=4
    )
    missed = [t.seed for t in greedy if not t.metrics["answer_correct"]]
    assert len(missed) >= 3, "greedy fills should miss the optimum of some instances"
    assert all(t.total_reward < 1.0 for t in greedy if t.seed in missed)

    def searcher(envs: list[Any]) -> MCTSAgent:
        estimator = RolloutValue(KnapsackProposer()) if value == "rollout" else None
        config = MCTSConfig(simulations=32, batch_size=4)
        return MCTSAgent(envs, KnapsackProposer(), estimator=estimator, config=config)

    searched = collect("LLMTrainer/Knapsack-v0", searcher, missed, num_envs=4, source="mcts")
    assert [t.total_reward for t in searched] == pytest.approx([1.0] * len(missed))
    assert all(t.metrics["answer_correct"] and t.error is None for t in searched)


def _kuhn_decision(deal: tuple[str, str], moves: list[str], **agent: Any) -> tuple[str, Any]:
    env = llm_trainer.make_multiagent("LLMTrainer/KuhnPoker-v0")
    env.reset(seed=0, options={"deal": deal})
    for move in moves:
        env.step(f"<answer>{move}</answer>")
    observation, _, _, _, info = env.last()
    searcher = MCTSAgent(env, LegalMovesProposer(), config=MCTSConfig(simulations=64), **agent)
    action = searcher.act(observation, info)
    return action, searcher.last_search


@pytest.mark.parametrize(
    ("deal", "moves", "best"),
    [
        (("J", "K"), [], "check"),  # bet: called, -2; check: -1 at worst
        (("K", "Q"), ["bet"], "fold"),  # player_1 facing a bet with the lower card
        (("J", "K"), ["bet"], "call"),  # player_1 facing a bet with the higher card
        (("Q", "J"), ["check", "bet"], "call"),  # player_0 facing a bet, higher card
    ],
)
def test_negamax_search_plays_the_best_move_for_the_player_to_move_with_the_cards_known(
    deal: tuple[str, str], moves: list[str], best: str
) -> None:
    action, search = _kuhn_decision(deal, moves)
    assert action == f"<answer>{best}</answer>"
    values = {c.action: c.value for c in search.children}
    assert max(values, key=values.__getitem__) == action


def test_with_determinization_the_search_never_reads_the_opponents_card() -> None:
    from llm_trainer.algorithms.search.agent import kuhn_determinize

    decisions = []
    for deal in (("Q", "J"), ("Q", "K")):  # player_0 holds Q: J or K must change nothing
        env = llm_trainer.make_multiagent("LLMTrainer/KuhnPoker-v0")
        env.reset(seed=0, options={"deal": deal})
        observation, _, _, _, info = env.last()
        before = env.unwrapped.get_state()
        agent = make_agent("mcts:simulations=32,trees=6:legal_moves", env, seed=3)
        assert isinstance(agent, MCTSAgent)
        assert agent.runner.determinize is kuhn_determinize
        assert agent.envs[0] is not env.unwrapped  # it searches a private copy of the game
        action = agent.act(observation, info)
        assert env.unwrapped.get_state() == before
        assert agent.last_search is not None
        decisions.append((action, agent.last_search.children))
    assert decisions[0] == decisions[1]


def test_the_mcts_agent_plays_kuhn_poker_in_the_coordinator_and_beats_a_random_player() -> None:
    from llm_trainer.agents.coordinator import play_multiagent

    def players(envs: list[Any]) -> dict[str, Any]:
        return {
            "player_0": make_agent("mcts:simulations=24,trees=4:legal_moves", envs[0], seed=0),
            "player_1": make_agent("kuhn:random", envs[0], seed=0),
        }

    hands = play_multiagent("LLMTrainer/KuhnPoker-v0", players, list(range(40)), num_envs=4)
    assert all(h.error is None for h in hands)
    assert sum(h.returns["player_0"] for h in hands) > 0


def test_an_llm_proposer_expands_every_leaf_of_a_batch_in_one_generation_call(
    small_backend: Any,
) -> None:
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    observation, info = env.reset(seed=2)
    calls = {}
    for batch_size in (1, 6):
        proposer = LLMProposer(small_backend, max_new_tokens=8)
        config = MCTSConfig(simulations=12, batch_size=batch_size, candidates=3)
        result = MCTS(search_env(env), proposer, config=config).search(observation, info)
        assert result.simulations == 12
        assert result.proposer_calls == proposer.calls
        # one call expands the root, then one call per batch expands all of its new leaves
        assert result.expansions == result.nodes - sum(n.terminal for n in result.root.walk())
        if batch_size == 1:
            assert result.proposer_calls == 1 + result.expansions - 1
        calls[batch_size] = result.proposer_calls
        priors = SearchPolicy().priors(result.root)
        assert sum(priors) == pytest.approx(1.0)
        actions = [c.action for c in result.root.children]
        assert len(set(actions)) == len(actions)  # deduplicated
    assert calls[6] <= calls[1] / 2


def test_reflections_on_failed_leaves_reach_the_prompts_of_later_expansions(
    small_backend: Any,
) -> None:
    # a 2-step time limit: every leaf two steps down ends the episode unsolved
    env = llm_trainer.make("LLMTrainer/Calculator-v0", max_episode_steps=2)
    observation, info = env.reset(seed=0)
    proposer = LLMProposer(small_backend, max_new_tokens=8)
    selection = SearchPolicy(widen_k=1.0, widen_alpha=0.5)
    config = MCTSConfig(
        simulations=10, batch_size=1, candidates=4, selection=selection, max_reflections=20
    )
    search = MCTS(search_env(env), proposer, config=config, reflector=FeedbackReflector())
    result = search.search(observation, info)
    assert result.reflections
    assert all(r.startswith("The attempt ending with") for r in result.reflections)
    # the last expansion's prompt lists the reflections written before it
    system = str(proposer.last_prompts[0].messages[0]["content"])
    _, header, listed = system.partition(REFLECTIONS_HEADER + "\n")
    assert header
    lines = [line.removeprefix("- ") for line in listed.split("\n- ")]
    assert lines[0] == result.reflections[0]
    # (a prompt over the model's token budget is shortened from its end: TRUNCATION_MARK)
    for line, reflection in zip(lines, result.reflections, strict=False):
        assert reflection.startswith(line.removesuffix(TRUNCATION_MARK))
    # without a reflector, prompts carry none
    plain = LLMProposer(small_backend, max_new_tokens=8)
    MCTS(search_env(env), plain, config=config).search(observation, info)
    assert REFLECTIONS_HEADER not in str(plain.last_prompts[0].messages[0]["content"])


def test_the_mcts_agent_runs_in_llm_trainer_evaluate() -> None:
    args = ["evaluate", "--env", "LLMTrainer/Knapsack-v0", "--episodes", "6", "--json"]
    runner = CliRunner()
    searched = runner.invoke(app, [*args, "--agent", "mcts:simulations=24:knapsack"])
    assert searched.exit_code == 0, searched.output
    [row] = json.loads(searched.output.strip().splitlines()[-1])["results"]
    assert row["errors"] == 0
    assert row["mean_reward"] > 0.95
    bad = runner.invoke(app, [*args, "--agent", "mcts:simulatons=24:knapsack"])
    assert bad.exit_code == 2
    assert "simulations" in bad.output  # did you mean


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mcts:", "needs a base"),
        ("mcts:simulations=8:", "needs a base"),
        ("mcts:selection.rule=ucb:knapsack", "'ucb' is not one of"),
        ("mcts:value=self_eval:knapsack", "needs an LLM base"),
        ("mcts:value=model:knapsack", "needs value_model"),
        ("mcts:simulations=8:orcale", "unknown agent spec"),
    ],
)
def test_bad_mcts_agent_specs_fail_with_an_error_naming_the_problem(
    spec: str, message: str
) -> None:
    env = llm_trainer.make("LLMTrainer/Knapsack-v0")
    with pytest.raises(ConfigError, match=message):
        make_agent(spec, env)
