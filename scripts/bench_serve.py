"""Benchmark a served env: steps/s over loopback (WebSocket and HTTP) against in-process.

    .venv/bin/python scripts/bench_serve.py                       # Calculator-v0, 1,000 episodes
    .venv/bin/python scripts/bench_serve.py --env LLMTrainer/MultiTool-v0 --clients 8
    .venv/bin/python scripts/bench_serve.py --quick --json        # a smoke run

The oracle's episodes are recorded once and replayed on every target in the same run: the env
in-process, a RemoteEnv over WebSocket and over HTTP against ``llm-trainer serve`` started in
its own process, and ``--clients`` WebSocket clients at once. The ratio column is each
target's steps/s over the in-process figure; every target must see the same transitions (a
digest of each replay is compared). Issue 17, item 5. Logic: llm_trainer/serve/bench.py.
"""

from __future__ import annotations

import argparse
import json

from llm_trainer.serve.bench import format_table, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="LLMTrainer/Calculator-v0", help="the env id to serve")
    parser.add_argument("--episodes", type=int, help="episodes per client (default 1,000)")
    parser.add_argument("--clients", type=int, help="concurrent WebSocket clients (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="first seed of the episodes")
    parser.add_argument(
        "--quick", action="store_true", help="defaults of 50 episodes and 2 clients"
    )
    parser.add_argument("--json", action="store_true", help="end with the results as JSON")
    args = parser.parse_args()
    episodes = args.episodes or (50 if args.quick else 1000)
    clients = args.clients or (2 if args.quick else 4)
    summary = run(args.env, episodes, clients, args.seed)
    print(format_table(summary))
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
