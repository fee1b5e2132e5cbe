"""Benchmark the knowledge graph at 10^5 nodes: write and query rates, and the file size.

    .venv/bin/python scripts/bench_knowledge.py                 # about a minute
    .venv/bin/python scripts/bench_knowledge.py --json          # ends with a JSON line

Builds a graph shaped like one that benchmarks and experiments filled (real env tasks as
problem statements, solutions, attempts, failures, model lineages) in --path, then reports:
writes in batches of --batch-size and one per transaction (nodes + edges per second), the load
of the whole graph into networkx by a fresh reader, related-problem queries (BM25, k = 3) and
lineage queries per second, and the size of the SQLite file.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from llm_trainer.benchmarks.perf.knowledge import run_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=Path("runs/bench_knowledge/kg.sqlite"))
    parser.add_argument("--nodes", type=int, default=100_000, help="about this many nodes")
    parser.add_argument("--batch-size", type=int, default=1000, help="elements per batch")
    parser.add_argument("--json", action="store_true", help="end with the results as JSON")
    args = parser.parse_args()
    args.path.parent.mkdir(parents=True, exist_ok=True)
    r = run_all(args.path, nodes=args.nodes, batch_size=args.batch_size)
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    print(f"graph: {r['nodes']:,} nodes, {r['edges']:,} edges ({r['prepare_s']} s to make them)")
    b, s = r["batched"], r["single"]
    print(
        f"writes, batches of {b['batch_size']}: {b['elements_per_s']:,} nodes+edges/s "
        f"({b['seconds']} s for the whole graph)"
    )
    print(f"writes, one per transaction: {s['elements_per_s']:,} nodes+edges/s")
    print(f"load into networkx (a fresh reader): {r['load_s']} s")
    q, lin = r["related_problems"], r["lineage"]
    print(f"related-problem queries (BM25, k=3): {q['per_s']:,} /s")
    print(
        f"lineage queries: {lin['per_s']:,} /s ({lin['mean_ancestors']:.1f} ancestors on average)"
    )
    print(f"file: {r['file_bytes'] / 2**20:.1f} MiB; peak RSS {r['max_rss_mib']} MiB")
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
