"""Benchmark MCTS: simulations/s with a scripted proposer and with the tiny LLM, batched or not.

    .venv/bin/python scripts/bench_mcts.py                 # the tiny model, built fresh
    .venv/bin/python scripts/bench_mcts.py --model DIR     # any local model directory
    .venv/bin/python scripts/bench_mcts.py --device cuda   # the model on a GPU
    .venv/bin/python scripts/bench_mcts.py --quick --json  # a smoke run

Figures measured in one run (issue 16), printed with their ratios, never asserted:

1. **Scripted**: ``LLMTrainer/Calculator-v0`` (difficulty 2) searched with the random agent
   as the proposer (8 samples per expanded node: tool calls with random arguments, answers,
   garbage) and random rollouts of up to 4 steps
   (:class:`~llm_trainer.algorithms.search.values.RolloutValue`): no model at all, so
   simulations/s is the search's own cost, env steps and snapshots included. Beside it, the
   env steps per simulation (tree and rollouts) and the bare cost of one snapshot step
   (``set_state`` + ``step`` + ``get_state`` of a calculator call), so the share of the env
   in a simulation can be read off.
2. **Tiny LLM**: ``LLMTrainer/Calculator-v0`` searched with an
   :class:`~llm_trainer.algorithms.search.proposers.LLMProposer` (``--candidates`` samples per
   expanded node, the env's rewards as values), once with ``--batch`` leaves expanded per
   generation call and once one leaf at a time (``batch_size: 1``): simulations/s of each and
   their ratio, over the same seeds and budget. A warm-up search runs first.

Each figure is the total over searches from ``seeds`` 0, 1, 2... until ``--seconds`` pass
(at least one search).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_trainer.agents.baselines import RandomAgent
from llm_trainer.algorithms.search import (
    MCTS,
    LLMProposer,
    MCTSConfig,
    PolicyProposer,
    Proposer,
    RewardEstimator,
    RolloutValue,
    search_env,
)
from llm_trainer.envs.registration import make

SCRIPTED_ENV = "LLMTrainer/Calculator-v0"
LLM_ENV = "LLMTrainer/Calculator-v0"


def _searches(
    env_id: str,
    difficulty: int,
    proposer: Callable[[], Proposer],
    estimator: Callable[[], RewardEstimator | None],
    config: MCTSConfig,
    seconds: float,
) -> dict[str, float]:
    """Searches from seeds 0, 1, 2... until ``seconds`` pass: simulations/s and counters."""
    env = make(env_id, difficulty=difficulty)
    adapter = search_env(env)
    simulations = nodes = calls = searches = 0
    spent = 0.0
    seed = 0
    while searches == 0 or spent < seconds:
        observation, info = env.reset(seed=seed)
        search = MCTS(adapter, proposer(), estimator(), config)
        result = search.search(observation, info, seed=seed)
        spent += result.seconds
        simulations += result.simulations
        nodes += result.nodes - 1
        calls += result.proposer_calls
        searches += 1
        seed += 1
    env.close()
    return {
        "searches": searches,
        "simulations": simulations,
        "seconds": round(spent, 3),
        "simulations_per_s": round(simulations / spent, 2),
        "nodes_per_search": round(nodes / searches, 1),
        "nodes_per_s": round(nodes / spent, 2),
        "proposer_calls_per_search": round(calls / searches, 2),
    }


def _snapshot_steps(seconds: float) -> dict[str, float]:
    """The bare cost of a snapshot step: restore a state, step, snapshot the result."""
    env = make(SCRIPTED_ENV, difficulty=2)
    observation, info = env.reset(seed=0)
    adapter = search_env(env)
    root = adapter.root(observation, info)
    action = RandomAgent(0, p_tool=1.0, p_answer=0.0).act(observation, info)  # a tool call
    steps, start = 0, time.perf_counter()
    while steps == 0 or time.perf_counter() - start < seconds:
        for _ in range(200):
            adapter.step(root.state, action)
        steps += 200
    elapsed = time.perf_counter() - start
    env.close()
    return {
        "steps_per_s": round(steps / elapsed, 1),
        "microseconds_per_step": round(1e6 * elapsed / steps, 2),
    }


def scripted(args: argparse.Namespace) -> dict[str, Any]:
    config = MCTSConfig(simulations=args.simulations, batch_size=args.batch, candidates=8)
    rollouts: list[RolloutValue] = []

    def proposer() -> Proposer:
        return PolicyProposer(RandomAgent(0))

    def estimator() -> RewardEstimator:
        value = RolloutValue(PolicyProposer(RandomAgent(1)), max_steps=4)
        rollouts.append(value)
        return value

    figures = _searches(SCRIPTED_ENV, 2, proposer, estimator, config, args.seconds)
    steps = figures["nodes_per_search"] * figures["searches"] + sum(r.steps for r in rollouts)
    figures["env_steps_per_simulation"] = round(steps / figures["simulations"], 2)
    figures["snapshot_step"] = _snapshot_steps(min(args.seconds, 2.0))
    return figures


def _backend(args: argparse.Namespace) -> Any:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm_trainer.agents.backends.transformers_backend import TransformersBackend
    from llm_trainer.agents.tinylm import create_tiny_model

    model_dir = args.model or create_tiny_model(Path(tempfile.mkdtemp()) / "tiny", seed=0)
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(args.device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return TransformersBackend(model, tokenizer, spec=f"transformers:{model_dir}")


def llm(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    backend = _backend(args)
    load = time.perf_counter() - started

    def proposer() -> Proposer:
        return LLMProposer(backend, max_new_tokens=args.max_new_tokens)

    runs: dict[str, Any] = {
        "model": backend.spec,
        "device": args.device,
        "load_seconds": round(load, 2),
    }
    for name, batch in (("batched", args.batch), ("one_leaf", 1)):
        config = MCTSConfig(
            simulations=args.llm_simulations, batch_size=batch, candidates=args.candidates
        )
        _searches(LLM_ENV, 1, proposer, lambda: None, config, 0.0)  # warm-up
        runs[name] = {
            "batch_size": batch,
            **_searches(LLM_ENV, 1, proposer, lambda: None, config, args.seconds),
        }
    for figure in ("simulations_per_s", "nodes_per_s"):
        runs[f"batched_over_one_leaf_{figure}"] = round(
            runs["batched"][figure] / runs["one_leaf"][figure], 2
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, default=None, help="A model directory (default: the tiny model)."
    )
    parser.add_argument("--device", default="cpu", help="Where the model runs (cpu, cuda).")
    parser.add_argument("--seconds", type=float, default=10.0, help="Time per figure.")
    parser.add_argument(
        "--simulations", type=int, default=256, help="Simulations per scripted search."
    )
    parser.add_argument(
        "--llm-simulations", type=int, default=32, help="Simulations per LLM search."
    )
    parser.add_argument("--batch", type=int, default=8, help="Leaves per expansion call (batched).")
    parser.add_argument("--candidates", type=int, default=4, help="LLM samples per expanded node.")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="Longest LLM candidate.")
    parser.add_argument("--quick", action="store_true", help="A smoke run (tiny budgets).")
    parser.add_argument(
        "--json", action="store_true", help="End with the figures as one JSON line."
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.simulations, args.llm_simulations, args.max_new_tokens = 0.0, 32, 8, 8
    figures: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "scripted": scripted(args),
        "llm": llm(args),
    }
    s, m = figures["scripted"], figures["llm"]
    print(f"MCTS benchmark ({figures['machine']['platform']})")
    print(
        f"scripted  {SCRIPTED_ENV} d2: {s['simulations_per_s']:>10.1f} simulations/s "
        f"({s['searches']} searches of {args.simulations}; {s['env_steps_per_simulation']} "
        f"env steps per simulation, tree and rollouts; a bare snapshot step takes "
        f"{s['snapshot_step']['microseconds_per_step']} us)"
    )
    for name in ("batched", "one_leaf"):
        run = m[name]
        print(
            f"LLM {name:<9} {LLM_ENV}: {run['simulations_per_s']:>8.2f} simulations/s, "
            f"{run['nodes_per_s']:.2f} new nodes/s (batch {run['batch_size']}, "
            f"{run['proposer_calls_per_search']} generation calls and "
            f"{run['nodes_per_search']} nodes per search of {args.llm_simulations}, "
            f"{run['searches']} searches)"
        )
    print(
        f"batched / one leaf at a time: {m['batched_over_one_leaf_simulations_per_s']}x "
        f"simulations/s, {m['batched_over_one_leaf_nodes_per_s']}x new nodes/s "
        f"({m['model']}, {m['device']})"
    )
    if args.json:
        print(json.dumps(figures))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
