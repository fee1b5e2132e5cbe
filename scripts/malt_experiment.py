"""Does MALT training help? Single agent vs untrained team vs MALT-trained team, on CPU.

The experiment of issue 13 (seed 002; Motwani et al., arXiv 2412.01928), sized for a laptop:

1. **Warm start** (shared by every seed): the tiny model, trained from scratch by SFT on
   oracle demonstrations of the three MALT roles on ``Reasoning-v0`` problems, rendered exactly
   as ``LLMTrainer/MALT-v0`` shows them. Generator: the worked solution and answer. Verifier:
   on a solution shown right or (half the time) with a wrong answer, "correct" or "the answer
   X is wrong; the correct answer is Y". Refiner: the right answer. This stands in for the
   paper's instruction-tuned base model, which can already play each role.
2. **Per seed**: MALT data generation from the warm model (``TrainingDataGenerator``: n
   generator, n^2 verifier, n^3 refiner samples per question, checker-scored leaves, value
   iteration, per-role SFT sets and sibling DPO pairs), then SFT then DPO for each role
   (:func:`~llm_trainer.algorithms.malt.train_roles`), saved as a team.
3. **Evaluation** on the same held-out problems for every seed and condition:

   * ``single``: the warm model answering alone (the generator's own answer);
   * ``team``: the warm model in all three roles (the refiner's answer);
   * ``malt``: the MALT-trained team; ``malt_generator``: its trained generator alone;
   * each greedy (``@1``) and with a majority vote over 3 chains sampled at
     ``--vote-temperature`` (``@3``).

Accuracies come with 95% stratified-bootstrap intervals (problems resampled within seeds);
the comparisons are paired on the same (seed, problem) rows: the mean difference with its
paired-bootstrap interval, a sign-flip permutation p-value and Holm's correction. The result
is reported whatever its sign. Writes ``results.json``, ``per_problem.jsonl`` and
``accuracy.png`` into ``--out``.

    python scripts/malt_experiment.py            # 5 seeds, about 30 CPU-minutes on 2 cores
    python scripts/malt_experiment.py --quick    # a smoke run (about 2 minutes)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import llm_trainer
from llm_trainer.core.seeding import derive_seed

ROLES = ("generator", "verifier", "refiner")
#: Conditions in the order they are reported.
CONDITIONS = (
    "single@1",
    "team@1",
    "malt@1",
    "malt_generator@1",
    "single@3",
    "team@3",
    "malt@3",
    "malt_generator@3",
)
#: The paired comparisons (candidate, baseline).
COMPARISONS = (
    ("malt@1", "single@1"),
    ("malt@1", "team@1"),
    ("team@1", "single@1"),
    ("malt_generator@1", "single@1"),
    ("malt@3", "single@3"),
    ("malt@3", "team@3"),
    ("team@3", "single@3"),
    ("single@3", "single@1"),
)
EVAL_OFFSET = 1_000_000
WARM_OFFSET = 2_000_000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the warm start ------------------------------------------------------------------------------


def _wrong_answer(env: Any, task: Any, rng: np.random.Generator) -> str | None:
    """A plausible answer the checker rejects (``None`` when none is found)."""
    answer = str(task.answer)
    candidates: list[str] = []
    if answer.lstrip("-").isdigit():
        candidates = [str(int(answer) + int(k)) for k in rng.permutation([-3, -2, -1, 1, 2, 3])]
    else:
        names = sorted({w.strip('.,:"') for w in task.statement.split() if w[:1].isupper()})
        names = [n for n in names if n.isalpha() and n not in ("Knights", "Who", "Answer", "List")]
        items = [a.strip() for a in answer.split(",")]
        if len(items) > 1:
            candidates.append(", ".join(reversed(items)))
        candidates += [str(n) for n in rng.permutation(names)] + ["none"]
    for candidate in candidates:
        if not env.unwrapped.evaluate(task, candidate).correct:
            return candidate
    return None


def warm_start_demos(
    problems: int, difficulty: int, seed: int, config: Mapping[str, Any]
) -> list[Any]:
    """One oracle demonstration per role per problem, as one-step trajectories."""
    from llm_trainer.core.trajectory import Step, Trajectory
    from llm_trainer.envs.multiagent.malt import SYSTEM_PROMPTS, MALTRound, render_view

    env = llm_trainer.make_multiagent(
        "LLMTrainer/MALT-v0", difficulty=difficulty, config=dict(config)
    )
    rng = np.random.default_rng([seed, 7])
    demos = []
    for i in range(problems):
        problem_seed = WARM_OFFSET + i
        env.reset(seed=problem_seed)
        task = env.unwrapped.task
        right = str(task.answer)
        solution = f"{task.solution}\n" if task.solution else ""
        good = f"{solution}<answer>{right}</answer>"
        wrong = _wrong_answer(env, task, rng) if rng.random() < 0.5 else None
        shown = good if wrong is None else f"{solution}<answer>{wrong}</answer>"
        if wrong is None:
            critique = "The solution is correct: every step checks out."
        else:
            critique = f"The answer {wrong} is wrong; the correct answer is {right}."
        texts = {
            "generator": (render_view("generator", task.statement), good),
            "verifier": (render_view("verifier", task.statement, MALTRound(shown)), critique),
            "refiner": (
                render_view("refiner", task.statement, MALTRound(shown, critique)),
                f"<answer>{right}</answer>",
            ),
        }
        for role, (prompt, action) in texts.items():
            step = Step(
                action=action,
                observation="",
                role="user",
                reward=1.0,
                terminated=True,
                truncated=False,
                metrics=dict.fromkeys(
                    ("format_ok", "tool_correct", "exec_ok", "answer_correct", "success"), True
                ),
            )
            demos.append(
                Trajectory(
                    env_id="LLMTrainer/MALT-v0",
                    seed=problem_seed,
                    difficulty=difficulty,
                    system_prompt=SYSTEM_PROMPTS[role],
                    tools=(),
                    prompt=prompt,
                    steps=(step,),
                    source="oracle:malt-warm-start",
                )
            )
    return demos


# -- evaluation ----------------------------------------------------------------------------------


def evaluate(
    roles: Mapping[str, Any], tasks: Sequence[Any], env: Any, votes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Correctness per problem of the generator's answer and the team's (majority) answer."""
    from llm_trainer.agents.team import MALTTeam, majority
    from llm_trainer.envs.multiagent.malt import read_last_answer

    team = MALTTeam(roles, votes=votes)
    chains = team.solve(
        [t.statement for t in tasks], [derive_seed(seed, "eval", i) for i in range(len(tasks))]
    )

    def correct(task: Any, answers: list[str | None]) -> bool:
        winner = majority(answers)
        return winner is not None and env.unwrapped.evaluate(task, answers[winner]).correct

    single = [
        correct(t, [read_last_answer(c.solution) for c in per])
        for t, per in zip(tasks, chains, strict=True)
    ]
    team_ok = [correct(t, [c.answer for c in per]) for t, per in zip(tasks, chains, strict=True)]
    return np.array(single, dtype=float), np.array(team_ok, dtype=float)


def role_agents(models: Mapping[str, Any], tokenizer: Any, temperature: float, args: Any) -> dict:
    from llm_trainer.algorithms.evaluation import model_agent

    built: dict[int, Any] = {}
    for model in models.values():
        if id(model) not in built:
            built[id(model)] = model_agent(
                model, tokenizer, max_new_tokens=args.max_new_tokens, temperature=temperature
            )
    return {role: built[id(models[role])] for role in ROLES}


# -- the run -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--difficulty", type=int, default=1)
    parser.add_argument(
        "--kinds",
        default="arithmetic,ordering",
        help="Reasoning-v0 problem kinds (comma-separated; also knights)",
    )
    parser.add_argument("--warm-problems", type=int, default=3000)
    parser.add_argument("--warm-steps", type=int, default=1200)
    parser.add_argument("--warm-lr", type=float, default=1e-3)
    parser.add_argument("--questions", type=int, default=24, help="MALT trees per seed")
    parser.add_argument("--branching", type=int, default=3, help="n (the paper's 3)")
    parser.add_argument("--data-temperature", type=float, default=0.7)
    parser.add_argument("--sft-steps", type=int, default=40)
    parser.add_argument("--dpo-steps", type=int, default=20)
    parser.add_argument("--dpo-beta", type=float, default=0.1)
    parser.add_argument("--role-lr", type=float, default=2e-4, help="per-role SFT and DPO")
    parser.add_argument("--eval-problems", type=int, default=100)
    parser.add_argument("--vote-temperature", type=float, default=0.7)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=192)
    parser.add_argument("--out", type=Path, default=Path("runs/malt_experiment"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.warm_problems, args.warm_steps = 2, 200, 30
        args.questions, args.branching, args.eval_problems = 4, 2, 12
        args.sft_steps, args.dpo_steps, args.max_new_tokens = 4, 4, 24
        args.layers, args.hidden = 1, 64

    from transformers import AutoModelForCausalLM

    from llm_trainer.agents.tinylm import TinyLMConfig
    from llm_trainer.algorithms.base import AlgorithmContext
    from llm_trainer.algorithms.config import ExperimentConfig, ModelConfig, TrainConfig
    from llm_trainer.algorithms.malt import TrainingDataGenerator, train_roles
    from llm_trainer.algorithms.models import load_model
    from llm_trainer.algorithms.sft import SFTTrainer
    from llm_trainer.benchmarks.stats import bootstrap_ci, paired_family
    from llm_trainer.core.rundir import RunDir

    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    tiny = TinyLMConfig(
        n_layers=args.layers,
        hidden_size=args.hidden,
        n_heads=max(1, args.hidden // 32),
        intermediate_size=args.hidden * 8 // 3 // 8 * 8,
    )
    family_config = {"kinds": [k.strip() for k in args.kinds.split(",") if k.strip()]}
    train = TrainConfig(
        max_steps=args.warm_steps,
        batch_size=16,
        learning_rate=args.warm_lr,
        adam_beta2=0.98,
        warmup_steps=min(20, args.warm_steps // 10),
        max_length=1024,
        logging_steps=50,
    )
    # The warm start is shared by every seed and kept: a rerun with the same settings reuses it.
    warm_key = {
        "model": dataclasses.asdict(tiny),
        "warm_problems": args.warm_problems,
        "warm_steps": args.warm_steps,
        "warm_lr": args.warm_lr,
        "difficulty": args.difficulty,
        "kinds": family_config["kinds"],
    }
    warm_dir = out / "warm_model"
    key_file = warm_dir / "warm_start.json"
    if key_file.is_file() and json.loads(key_file.read_text()) == warm_key:
        log(f"warm start: reusing {warm_dir}")
        warm, tokenizer = load_model(ModelConfig(path=str(warm_dir)), warm_dir)
    else:
        model, tokenizer = load_model(ModelConfig(tiny=tiny), out / "init_model", seed=0)
        demos = warm_start_demos(args.warm_problems, args.difficulty, 0, family_config)
        log(f"warm start: SFT on {len(demos)} role demonstrations, {args.warm_steps} steps")
        sft = SFTTrainer(model, tokenizer, train, RunDir(out / "warm_start"), seed=0)
        sft.train(demos)
        warm = sft.model
        warm.save_pretrained(warm_dir)
        tokenizer.save_pretrained(warm_dir)
        key_file.write_text(json.dumps(warm_key, indent=2) + "\n")
    warm.eval()

    env = llm_trainer.make_multiagent(
        "LLMTrainer/MALT-v0", difficulty=args.difficulty, config=family_config
    )
    tasks = []
    for i in range(args.eval_problems):
        env.reset(seed=EVAL_OFFSET + i)
        tasks.append(env.unwrapped.task)
    greedy_warm = role_agents(dict.fromkeys(ROLES, warm), tokenizer, 0.0, args)
    warm_single_1, warm_team_1 = evaluate(greedy_warm, tasks, env, 1, 0)
    log(f"warm start: single@1 {warm_single_1.mean():.3f}, team@1 {warm_team_1.mean():.3f}")

    per_seed: list[dict[str, Any]] = []
    rows: dict[str, list[np.ndarray]] = {c: [] for c in CONDITIONS}
    for seed in range(args.seeds):
        log(f"seed {seed}: MALT data from {args.questions} questions, n = {args.branching}")
        generator = TrainingDataGenerator(
            (warm, tokenizer),
            branching_factor=args.branching,
            temperature=args.data_temperature,
            max_new_tokens=args.max_new_tokens,
            env_kwargs={
                "family": "reasoning",
                "difficulty": args.difficulty,
                "config": family_config,
            },
            seed=seed,
        )
        first = 10_000 * (seed + 1)
        data = generator.generate(range(first, first + args.questions))
        summary = data.summary()
        experiment = ExperimentConfig(
            name=f"malt-seed{seed}",
            algorithm="malt",
            seed=seed,
            train=replace(
                train, max_steps=1, learning_rate=args.role_lr, warmup_steps=0, logging_steps=10
            ),
        )
        context = AlgorithmContext(experiment, RunDir(out / f"seed{seed}"), log=log)
        saved = train_roles(
            context,
            warm,
            tokenizer,
            data,
            args.sft_steps,
            dpo_steps=args.dpo_steps,
            dpo_beta=args.dpo_beta,
            max_new_tokens=args.max_new_tokens,
        )
        trained = {r: AutoModelForCausalLM.from_pretrained(saved[f"{r}_model"]) for r in ROLES}
        sampled_warm = role_agents(
            dict.fromkeys(ROLES, warm), tokenizer, args.vote_temperature, args
        )
        results = {"single@1": warm_single_1, "team@1": warm_team_1}
        results["single@3"], results["team@3"] = evaluate(sampled_warm, tasks, env, 3, seed)
        malt_greedy = role_agents(trained, tokenizer, 0.0, args)
        results["malt_generator@1"], results["malt@1"] = evaluate(malt_greedy, tasks, env, 1, 0)
        malt_sampled = role_agents(trained, tokenizer, args.vote_temperature, args)
        results["malt_generator@3"], results["malt@3"] = evaluate(malt_sampled, tasks, env, 3, seed)
        for condition in CONDITIONS:
            rows[condition].append(results[condition])
        accuracy = {c: round(float(results[c].mean()), 4) for c in CONDITIONS}
        per_seed.append(
            {
                "seed": seed,
                "accuracy": accuracy,
                "malt_data": {
                    "leaf_reward": summary.get("mean_leaf_reward"),
                    "roles": {
                        r: {k: v[k] for k in ("examples", "positives", "pairs", "pair_yield")}
                        for r, v in summary["roles"].items()
                    },
                },
            }
        )
        log(f"seed {seed}: " + ", ".join(f"{c} {a:.3f}" for c, a in accuracy.items()))
        del trained

    strata = np.repeat(np.arange(args.seeds), args.eval_problems)
    flat = {c: np.concatenate(rows[c]) for c in CONDITIONS}
    accuracy = {}
    for c in CONDITIONS:
        interval = bootstrap_ci(flat[c], strata)
        per_seed_means = [float(r.mean()) for r in rows[c]]
        accuracy[c] = {
            "mean": interval.mean,
            "ci_low": interval.low,
            "ci_high": interval.high,
            "per_seed": per_seed_means,
        }
    comparisons = paired_family(flat, COMPARISONS, strata)
    result = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": {"layers": tiny.n_layers, "hidden": tiny.hidden_size, "heads": tiny.n_heads},
        "accuracy": accuracy,
        "comparisons": comparisons,
        "per_seed": per_seed,
        "minutes": round((time.perf_counter() - started) / 60, 1),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    with (out / "per_problem.jsonl").open("w") as handle:
        for s in range(args.seeds):
            for i in range(args.eval_problems):
                row = {"seed": s, "problem_seed": EVAL_OFFSET + i}
                row.update({c: int(rows[c][s][i]) for c in CONDITIONS})
                handle.write(json.dumps(row) + "\n")
    report(result)
    plot(result, out / "accuracy.png")
    return result


def report(result: Mapping[str, Any]) -> None:
    from llm_trainer.benchmarks.stats import comparison_lines

    print(f"\nMALT experiment: {result['settings']['seeds']} seeds x "
          f"{result['settings']['eval_problems']} problems, {result['minutes']} min")  # fmt: skip
    print(f"{'condition':<20} {'accuracy':>8}  95% CI")
    for c, a in result["accuracy"].items():
        print(f"{c:<20} {a['mean']:8.3f}  [{a['ci_low']:.3f}, {a['ci_high']:.3f}]")
    print()
    print("\n".join(comparison_lines(result["comparisons"])))


def plot(result: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["accuracy"])
    means = [result["accuracy"][c]["mean"] for c in names]
    low = [m - result["accuracy"][c]["ci_low"] for c, m in zip(names, means, strict=True)]
    high = [result["accuracy"][c]["ci_high"] - m for c, m in zip(names, means, strict=True)]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(names, means, yerr=[low, high], capsize=4, color="#4c72b0")
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_title(f"MALT on Reasoning-v0, {result['settings']['seeds']} seeds")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
