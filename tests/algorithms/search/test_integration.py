"""Evolution's best prompt as the MCTS agent's prompt (``mcts:prompt=PATH,...:BASE``), and the
TSP local-search proposer that refines tours inside evolution (issue 16, item 3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import llm_trainer
from llm_trainer.agents.factory import make_agent
from llm_trainer.algorithms.config import load_experiment
from llm_trainer.algorithms.experiment import run_experiment
from llm_trainer.algorithms.rollout import collect
from llm_trainer.algorithms.search import (
    GreedyPolicy,
    LLMProposer,
    MCTSAgent,
    MCTSConfig,
    RolloutValue,
    SelfEvaluation,
    parse_agent_spec,
)
from llm_trainer.algorithms.search.agent import read_prompt
from llm_trainer.algorithms.search.scripted import (
    KnapsackProposer,
    TourProposer,
    TourTask,
    proposer_for,
)
from llm_trainer.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
quiet = lambda message: None  # noqa: E731


def _system(proposer: LLMProposer) -> str:
    return str(proposer.last_prompts[0].messages[0]["content"])


def test_an_evolved_prompt_reaches_every_proposal_of_the_mcts_agent(
    tmp_path: Path, small_model_dir: Path
) -> None:
    config = load_experiment(
        ROOT / "configs" / "evolve_prompt_calculator.yaml",
        [
            f"output_dir={tmp_path}",
            f"model.path={small_model_dir}",
            "evolution.operators=programmatic",
            "evolution.population=2",
            "evolution.generations=1",
            "evolution.episodes=2",
            "evolution.finalists=1",
            "evolution.max_new_tokens=8",
            "eval.episodes=2",
        ],
    )
    run_dir = Path(run_experiment(config, log=quiet)["run_dir"])
    best = (run_dir / "best_genome.txt").read_text()
    assert best
    assert read_prompt(run_dir) == read_prompt(run_dir / "best_genome.txt") == best

    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    observation, info = env.reset(seed=5)
    spec = f"mcts:prompt={run_dir},simulations=4,candidates=2,batch_size=2,value=self_eval"
    agent = make_agent(f"{spec}:transformers:{small_model_dir}", env, seed=0)
    assert isinstance(agent, MCTSAgent)
    proposer = agent.runner.proposer
    assert isinstance(proposer, LLMProposer)
    assert proposer.system_prompt == best
    estimator = agent.runner.estimator
    assert isinstance(estimator, SelfEvaluation)
    assert estimator.system_prompt == best
    agent.act(observation, info)
    assert proposer.calls >= 2
    assert proposer.tokens > 0
    # the prompts of the search's latest expansion open with the evolved prompt
    assert all(p.messages[0] == {"role": "system", "content": best} for p in proposer.last_prompts)

    plain = make_agent(f"mcts:simulations=4:transformers:{small_model_dir}", env, seed=0)
    assert isinstance(plain, MCTSAgent)
    plain.act(observation, info)
    plain_proposer = plain.runner.proposer
    assert isinstance(plain_proposer, LLMProposer)
    assert _system(plain_proposer) == info["system_prompt"] != best  # the env's, as before


def test_prompt_files_and_errors(tmp_path: Path) -> None:
    text = tmp_path / "prompt.txt"
    text.write_text("Use the calculator.\nThen answer.")
    assert read_prompt(text) == "Use the calculator.\nThen answer."
    assert parse_agent_spec(f"prompt={text},simulations=8:knapsack").prompt == str(text)
    with pytest.raises(ConfigError, match="no such file"):
        read_prompt(tmp_path / "missing.txt")
    run = tmp_path / "run"
    (run / "evolution").mkdir(parents=True)
    (run / "best_genome.txt").write_text("1, 3")
    (run / "evolution" / "genealogy.json").write_text(json.dumps([{"kind": "solution"}]))
    with pytest.raises(ConfigError, match=r"evolved \['solution'\] genomes, not system prompts"):
        read_prompt(run)
    env = llm_trainer.make("LLMTrainer/Knapsack-v0")
    with pytest.raises(ConfigError, match="the base 'knapsack' is not an LLM agent spec"):
        make_agent(f"mcts:prompt={text}:knapsack", env, seed=0)


def test_the_tour_proposer_refines_tours_by_search_where_its_greedy_play_stops() -> None:
    task = TourTask.parse("Cities 0-3; distances 0-1: 1, 0-2: 9, 0-3: 1, 1-2: 1, 1-3: 9, 2-3: 1.")
    assert task is not None
    assert task.nearest_neighbour(0) == (0, 1, 2, 3)
    assert task.read("2 3 0 1 2") == (0, 1, 2, 3)
    assert task.read("0 1 1 2") is None
    assert task.two_opt((0, 2, 1, 3))[0] in {(0, 1, 2, 3), (0, 3, 2, 1)}  # shortest first
    seeds = list(range(12))
    statement, _ = llm_trainer.make("LLMTrainer/TSP-v0").reset(seed=0)
    assert isinstance(proposer_for(statement), TourProposer)
    assert proposer_for("Knapsack of capacity 3. Items #id (weight, value): #1 (1, 2).")
    assert isinstance(
        proposer_for("Knapsack of capacity 3. Items #id (weight, value): #1 (1, 2)."),
        KnapsackProposer,
    )
    greedy = collect(
        "LLMTrainer/TSP-v0",
        lambda envs: GreedyPolicy(TourProposer()),
        seeds,
        num_envs=4,
        difficulty=3,
    )

    def searcher(envs: list[Any]) -> MCTSAgent:
        value = RolloutValue(TourProposer(), max_steps=3)
        return MCTSAgent(envs, TourProposer(), estimator=value, config=MCTSConfig(simulations=24))

    searched = collect("LLMTrainer/TSP-v0", searcher, seeds, num_envs=4, difficulty=3)
    pairs = list(zip(searched, greedy, strict=True))
    assert all(s.error is None and s.total_reward >= g.total_reward - 1e-9 for s, g in pairs)
    assert sum(s.total_reward > g.total_reward + 1e-9 for s, g in pairs) >= 3
    tsp_env = llm_trainer.make("LLMTrainer/TSP-v0")
    spec = make_agent("mcts:simulations=8,value=rollout:tsp", tsp_env, seed=0)
    assert isinstance(spec, MCTSAgent)
