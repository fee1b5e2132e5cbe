"""Leaf values (rollouts, LLM self-evaluation, PPO's value head), the experience buffer of
search decisions, and the trees recorded in the knowledge graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import llm_trainer
from llm_trainer.algorithms.rollout import collect
from llm_trainer.algorithms.search import (
    ExperienceBuffer,
    GreedyPolicy,
    KnapsackProposer,
    MCTSAgent,
    MCTSConfig,
    Request,
    RolloutValue,
    SelfEvaluation,
    ValueModel,
    search_env,
)
from llm_trainer.algorithms.search.values import parse_rating
from llm_trainer.core.knowledge import KnowledgeGraph, Problem


def _requests(env_id: str, seeds: list[int]) -> tuple[Any, list[Request]]:
    env = llm_trainer.make(env_id)
    requests = []
    for seed in seeds:
        observation, info = env.reset(seed=seed)
        requests.append(Request.start(env.unwrapped.get_state(), observation, info))
    return env, requests


def test_a_rollout_plays_the_leaf_out_with_the_rollout_policy_in_lockstep() -> None:
    seeds = [8, 27, 3]
    env, requests = _requests("LLMTrainer/Knapsack-v0", seeds)
    proposer = KnapsackProposer()
    values = RolloutValue(proposer).estimate(requests, search_env(env), seed=0)
    greedy = collect("LLMTrainer/Knapsack-v0", lambda envs: GreedyPolicy(KnapsackProposer()), seeds)
    assert values == pytest.approx([t.total_reward for t in greedy])
    # every leaf advances together: one proposer call per step, however many leaves
    assert proposer.calls == max(len(t.steps) for t in greedy)
    # the time limit bounds a rollout: none left, nothing played
    cut = [Request.start(r.state, r.observation, r.info, steps_left=0) for r in requests]
    assert RolloutValue(KnapsackProposer()).estimate(cut, search_env(env), 0) == [0.0] * 3


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("<answer>7</answer>", 0.7),
        ("<answer> 2.5 </answer>", 0.25),
        ("about 10 out of 10", 1.0),
        ("<answer>-3</answer>", 0.0),
        ("<answer>42</answer>", 1.0),
        ("no idea", None),
        ("<answer>maybe</answer>", None),
    ],
)
def test_a_self_evaluation_reads_the_rating_in_the_answer(text: str, rating: float | None) -> None:
    assert parse_rating(text) == (pytest.approx(rating) if rating is not None else None)


def test_a_self_evaluation_rates_every_leaf_in_one_greedy_call(small_backend: Any) -> None:
    env, requests = _requests("LLMTrainer/Calculator-v0", [0, 1, 2])
    judge = SelfEvaluation(small_backend, low=-1.0, high=1.0, max_new_tokens=6)
    values = judge.estimate(requests, search_env(env), seed=0)
    again = SelfEvaluation(small_backend, low=-1.0, high=1.0, max_new_tokens=6)
    assert values == again.estimate(requests, search_env(env), seed=5)  # greedy: no seed
    assert judge.calls == 1
    assert len(values) == 3
    assert all(-1.0 <= v <= 1.0 for v in values)
    # a random model writes no number: the middle of [low, high], counted
    assert judge.unparsed == sum(v == 0.0 for v in values)


def _ppo_checkpoint(root: Path, model_dir: Path) -> Path:
    """A checkpoint in PPOTrainer.save_checkpoint's layout, with a random value head."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm_trainer.algorithms.ppo.trainer import ValueHead

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.save_pretrained(root / "policy")
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(root / "policy")
    head = ValueHead.build(int(model.config.hidden_size))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator))
        head.bias.fill_(0.25)
    torch.save({"value_head": head.state_dict(), "value_model": None}, root / "trainer_state.pt")
    return root


def test_the_value_model_reads_ppos_value_head_at_the_last_prompt_token(
    tmp_path: Path, small_model_dir: Path
) -> None:
    import torch

    checkpoint = _ppo_checkpoint(tmp_path / "iteration-1", small_model_dir)
    value = ValueModel.from_ppo_checkpoint(checkpoint, batch_size=2)
    env, requests = _requests("LLMTrainer/Calculator-v0", [0, 1, 2])  # prompts of 3 lengths
    assert len({len(value.prompt_ids(r)) for r in requests}) > 1
    values = value.estimate(requests, search_env(env), seed=0)
    state = torch.load(checkpoint / "trainer_state.pt", weights_only=True)["value_head"]
    expected = []
    with torch.no_grad():
        for request in requests:  # one at a time: no padding at all
            ids = torch.tensor([value.prompt_ids(request)])
            hidden = value.model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
            expected.append(float(hidden[0, -1] @ state["weight"][0] + state["bias"][0]))
    assert values == pytest.approx(expected, abs=1e-5)
    assert len(set(values)) == 3


def test_the_experience_buffer_keeps_every_decision_and_reads_back_what_it_wrote(
    tmp_path: Path,
) -> None:
    buffer = ExperienceBuffer()
    config = MCTSConfig(simulations=16, batch_size=4)
    episodes = collect(
        "LLMTrainer/Knapsack-v0",
        lambda envs: MCTSAgent(envs, KnapsackProposer(), config=config, buffer=buffer),
        [8, 27],
        num_envs=2,
    )
    assert len(buffer) == sum(len(t.steps) for t in episodes)
    for record in buffer.records:
        assert record.env_id == "LLMTrainer/Knapsack-v0"
        assert record.action in record.visits
        assert sum(record.policy_target().values()) == pytest.approx(1.0)
        assert record.messages[0]["content"].startswith("Knapsack of capacity")
    played = {(t.seed, i): s.action for t in episodes for i, s in enumerate(t.steps)}
    assert {(r.seed, r.turn): r.action for r in buffer.records} == played
    loaded = ExperienceBuffer.load(buffer.save(tmp_path / "buffer.jsonl"))
    assert [r.to_dict() for r in loaded.records] == [r.to_dict() for r in buffer.records]
    [row, *_] = buffer.chat_rows(system_prompt="")
    assert row["messages"][0] == {"role": "system", "content": ""}
    assert row["messages"][-1] == {"role": "assistant", "content": buffer.records[0].action}
    picks = [r.turn for r in buffer.sample(2, np.random.default_rng(0))]
    assert picks == [r.turn for r in buffer.sample(2, np.random.default_rng(0))]
    bounded = ExperienceBuffer(capacity=1)
    bounded.extend(buffer.records)
    assert bounded.records == buffer.records[-1:]


def test_an_mcts_agent_records_its_trees_and_the_solutions_they_found_in_the_knowledge_graph(
    tmp_path: Path,
) -> None:
    path = tmp_path / "graph.sqlite"
    config = MCTSConfig(simulations=16, batch_size=4)
    [episode] = collect(
        "LLMTrainer/Knapsack-v0",
        lambda envs: MCTSAgent(
            envs, KnapsackProposer(), config=config, knowledge=path, name="mcts:knapsack", run="t"
        ),
        [27],
    )
    assert episode.success
    graph = KnowledgeGraph(path)
    problem = Problem(episode.prompt, env_id="LLMTrainer/Knapsack-v0", seed=27, difficulty=1)
    attempts = graph.edges(problem.node_id, "attempted_by")
    assert sorted(e.key for e in attempts) == [f"t turn {i}" for i in range(len(episode.steps))]
    first = next(e for e in attempts if e.key == "t turn 0").attrs["metrics"]
    assert first["simulations"] == 16
    assert first["action"] == episode.steps[0].action
    assert {c["action"] for c in first["root_children"]} >= {episode.steps[0].action}
    [solution, *_] = graph.solutions(problem.node_id)
    assert solution.attrs["reward"] == pytest.approx(1.0)
    assert episode.steps[-1].action in solution.attrs["text"]
