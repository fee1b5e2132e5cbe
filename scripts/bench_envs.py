"""Benchmark every registered env: throughput vs CartPole, RSS growth, snapshot cost.

    .venv/bin/python scripts/bench_envs.py            # the full run (about 4 minutes)
    .venv/bin/python scripts/bench_envs.py --quick    # a smoke run
    .venv/bin/python scripts/bench_envs.py --env LLMTrainer/TSP-v0 --env LLMTrainer/Calculator-v0

Targets (issue 2): Calculator-v0 >= 20,000 episodes/s and >= 50,000 steps/s on one core,
RSS growth < 5 MB over 100,000 episodes, get_state/set_state <= 10 us. The problem envs
(Reasoning, Knapsack, TSP, ConstrainedWriting) solve each instance exactly at reset, so they
play fewer episodes a second; their RSS growth is measured over as many episodes as about
--rss-seconds allow (the "RSS eps" column).
"""

from __future__ import annotations

import argparse
import json

from llm_trainer.benchmarks.perf.envs import run_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one repetition")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions (median reported)")
    parser.add_argument("--rss-episodes", type=int, default=100_000)
    parser.add_argument(
        "--rss-seconds", type=float, default=20.0, help="bound on one env's RSS run (about)"
    )
    parser.add_argument(
        "--env", action="append", dest="envs", help="an env id to measure (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="0.2 s x 2 repeats, 2,000 episodes")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats, args.rss_episodes = 0.2, 2, 2_000
    result = run_all(args.seconds, args.repeats, args.rss_episodes, args.envs, args.rss_seconds)
    ref = result["cartpole"]
    print(f"pinned to core {result['pinned_core']}; median of {args.repeats} x >= {args.seconds} s")
    print(
        f"{'env':33} {'episodes/s':>11} {'steps/s':>10} {'eps vs CP':>9} {'steps vs CP':>11} "
        f"{'RSS eps':>8} {'RSS +MB':>8} {'get us':>7} {'set us':>7}"
    )
    print(
        f"{ref['env_id']:33} {ref['episodes_per_s']:11,.0f} {ref['steps_per_s']:10,.0f} "
        f"{1.0:9.2f} {1.0:11.2f}"
    )
    for row in result["envs"]:
        print(
            f"{row['env_id']:33} {row['episodes_per_s']:11,.0f} {row['steps_per_s']:10,.0f} "
            f"{row['episodes_vs_cartpole']:9.2f} {row['steps_vs_cartpole']:11.2f} "
            f"{row['rss_episodes']:8,} {row['rss_growth_mb']:8.2f} "
            f"{row['get_state_us']:7.2f} {row['set_state_us']:7.2f}"
        )
    calc = next((r for r in result["envs"] if r["env_id"] == "LLMTrainer/Calculator-v0"), None)
    if calc is not None:
        print(
            f"Calculator-v0 targets: episodes/s {calc['episodes_per_s']:,.0f} / 20,000 "
            f"({calc['episodes_per_s'] / 20_000:.2f}x), steps/s {calc['steps_per_s']:,.0f} / "
            f"50,000 ({calc['steps_per_s'] / 50_000:.2f}x)"
        )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
