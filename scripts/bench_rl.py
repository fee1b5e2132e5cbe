"""Online RL throughput and learning on a fixed budget: PPO (ours) and GRPO (TRL).

Both start from the same weak calculator agent (a short SFT of the quickstart model, built here
unless ``--model DIR`` names one) and train on Calculator-v0 difficulty 1 for a fixed budget.
Printed per algorithm: iterations (PPO) or optimizer steps (GRPO) per minute, env steps/s and
generated tokens/s during rollouts, the share of time spent generating vs updating, and
held-out greedy reward and success (200 episodes) before and after.

    .venv/bin/python scripts/bench_rl.py                    # about 10 minutes on 2 CPU cores
    .venv/bin/python scripts/bench_rl.py --model runs/<run>/final_model --ppo-iterations 10
    .venv/bin/python scripts/bench_rl.py --json             # one JSON object on the last line

On a GPU, ``--precision bf16`` trains in bf16 and the peak GPU memory is reported.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

ENV_ID = "LLMTrainer/Calculator-v0"
HELD_OUT = range(1_000_000, 1_000_200)


def held_out(model: Any, tokenizer: Any) -> dict[str, float]:
    from llm_trainer.algorithms.evaluation import evaluate_model

    metrics, _ = evaluate_model(
        model, tokenizer, ENV_ID, HELD_OUT, difficulty=1, system_prompt="", max_new_tokens=80
    )
    return metrics


def load(model_dir: Path, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    return model, AutoTokenizer.from_pretrained(model_dir)


def reset_peak_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gpu_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def bench_ppo(model_dir: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from llm_trainer.algorithms.config import RewardConfig, TrainConfig
    from llm_trainer.algorithms.ppo import PPOSettings, PPOTrainer
    from llm_trainer.core.rundir import RunDir

    reset_peak_gpu()
    model, tokenizer = load(model_dir, args.device)
    before = held_out(model, tokenizer)
    trainer = PPOTrainer(
        model,
        tokenizer,
        TrainConfig(
            max_steps=args.ppo_iterations,
            batch_size=32,
            learning_rate=args.ppo_lr,
            lr_scheduler="constant",
            warmup_steps=0,
            precision=args.precision,
        ),
        PPOSettings(
            env_id=ENV_ID,
            difficulty=1,
            episodes_per_iteration=args.episodes,
            max_new_tokens=80,
            kl_coef=0.01,
            temperature=args.temperature,
            backend=args.ppo_backend,
        ),
        RewardConfig(),
        RunDir.create(out, "ppo", {}, 0),
        seed=0,
        system_prompt="",
        model_dir=model_dir,
    )
    result = trainer.train()
    after = held_out(trainer.model, tokenizer)
    busy = trainer.generation_seconds + trainer.update_seconds
    return {
        "algorithm": "PPO",
        "budget": f"{result.steps} iterations x {args.episodes} episodes",
        "seconds": round(result.seconds, 1),
        "updates_per_minute": round(60 * result.steps / result.seconds, 2),
        "env_steps_per_second": round(trainer.env_steps / trainer.generation_seconds, 1),
        "generated_tokens_per_second": round(
            trainer.tokens_generated / trainer.generation_seconds, 1
        ),
        "generation_share": round(trainer.generation_seconds / busy, 3),
        "update_share": round(trainer.update_seconds / busy, 3),
        "reward_before": before["mean_reward"],
        "reward_after": after["mean_reward"],
        "success_before": before["success"],
        "success_after": after["success"],
        "peak_gpu_gib": peak_gpu_gib(),
    }


def bench_grpo(model_dir: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from llm_trainer.algorithms.config import RewardConfig, TrainConfig
    from llm_trainer.algorithms.grpo import GRPOSettings, GRPOTrainer
    from llm_trainer.core.rundir import RunDir

    reset_peak_gpu()
    model, tokenizer = load(model_dir, args.device)
    before = held_out(model, tokenizer)
    trainer = GRPOTrainer(
        model,
        tokenizer,
        TrainConfig(
            max_steps=args.grpo_steps,
            batch_size=args.episodes,
            learning_rate=args.grpo_lr,
            lr_scheduler="constant",
            warmup_steps=0,
            logging_steps=1,
            precision=args.precision,
        ),
        GRPOSettings(
            env_id=ENV_ID,
            difficulty=1,
            prompts=args.episodes * args.grpo_steps,
            num_generations=8,
            max_completion_length=80,
            max_turns=2,
            temperature=args.temperature,
        ),
        RewardConfig(),
        RunDir.create(out, "grpo", {}, 0),
        seed=0,
        system_prompt="",
    )
    result = trainer.train()
    after = held_out(trainer.model, tokenizer)
    stats = trainer.rollout_stats
    env_steps = getattr(stats, "env_steps", None)
    return {
        "algorithm": "GRPO (TRL)",
        "budget": f"{result.steps} steps x {args.episodes} episodes",
        "seconds": round(result.seconds, 1),
        "updates_per_minute": round(60 * result.steps / result.seconds, 2),
        "env_steps_per_second": (
            round(env_steps / stats.generation_seconds, 1) if env_steps is not None else None
        ),
        "generated_tokens_per_second": round(stats.generated_tokens_per_second, 1),
        "generation_share": round(stats.generation_seconds / result.seconds, 3),
        "update_share": round(1 - stats.generation_seconds / result.seconds, 3),
        "reward_before": before["mean_reward"],
        "reward_after": after["mean_reward"],
        "success_before": before["success"],
        "success_after": after["success"],
        "peak_gpu_gib": peak_gpu_gib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="Starting agent (default: built here).")
    parser.add_argument("--ppo-iterations", type=int, default=10)
    parser.add_argument("--ppo-lr", type=float, default=1e-4)
    parser.add_argument("--ppo-backend", choices=("transformers", "vllm"), default="transformers")
    parser.add_argument("--grpo-steps", type=int, default=20)
    parser.add_argument("--grpo-lr", type=float, default=1e-4)
    parser.add_argument("--episodes", type=int, default=64, help="Episodes per update.")
    parser.add_argument("--temperature", type=float, default=0.7, help="Rollout temperature.")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--only", choices=("ppo", "grpo"), help="Run one algorithm.")
    parser.add_argument("--json", action="store_true", help="Print a JSON summary last.")
    args = parser.parse_args()

    from llm_trainer.algorithms.config import load_experiment
    from llm_trainer.algorithms.experiment import run_experiment

    out = Path(tempfile.mkdtemp(prefix="bench-rl-"))
    model_dir = args.model
    if model_dir is None:
        start = time.perf_counter()
        weak = Path(__file__).resolve().parent.parent / "configs" / "calculator_weak_sft.yaml"
        summary = run_experiment(load_experiment(weak, [f"output_dir={out}"]))
        model_dir = Path(summary["model_dir"])
        print(f"built the starting agent (SFT to 25% validation success) in "
              f"{time.perf_counter() - start:.0f} s: {model_dir}")  # fmt: skip
    rows = []
    if args.only in (None, "ppo"):
        rows.append(bench_ppo(model_dir, args, out))
    if args.only in (None, "grpo"):
        rows.append(bench_grpo(model_dir, args, out))
    header = (
        f"{'algorithm':<11} {'budget':<28} {'s':>6} {'upd/min':>8} {'env st/s':>9} "
        f"{'gen tok/s':>10} {'gen %':>6} {'reward':>16} {'success':>14}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['algorithm']:<11} {r['budget']:<28} {r['seconds']:>6.0f} "
            f"{r['updates_per_minute']:>8.2f} {r['env_steps_per_second'] or float('nan'):>9.1f} "
            f"{r['generated_tokens_per_second']:>10.1f} {100 * r['generation_share']:>5.0f}% "
            f"{r['reward_before']:>+7.3f} -> {r['reward_after']:>+6.3f} "
            f"{r['success_before']:>5.1%} -> {r['success_after']:>5.1%}"
        )
    if args.json:
        print(json.dumps({"model": str(model_dir), "results": rows}))


if __name__ == "__main__":
    main()
