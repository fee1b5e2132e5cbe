"""Search is reproducible: every node's snapshot steps to its children again, the live env is
left as it was, the same seed grows the same tree, and trees in worker processes merge into
what the same trees give in this process."""

from __future__ import annotations

from typing import Any

import pytest

import llm_trainer
from llm_trainer.agents.baselines import RandomAgent
from llm_trainer.algorithms.search import (
    MCTS,
    KnapsackProposer,
    LegalMovesProposer,
    LLMProposer,
    MCTSConfig,
    PolicyProposer,
    RolloutValue,
    SearchResult,
    TreeRunner,
    search_env,
)


def _knapsack() -> tuple[Any, Any, SearchResult]:
    env = llm_trainer.make("LLMTrainer/Knapsack-v0", difficulty=2)
    observation, info = env.reset(seed=3)
    config = MCTSConfig(simulations=40, batch_size=4, candidates=6)
    return (
        env,
        info,
        MCTS(search_env(env), KnapsackProposer(), config=config).search(observation, info),
    )


def _calculator() -> tuple[Any, Any, SearchResult]:
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    observation, info = env.reset(seed=5)
    proposer = PolicyProposer(RandomAgent(0, p_tool=0.6, p_answer=0.3))
    config = MCTSConfig(simulations=40, batch_size=4, candidates=4)
    return env, info, MCTS(search_env(env), proposer, config=config).search(observation, info)


def _kuhn() -> tuple[Any, Any, SearchResult]:
    env = llm_trainer.make_multiagent("LLMTrainer/KuhnPoker-v0")
    env.reset(seed=0, options={"deal": ("Q", "K")})
    observation, _, _, _, info = env.last()
    config = MCTSConfig(simulations=30, batch_size=2)
    return (
        env,
        info,
        MCTS(search_env(env), LegalMovesProposer(), config=config).search(observation, info),
    )


SEARCHES = pytest.mark.parametrize(
    "search", [_knapsack, _calculator, _kuhn], ids=["knapsack", "calculator", "kuhn"]
)


@SEARCHES
def test_restoring_any_node_and_stepping_its_action_gives_the_child_again(search: Any) -> None:
    env, _, result = search()
    adapter = search_env(env)
    nodes = [n for n in result.root.walk() if n.parent is not None]
    assert len(nodes) >= 5
    assert max(n.depth for n in nodes) >= 2
    for _ in range(2):  # in reverse order, twice: no step depends on the one before
        for node in reversed(nodes):
            assert node.parent is not None
            assert node.action is not None
            t = adapter.step(node.parent.state, node.action)
            assert t.state == node.state
            assert t.observation == node.observation
            assert t.rewards == node.reward
            assert t.to_move == node.to_move


@SEARCHES
def test_a_search_leaves_the_live_env_as_it_found_it(search: Any) -> None:
    env, _, result = search()
    assert env.unwrapped.get_state() == result.root.state
    child = result.root.children[0]
    if hasattr(env.unwrapped, "possible_agents"):
        env.step(child.action)
        assert env.unwrapped.get_state() == child.state
    else:  # the played episode goes on from the root, time limit included
        observation, reward, *_ = env.step(child.action)
        assert (observation, (float(reward),)) == (child.observation, child.reward)
        assert env.unwrapped.get_state() == child.state


def _llm_search(backend: Any, seed: int, batch_size: int = 4) -> SearchResult:
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    observation, info = env.reset(seed=1)
    proposer = LLMProposer(backend, max_new_tokens=12)
    config = MCTSConfig(simulations=12, batch_size=batch_size, candidates=3)
    return MCTS(search_env(env), proposer, config=config).search(observation, info, seed=seed)


def _tree(result: SearchResult) -> list[tuple[Any, ...]]:
    return [(n.depth, n.action, n.visits, n.value_sum, n.logprob) for n in result.root.walk()]


def test_the_same_seed_grows_the_same_llm_tree_and_another_seed_another(small_backend: Any) -> None:
    first, again = _llm_search(small_backend, 7), _llm_search(small_backend, 7)
    assert _tree(first) == _tree(again)
    assert first.action == again.action
    assert len(first.root.children) >= 2  # sampled, deduplicated candidates
    assert _tree(_llm_search(small_backend, 8)) != _tree(first)


def _random_rollouts(trees: int, processes: int, seed: int = 11) -> Any:
    env = llm_trainer.make("LLMTrainer/Knapsack-v0")
    observation, info = env.reset(seed=8)  # the greedy fill is not optimal: there is a search
    before = env.unwrapped.get_state()
    # random rollouts: each tree's values depend on its own seed
    estimator = RolloutValue(PolicyProposer(RandomAgent(0, p_tool=0.0, p_answer=1.0)))
    config = MCTSConfig(simulations=24, batch_size=4, candidates=6)
    with TreeRunner(
        KnapsackProposer(), estimator, config, trees=trees, processes=processes
    ) as runner:
        merged = runner.search(env, observation, info, seed=seed)
    assert env.unwrapped.get_state() == before
    return merged


def test_trees_in_worker_processes_merge_to_the_same_result_as_in_this_process() -> None:
    here = _random_rollouts(trees=3, processes=1)
    pooled = _random_rollouts(trees=3, processes=2)
    assert here.children == pooled.children
    assert here.action == pooled.action
    # merged by root child: visits and returns add up over the trees
    for child in here.children:
        per_tree = [c for t in here.trees for c in t.children if c.action == child.action]
        assert child.visits == sum(c.visits for c in per_tree)
        assert child.value_sum == pytest.approx(sum(c.value_sum for c in per_tree))
    assert here.simulations == 3 * 24
    # each tree has its own seed: the trees differ
    assert len({t.children for t in here.trees}) > 1
