"""Benchmark SFT throughput and MFU: a ~125M Llama in bf16, a plain loop and the TRL path.

    .venv/bin/python scripts/bench_mfu.py                      # 125m on the GPU, both paths
    .venv/bin/python scripts/bench_mfu.py --size tiny          # a CPU check (fp32, seconds)
    .venv/bin/python scripts/bench_mfu.py --path loop --steps 50 --json

Prints, per path, tokens/s, the achieved model TFLOP/s (6 N + 12 L d T per token, PaLM), the
device's peak dense bf16 TFLOP/s (H100, H200, A100; n/a elsewhere) and MFU, and with --json
one JSON line at the end. The logic (sizes, FLOP counts, the peak table) lives in
:mod:`llm_trainer.benchmarks.perf.mfu`.
"""

from __future__ import annotations

import argparse
import tempfile


def main() -> None:
    from llm_trainer.benchmarks.perf.mfu import SIZES, as_json, bench_loop, bench_trl

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="125m")
    parser.add_argument("--path", choices=("both", "loop", "trl"), default="both")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="end with the results as JSON")
    args = parser.parse_args()

    options = {
        "steps": args.steps,
        "warmup": args.warmup,
        "device": args.device,
        "precision": args.precision,
        "seed": args.seed,
    }
    results = []
    if args.path in ("both", "loop"):
        results.append(bench_loop(args.size, **options))
        print(results[-1].summary(), flush=True)
    if args.path in ("both", "trl"):
        with tempfile.TemporaryDirectory(prefix="bench-mfu-") as tmp:
            results.append(bench_trl(args.size, tmp, **options))
        print(results[-1].summary(), flush=True)
    if args.json:
        print(as_json(results))


if __name__ == "__main__":
    main()
