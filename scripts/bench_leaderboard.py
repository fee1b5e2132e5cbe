"""Benchmark the benchmark pipeline: the whole tooluse-v0 suite, and building the leaderboard.

    .venv/bin/python scripts/bench_leaderboard.py               # about a minute
    .venv/bin/python scripts/bench_leaderboard.py --json        # ends with a JSON line

Targets (issue 6), on two cores: the whole tooluse-v0 suite with the oracle <= 10 s (as
`llm-trainer bench` runs it: worker processes started, 1,200 episodes, the result written), and
building the leaderboard (markdown, HTML, PNG) <= 1 s. Along the way it trains the
stable-baselines3 PPO baseline and puts oracle, random and PPO on the board (written to
--out-dir, runs/bench_leaderboard/ by default: outside results/, which `llm-trainer
leaderboard` reads by default).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llm_trainer.benchmarks.perf.leaderboard import run_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("runs/bench_leaderboard"))
    parser.add_argument("--repeats", type=int, default=3, help="suite runs (median reported)")
    parser.add_argument("--json", action="store_true", help="end with the results as JSON")
    args = parser.parse_args()
    result = run_all(args.out_dir, args.repeats)
    suite, board = result["suite"], result["leaderboard"]
    print(f"{result['cpu_count']} cores; load average before {result['load_average_before']}")
    print(
        f"tooluse-v0 with the oracle ({suite['episodes']} episodes, {suite['workers']} workers): "
        f"median {suite['median_s']:.2f} s of {suite['runs_s']} "
        f"(target <= {suite['target_s']:.0f} s: {'ok' if suite['ok'] else 'MISSED'})"
    )
    print(
        f"leaderboard of {len(board['entries'])} entries: median {board['median_s']:.3f} s of "
        f"{board['runs_s']} (target <= {board['target_s']:.0f} s: "
        f"{'ok' if board['ok'] else 'MISSED'}); a cold `llm-trainer leaderboard` process "
        f"{board['cold_cli_process_s']:.2f} s"
    )
    print(f"PPO baseline trained in {result['sb3_train_s']:.1f} s; success on tooluse-v0:")
    for agent, s in result["success"].items():
        print(f"  {agent:24} {s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]")
    print(f"board: {', '.join(board['files'])}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
