"""UCT and PUCT selection and the backup of means on trees computed by hand, negamax values in a
two-player game, and the bounds of progressive widening."""

from __future__ import annotations

import math

import pytest

import llm_trainer
from llm_trainer.algorithms.search import (
    MCTS,
    KnapsackProposer,
    MCTSConfig,
    MCTSNode,
    SearchPolicy,
    search_env,
)


def _node(visits: int = 0, value_sum: float = 0.0, **kwargs: object) -> MCTSNode:
    node = MCTSNode(None, "", {}, **kwargs)  # type: ignore[arg-type]
    node.visits, node.value_sum = visits, value_sum
    return node


def _tree(root: MCTSNode, children: list[MCTSNode]) -> MCTSNode:
    for child in children:
        child.parent = root
    root.children = children
    return root


def test_uct_scores_match_the_formula_computed_by_hand() -> None:
    # N = 10; Q = 0.6, 0.8, 0.1 with 6, 3, 1 visits
    root = _tree(_node(10), [_node(6, 3.6), _node(3, 2.4), _node(1, 0.1)])
    ln10 = 2.302585093
    scores = SearchPolicy(rule="uct", c=1.0).scores(root)
    assert scores == pytest.approx(
        [0.6 + math.sqrt(ln10 / 6), 0.8 + math.sqrt(ln10 / 3), 0.1 + math.sqrt(ln10 / 1)]
    )
    assert scores == pytest.approx([1.21950, 1.67609, 1.61742], abs=1e-4)
    assert SearchPolicy(rule="uct", c=1.0).select(root) is root.children[1]
    # more exploration: the child visited once wins
    assert SearchPolicy(rule="uct", c=2.0).select(root) is root.children[2]


def test_uct_tries_an_unvisited_child_first() -> None:
    root = _tree(_node(5), [_node(4, 4.0), _node(0)])
    assert SearchPolicy(rule="uct").select(root) is root.children[1]


def test_puct_priors_are_the_candidates_probabilities_normalised_over_the_siblings() -> None:
    root = _tree(
        _node(9),
        [
            _node(5, 3.0, logprob=math.log(0.25)),
            _node(3, 0.9, logprob=math.log(0.15)),
            _node(0, logprob=math.log(0.10)),
        ],
    )
    policy = SearchPolicy(rule="puct", c=1.0)
    assert policy.priors(root) == pytest.approx([0.5, 0.3, 0.2])
    # Q + c * P * sqrt(9) / (1 + n): 0.6 + 0.5 * 3 / 6, 0.3 + 0.3 * 3 / 4, 0 + 0.2 * 3 / 1
    assert policy.scores(root) == pytest.approx([0.85, 0.525, 0.6])
    assert policy.select(root) is root.children[0]
    # c = 3: 0.6 + 0.75, 0.3 + 0.675, 0 + 1.8: the unvisited child
    assert SearchPolicy(rule="puct", c=3.0).scores(root) == pytest.approx([1.35, 0.975, 1.8])
    assert SearchPolicy(rule="puct", c=3.0).select(root) is root.children[2]
    # a fourth sibling renormalises the priors of the others
    root.children.append(_node(0, logprob=math.log(0.5), parent=root))
    assert policy.priors(root) == pytest.approx([0.25, 0.15, 0.1, 0.5])


def test_a_pending_simulation_counts_as_a_loss_with_virtual_loss() -> None:
    root = _tree(_node(2), [_node(1, 1.0, logprob=0.0), _node(1, 0.9, logprob=0.0)])
    policy = SearchPolicy(rule="puct", c=0.0)
    assert policy.select(root) is root.children[0]
    root.children[0].virtual = 1  # (1.0 + 0) / 2 = 0.5 < 0.9
    assert policy.select(root) is root.children[1]


def test_backup_adds_step_rewards_and_keeps_means_on_a_hand_computed_tree() -> None:
    root = _node(reward=(0.0,))
    a = _node(reward=(0.1,), parent=root)
    a1 = _node(reward=(0.5,), parent=a)
    a2 = _node(reward=(0.0,), parent=a, terminal=True)
    root.children, a.children = [a], [a1, a2]
    a1.backup((0.2,))  # a1: 0.5 + 0.2; a: 0.1 + 0.7; root: 0.8
    assert (a1.value, a.value, root.value) == pytest.approx((0.7, 0.8, 0.8))
    a2.backup((0.0,))  # a2: 0; a: 0.1; means: a (0.8 + 0.1) / 2
    assert (a2.value, a.value, root.value) == pytest.approx((0.0, 0.45, 0.45))
    assert (root.visits, a.visits, a1.visits, a2.visits) == (2, 2, 1, 1)
    # discounted: a1: 0.5 + 0.5 * 0.2 = 0.6; a: 0.1 + 0.5 * 0.6 = 0.4; root: 0.5 * 0.4
    fresh = _node(reward=(0.0,))
    b = _node(reward=(0.1,), parent=fresh)
    b1 = _node(reward=(0.5,), parent=b)
    b1.backup((0.2,), gamma=0.5)
    assert (b1.value, b.value, fresh.value) == pytest.approx((0.6, 0.4, 0.2))


def test_two_player_values_are_negated_at_the_opponents_nodes() -> None:
    # player 0 moves at the root, player 1 at `x`; each node's value is its mover's
    root = _node(reward=(0.0, 0.0), player=0, to_move=0)
    x = _node(reward=(0.0, 0.0), parent=root, player=0, to_move=1)
    win = _node(reward=(-2.0, 2.0), parent=x, player=1, terminal=True)  # player 1 wins 2
    lose = _node(reward=(1.0, -1.0), parent=x, player=1, terminal=True)  # player 1 loses 1
    root.children, x.children = [x], [win, lose]
    win.backup((0.0, 0.0))
    lose.backup((0.0, 0.0))
    assert (win.value, lose.value) == (2.0, -1.0)  # player 1's point of view
    assert x.value == pytest.approx(-0.5)  # player 0's: (-2 + 1) / 2
    assert root.value == pytest.approx(-0.5)
    # at x, player 1 picks what is best for player 1
    assert SearchPolicy(rule="puct", c=0.0).select(x) is win


@pytest.mark.parametrize(
    ("k", "alpha", "expected"),
    [
        (1.0, 0.5, {0: 1, 1: 1, 2: 2, 4: 2, 5: 3, 9: 3, 10: 4, 100: 10}),
        (2.0, 0.5, {1: 2, 4: 4, 9: 6}),
        (2.0, 0.0, {1: 2, 50: 2, 1000: 2}),
        (1.5, 1.0, {1: 2, 2: 3, 10: 15}),
    ],
)
def test_progressive_widening_allows_ceil_k_n_alpha_children(
    k: float, alpha: float, expected: dict[int, int]
) -> None:
    policy = SearchPolicy(widen_k=k, widen_alpha=alpha)
    assert {n: policy.max_children(n) for n in expected} == expected


@pytest.mark.parametrize(("k", "alpha"), [(0.5, 0.5), (1.0, 0.3), (1.0, 0.0)])
def test_no_node_of_a_search_has_more_children_than_widening_allows(k: float, alpha: float) -> None:
    env = llm_trainer.make("LLMTrainer/Knapsack-v0", difficulty=3)
    observation, info = env.reset(seed=4)
    selection = SearchPolicy(widen_k=k, widen_alpha=alpha)
    config = MCTSConfig(simulations=60, batch_size=4, candidates=16, selection=selection)
    result = MCTS(search_env(env), KnapsackProposer(), config=config).search(observation, info)
    nodes = list(result.root.walk())
    for node in nodes:
        assert len(node.children) <= selection.max_children(node.visits)
    # the bound is what limits the root: it had more candidates than children
    root = result.root
    assert root.pending
    assert len(root.children) == selection.max_children(root.visits)
    if alpha == 0.0:  # a fixed width of ceil(k) = 1: a single path, the proposer's greedy line
        assert all(len(n.children) <= 1 for n in nodes)
