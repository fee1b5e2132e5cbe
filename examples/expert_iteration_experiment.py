"""Does expert iteration raise held-out success? Several seeds, paired on the same episodes.

From one weak calculator agent (``configs/calculator_weak_sft.yaml``, built here unless
``--weak DIR`` names one), run ``configs/expert_iteration.yaml`` (the built-in ``algorithm:
expert_iteration``) with seeds 0..N-1, evaluate each result greedily on the same held-out
episodes as the starting agent, and report the gain per seed, its mean with a 95% t-interval
over seeds, and a paired bootstrap interval and sign-flip p-value over all (seed, episode)
pairs. Whatever the sign.

    .venv/bin/python examples/expert_iteration_experiment.py --seeds 5 [--weak DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from scipy import stats as scipy_stats

from llm_trainer.algorithms.config import load_experiment
from llm_trainer.algorithms.evaluation import evaluate_model
from llm_trainer.algorithms.experiment import run_experiment
from llm_trainer.benchmarks.stats import paired_compare

ROOT = Path(__file__).resolve().parent.parent
HELD_OUT = range(1_000_000, 1_000_200)


def outcomes(model_dir: Path) -> list[float]:
    """Greedy success (0/1) on each held-out episode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    _, trajectories = evaluate_model(
        model, tokenizer, "LLMTrainer/Calculator-v0", HELD_OUT, difficulty=1,
        system_prompt="", max_new_tokens=80,
    )  # fmt: skip
    return [float(t.success) for t in trajectories]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--weak", type=Path, help="The starting agent (default: built here).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="ei-experiment-"))
    weak = args.weak
    if weak is None:
        config = load_experiment(
            ROOT / "configs" / "calculator_weak_sft.yaml", [f"output_dir={out}"]
        )
        weak = Path(run_experiment(config, log=lambda m: None)["model_dir"])
    before = outcomes(weak)
    afters, rows = [], []
    for seed in range(args.seeds):
        config = load_experiment(
            ROOT / "configs" / "expert_iteration.yaml",
            [f"model.path={weak}", f"output_dir={out}", f"seed={seed}"],
        )
        summary = run_experiment(config, log=lambda m: None)
        after = outcomes(Path(summary["model_dir"]))
        afters.append(after)
        row = {
            "seed": seed,
            "before": statistics.fmean(before),
            "after": statistics.fmean(after),
            "kept_per_round": summary["kept_per_round"],
            "wall_seconds": summary["wall_seconds"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    gains = [r["after"] - r["before"] for r in rows]
    mean = statistics.fmean(gains)
    half = (
        scipy_stats.t.ppf(0.975, len(gains) - 1) * statistics.stdev(gains) / len(gains) ** 0.5
        if len(gains) > 1
        else float("nan")
    )
    paired = paired_compare([x for after in afters for x in after], before * len(afters), seed=0)
    report = {
        "seeds": args.seeds,
        "held_out_episodes": len(before),
        "success_before": statistics.fmean(before),
        "success_after_per_seed": [r["after"] for r in rows],
        "gain_mean": mean,
        "gain_95ci_over_seeds": [mean - half, mean + half],
        "paired_difference": paired.difference.mean,
        "paired_95ci": [paired.difference.low, paired.difference.high],
        "paired_p_value": paired.p_value,
        "wall_seconds_mean": statistics.fmean(r["wall_seconds"] for r in rows),
    }
    print(
        f"expert iteration over {args.seeds} seeds: held-out success "
        f"{report['success_before']:.3f} -> mean gain {mean:+.3f} "
        f"[{mean - half:+.3f}, {mean + half:+.3f}] (95% t-interval over seeds); paired over "
        f"{paired.n_pairs} (seed, episode) pairs {paired.difference.mean:+.3f} "
        f"[{paired.difference.low:+.3f}, {paired.difference.high:+.3f}], p = {paired.p_value:.2g}"
    )
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
