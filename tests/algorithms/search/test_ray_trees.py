"""MCTS trees as Ray tasks (issue 17, item 3) on a real local cluster (the session's
``ray_cluster``): ``trees: K`` grown as Ray tasks merge into exactly what the local pool and
this process give for the same seeds, through a :class:`TreeRunner`, the ``mcts:`` agent spec
(``ray=ADDRESS``) and ``search_distill`` (``ray: {address: ...}``); a missing extra or an
empty address is a clear :class:`ConfigError`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import llm_trainer
from llm_trainer.agents.baselines import RandomAgent
from llm_trainer.agents.factory import make_agent
from llm_trainer.algorithms.config import load_experiment
from llm_trainer.algorithms.experiment import run_experiment
from llm_trainer.algorithms.search import (
    KnapsackProposer,
    MCTSConfig,
    MergedSearch,
    PolicyProposer,
    Proposer,
    RolloutValue,
    TreeRunner,
    parse_agent_spec,
)
from llm_trainer.algorithms.search.buffer import ExperienceBuffer
from llm_trainer.algorithms.search.distill import BUFFER_FILE
from llm_trainer.core.errors import ConfigError
from llm_trainer.distributed import Executor, RayExecutor

TREES = 4


def _knapsack() -> tuple[Any, Any, Any, Proposer]:
    env = llm_trainer.make("LLMTrainer/Knapsack-v0")
    observation, info = env.reset(seed=8)  # the greedy fill is not optimal: there is a search
    return env, observation, info, KnapsackProposer()


def _calculator() -> tuple[Any, Any, Any, Proposer]:
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    observation, info = env.reset(seed=5)
    random_candidates = PolicyProposer(RandomAgent(0, p_tool=0.6, p_answer=0.3))
    return env, observation, info, random_candidates


def _search(task: Any, processes: int = 1, executor: Executor | None = None) -> MergedSearch:
    env, observation, info, proposer = task()
    before = env.unwrapped.get_state()
    # random rollouts: each tree's values depend on its own seed
    estimator = RolloutValue(PolicyProposer(RandomAgent(0, p_tool=0.0, p_answer=1.0)))
    config = MCTSConfig(simulations=24, batch_size=4, candidates=6)
    runner = TreeRunner(
        proposer, estimator, config, trees=TREES, processes=processes, executor=executor
    )
    with runner:
        merged = runner.search(env, observation, info, seed=11)
        if executor is not None:  # grown elsewhere: no tree of this process to inspect
            assert runner.last_result is None
    assert env.unwrapped.get_state() == before  # the live env is left as it was
    return merged


def _view(merged: MergedSearch) -> dict[str, Any]:
    """The merged search but for timing."""
    return {**merged.summary(), "seconds": None, "trees": [t.children for t in merged.trees]}


@pytest.mark.parametrize("task", [_knapsack, _calculator], ids=["knapsack", "calculator"])
def test_trees_as_ray_tasks_merge_to_what_the_local_pool_and_this_process_give(
    ray_cluster: str, task: Any
) -> None:
    here = _search(task)
    pooled = _search(task, processes=2)
    on_ray = _search(task, executor=RayExecutor(ray_cluster))
    assert on_ray.children == pooled.children == here.children
    assert on_ray.action == pooled.action == here.action
    assert _view(on_ray) == _view(pooled) == _view(here)  # every tree, in order
    assert on_ray.simulations == TREES * 24
    assert len({t.children for t in on_ray.trees}) > 1  # each tree has its own seed


def _play(spec: str, seed: int = 5) -> list[tuple[str, Any]]:
    """One Calculator-v0 episode of the agent ``spec`` (random candidates): each decision's
    action and merged root children."""
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    agent = make_agent(spec, env, seed=0)
    decisions = []
    try:
        observation, info = env.reset(seed=seed)
        agent.reset(seed=seed)
        done = False
        while not done:
            action = agent.act(observation, info)
            decisions.append((action, agent.last_search.children))
            observation, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
    finally:
        agent.close()
    return decisions


def test_the_mcts_spec_grows_its_trees_on_ray_with_ray_auto(
    ray_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``auto``: $RAY_ADDRESS (a process already connected, as this one is, keeps its connection)
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster)
    options = f"simulations=12,candidates=3,value=rollout,trees={TREES}"
    config = parse_agent_spec(f"{options},ray=auto:random")
    assert (config.ray, config.trees, config.base) == ("auto", TREES, "random")
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    agent = make_agent(f"mcts:{options},ray=auto:random", env, seed=0)
    assert isinstance(agent.runner.executor, RayExecutor)
    agent.close()  # this process stays connected: the cluster is not the agent's
    on_ray = _play(f"mcts:{options},ray=auto:random")
    assert on_ray == _play(f"mcts:{options}:random")
    assert len(on_ray) == 2  # a tool call, then the answer


CONFIG = """\
name: distill_ray
algorithm: search_distill
output_dir: {out}
model:
  path: tiny
  system_prompt: ""
  tiny: {{n_layers: 1, hidden_size: 32, n_heads: 2, intermediate_size: 64}}
train: {{max_steps: 1, batch_size: 2, logging_steps: 1, max_length: 640}}
search_distill:
  env_id: LLMTrainer/Knapsack-v0
  episodes: 2
  first_seed: 8
  proposer: knapsack
  num_envs: 2
  trees: {trees}
  keep: all
  mcts: {{simulations: 8, batch_size: 4}}
eval: {{env_id: LLMTrainer/Knapsack-v0, episodes: 1, episodes_before: 0, max_new_tokens: 4}}
"""


def _distill(out: Path, *overrides: str) -> list[Any]:
    out.mkdir()
    path = out / "distill.yaml"
    path.write_text(CONFIG.format(out=out, trees=TREES))
    summary = run_experiment(load_experiment(path, list(overrides)), log=lambda m: None)
    records = ExperienceBuffer.load(Path(summary["run_dir"]) / BUFFER_FILE).records
    return [(r.seed, r.turn, r.action, r.visits, r.values, r.simulations) for r in records]


def test_search_distill_grows_its_trees_on_ray_with_a_ray_section(
    tmp_path: Path, ray_cluster: str
) -> None:
    on_ray = _distill(tmp_path / "ray", f"ray.address={ray_cluster}")
    assert on_ray == _distill(tmp_path / "here")
    assert {simulations for *_, simulations in on_ray} == {TREES * 8}


def test_ray_trees_need_the_extra_and_an_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for empty in ("ray=", "ray= "):
        with pytest.raises(ConfigError, match="ray must not be empty"):
            parse_agent_spec(f"trees=2,{empty}:knapsack")
    with pytest.raises(ConfigError, match="export RAY_ADDRESS=HOST:PORT and use ray=auto"):
        parse_agent_spec("trees=2,ray=127.0.0.1:6379:knapsack")
    with pytest.raises(ConfigError, match="export RAY_ADDRESS"):
        parse_agent_spec("ray=ray://head:10001,trees=2:knapsack")
    (tmp_path / "distill.yaml").write_text(CONFIG.format(out=tmp_path, trees=2))
    with pytest.raises(ConfigError, match=r"ray\.address: must not be empty"):
        load_experiment(tmp_path / "distill.yaml", ["ray.address= "])
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray imports
    with pytest.raises(ConfigError, match=r"mcts agent: ray needs Ray.*pip install 'llm-trainer"):
        parse_agent_spec("trees=2,ray=auto:knapsack")
    with pytest.raises(ConfigError, match=r"ray\.address needs Ray.*pip install 'llm-trainer"):
        run_experiment(
            load_experiment(tmp_path / "distill.yaml", ["ray.address=auto"]), log=lambda m: None
        )
