"""Benchmark the code sandbox: start-up ms and runs/s against a plain subprocess, same run.

    .venv/bin/python scripts/bench_sandbox.py            # 3 alternating blocks of 3 s each
    .venv/bin/python scripts/bench_sandbox.py --quick    # a smoke run
    .venv/bin/python scripts/bench_sandbox.py --json

Workloads: a trivial program (with ``site``, as generated code runs), the same under
``python -S`` (what ../shared/SANDBOX.md timed: ~9 ms plain, ~13 ms in bubblewrap with
seccomp), and ``import numpy``. The logic is in ``llm_trainer.sandbox.bench``.
"""

from __future__ import annotations

import argparse
import json

from llm_trainer.sandbox.bench import format_table, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one block")
    parser.add_argument("--repeats", type=int, default=3, help="alternating blocks per side")
    parser.add_argument("--quick", action="store_true", help="0.3 s x 1 block")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats = 0.3, 1
    result = measure(args.seconds, args.repeats)
    print(format_table(result))
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
