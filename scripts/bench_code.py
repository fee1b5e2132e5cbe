"""Benchmark Code-v0 with the oracle: episodes/s per difficulty and the sandbox's share.

    .venv/bin/python scripts/bench_code.py                 # 100 episodes per difficulty
    .venv/bin/python scripts/bench_code.py --episodes 20   # a smoke run

Every episode is one sandbox run (the harness calling the reference on the hidden tests); the
"floor" is one run of ``python -S -c pass`` in the same sandbox. Figures depend on the load of
the machine: the sandbox starts a process tree per run.
"""

from __future__ import annotations

import argparse
import json

from llm_trainer.benchmarks.perf.code import run_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100, help="oracle episodes per difficulty")
    parser.add_argument("--floor-runs", type=int, default=20, help="runs of the empty program")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    result = run_all(args.episodes, args.floor_runs)
    print(
        f"{'difficulty':>10} {'episodes/s':>11} {'ms/episode':>11} {'sandbox ms':>11} "
        f"{'share':>6} {'run p50 ms':>11} {'reset ms':>9} {'level':>6}"
    )
    for row in result["difficulties"]:
        print(
            f"{row['difficulty']:>10} {row['episodes_per_s']:11.1f} {row['episode_ms']:11.1f} "
            f"{row['sandbox_ms']:11.1f} {row['sandbox_share']:6.0%} {row['run_median_ms']:11.1f} "
            f"{row['reset_ms']:9.2f} {row['isolation_level']:>6}"
        )
    print(
        f"{result['env_id']}: {result['episodes_per_s']:.1f} oracle episodes/s, "
        f"{result['sandbox_share']:.0%} of the time in the sandbox; an empty run costs "
        f"{result['floor_ms']:.1f} ms"
    )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
