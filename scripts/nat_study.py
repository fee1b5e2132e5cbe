"""Do negatives help at low data? Positive-only SFT vs NAT vs naive mixing vs DPO, on CPU.

The study of issue 15 (item 5; Wang et al., "Learning From Failure", arXiv 2402.11651), sized
for the tiny model on two CPU cores. For every seed, every number of positives ``n`` (low data:
100, 300, 1,000) and every negative:positive ratio ``r`` (0, 1, 2, 5, 10):

* **Positives**: the oracle's env-verified trajectories (``oracle_trajectories``) of ``n``
  training tasks of the training env(s) (seeds ``10,000,000 + 1,000,000 * seed`` on, disjoint
  from the held-out seeds ``1,000,000 ..``); the ``n`` of a smaller size are the first ``n`` of
  a larger one.
* **Negatives**: the NAT module's negatives of those positives: ``targeted`` (each positive
  perturbed at a failure mode and replayed, kept when the env fails it in that mode:
  ``replay_perturbations``) or ``corrupted`` (a wrong final answer: ``corrupted_negatives``),
  made once per (seed, ``n``) for the largest ratio and picked with ``choose_negatives``
  (``round(r * n)`` of them). Every method at a given (seed, ``n``, ``r``) trains on the same
  negatives, so the comparisons are paired.
* **Methods** (each trained from the same starting model, with the same seed):

  ====================  ===================================================================
  ``sft``               positives only (ratio 0; every method's point at ratio 0 is this
                        model)
  ``nat``               NAT: positives and negatives, the task's turn saying which
                        (``NATTrainer``); evaluated with the positive instruction
  ``naive``             naive mixing: the negatives trained as if they were positives
                        (plain SFT rows of every trajectory)
  ``dpo``               the ``sft`` model of the same (seed, ``n``), then DPO on the same
                        pairs: each negative against the positive of its task, at their first
                        differing action (``pair_trajectories``)
  ====================  ===================================================================

  ``sft``, ``nat`` and ``naive`` take the same optimizer steps (``--budget steps``; with
  ``--budget epochs`` each takes as many steps as ``--epochs`` passes over its rows need);
  ``dpo`` adds ``--dpo-steps`` to its ``sft`` model's (``train_seconds`` is the DPO stage's,
  ``mean_with_sft`` adds the SFT stage's).
* **Starting model**: the tiny model of ``quickstart_config`` (2 layers, 192 wide, 16 heads)
  built from scratch, its initialisation seeded by the seed; or ``--start-model DIR`` (e.g. the
  weak agent of ``configs/calculator_weak_sft.yaml``), the same for every seed.

Measured on the same held-out episodes (greedy; ``--eval-episodes`` per env, the same seeds for
every condition and seed): held-out success of the starting model and of every trained model
with 95% intervals (stratified bootstrap: episodes resampled within seeds), paired comparisons
on the same (seed, episode) rows (``paired_compare``: the mean difference with its paired
bootstrap interval and a sign-flip p-value, Holm-adjusted over the family), sample efficiency
(success per 1,000 training examples, per 1,000 positives, and the gain over the starting model
per 1,000 training examples), training time per condition, and the failure modes (``mine``) of
the starting model's and of every trained model's held-out episodes. ``--transfer-envs``
evaluates the same models on other envs (train on Calculator, evaluate on MultiTool): reported
separately, with their own Holm family. Everything is seeded (no global RNG is read or set by
this script; the trainers restore torch's).

Writes into ``--out``: ``results.json``, ``per_episode.jsonl`` (one row per held-out episode of
every model), ``success.png`` (success vs ratio per method, one panel per data size and env,
with 95% intervals) and ``failure_modes.png`` (before: the starting model; after: each method
at ``--chart-ratio`` and the largest data size).

A killed or extended study resumes: each finished cell is recorded (atomically) beside its run
directory as ``seed<s>/n<n>/<method>_r<r>.json`` with a fingerprint of the settings and of the
exact positives and negatives it trained on; a rerun into the same ``--out`` reuses every cell
whose fingerprint still matches (``--seeds 5`` after ``--seeds 3`` trains only seeds 3 and 4)
and trains the rest. ``--threads`` is not in the fingerprint: a resumed cell may have been
trained with another thread count (its ``threads`` is in ``results.json``'s training records).

    python scripts/nat_study.py            # the full grid: 5 seeds x 3 sizes x 5 ratios
                                           # (not run yet; about 18 h on 2 shared cores)
    python scripts/nat_study.py --quick    # a smoke run (about 15 s)
    python scripts/nat_study.py --transfer-envs LLMTrainer/MultiTool-v0
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import importlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The methods trained on negatives, in the order they are reported.
METHODS = ("nat", "naive", "dpo")
#: Positive-only SFT: the ratio-0 model every method starts its line from.
BASELINE = "sft"
#: The paired comparisons at each (data size, ratio > 0): (candidate, baseline).
COMPARISONS = (
    ("nat", "sft"),
    ("naive", "sft"),
    ("dpo", "sft"),
    ("nat", "naive"),
    ("nat", "dpo"),
)
#: Held-out seeds start here (the CLI's ``eval.first_seed``).
EVAL_OFFSET = 1_000_000
#: Training seeds of study seed ``s`` start at ``TRAIN_OFFSET + TRAIN_STRIDE * s``.
TRAIN_OFFSET = 10_000_000
TRAIN_STRIDE = 1_000_000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cell_key(method: str, ratio: float, positives: int) -> str:
    """The name of one condition: ``nat/r2/n100``."""
    return f"{method}/r{ratio:g}/n{positives}"


# -- data --------------------------------------------------------------------------------------


def positives_of(envs: Sequence[str], count: int, difficulty: int, seed: int) -> list[Any]:
    """``count`` verified oracle trajectories of the training envs, the envs in turn (so any
    prefix is balanced over them), on the training seeds of ``seed``."""
    from llm_trainer.algorithms.rollout import oracle_trajectories

    per_env = math.ceil(count / len(envs))
    first = TRAIN_OFFSET + TRAIN_STRIDE * seed
    columns = []
    for env_id in envs:
        played = oracle_trajectories(env_id, range(first, first + per_env), difficulty=difficulty)
        verified = [t for t in played if t.success and t.error is None]
        if len(verified) < per_env:
            raise RuntimeError(
                f"the oracle solved {len(verified)} of {per_env} {env_id} training tasks; the "
                "study needs verified positives"
            )
        columns.append(verified)
    return [t for row in zip(*columns, strict=True) for t in row][:count]


def negative_pool(
    positives: Sequence[Any], source: str, per_positive: int, seed: int
) -> tuple[list[Any], dict[str, Any]]:
    """The NAT module's negatives of ``positives``: ``per_positive`` draws per positive (and,
    for ``targeted``, per perturbation), replayed and verified by the env."""
    from llm_trainer.algorithms.nat import corrupted_negatives
    from llm_trainer.data.negatives import replay_perturbations

    if source == "corrupted":
        return corrupted_negatives(positives, per_positive=per_positive, seed=seed), {}
    made = replay_perturbations(positives, seed=seed, per_positive=per_positive)
    return list(made.negatives), made.report.to_dict()


def digest(trajectories: Sequence[Any]) -> str:
    """A short hash of the trajectories' tasks and actions (equal for the same negatives)."""
    text = json.dumps([[t.env_id, t.seed, [s.action for s in t.steps]] for t in trajectories])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def slim(trajectory: Any) -> Any:
    """The trajectory without its token records (what failure mining reads stays)."""
    steps = tuple(
        dataclasses.replace(s, prompt_token_ids=(), completion_token_ids=(), logprobs=())
        for s in trajectory.steps
    )
    return dataclasses.replace(trajectory, steps=steps)


# -- training ----------------------------------------------------------------------------------


def train_config(args: argparse.Namespace, rows: int) -> Any:
    from llm_trainer.algorithms.config import TrainConfig

    steps = args.steps
    if args.budget == "epochs":
        steps = max(1, math.ceil(args.epochs * rows / args.batch_size))
    return TrainConfig(
        max_steps=steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        adam_beta2=0.98,
        warmup_steps=min(20, steps // 10),
        logging_steps=max(1, steps // 5),
        save_steps=0,
    )


def dpo_config(args: argparse.Namespace) -> Any:
    from llm_trainer.algorithms.config import TrainConfig

    return TrainConfig(
        max_steps=args.dpo_steps,
        batch_size=args.batch_size,
        learning_rate=args.dpo_lr,
        warmup_steps=min(5, args.dpo_steps // 10),
        logging_steps=max(1, args.dpo_steps // 5),
        save_steps=0,
    )


def train_method(
    method: str,
    start: Any,
    positives: Sequence[Any],
    negatives: Sequence[Any],
    *,
    args: argparse.Namespace,
    run: Path,
    seed: int,
    settings: Any,
) -> tuple[Any, dict[str, Any]]:
    """Train one condition from ``start`` (a loader of the starting model, or for ``dpo`` the
    ``sft`` model); returns the model and what the training did."""
    import torch

    from llm_trainer.algorithms.dpo import DPOSettings, DPOTrainer, pair_trajectories
    from llm_trainer.algorithms.nat import NATTrainer
    from llm_trainer.algorithms.sft import SFTTrainer, chat_rows
    from llm_trainer.core.rundir import RunDir

    began = time.perf_counter()
    system = args.system_prompt
    if method == "dpo":
        model, tokenizer = start
        model = copy.deepcopy(model)
        pairs = pair_trajectories([*positives, *negatives], system, max_pairs_per_task=10**9)
        trainer: Any = DPOTrainer(
            model, tokenizer, dpo_config(args), DPOSettings(beta=args.dpo_beta), RunDir(run),
            seed=seed,
        )  # fmt: skip
        result = trainer.train(pairs)
        examples = {"rows": len(pairs), "pairs": len(pairs)}
    else:
        model, tokenizer = start()
        if method == "nat":
            rows = len(positives) + len(negatives)
            trainer = NATTrainer(
                model, tokenizer, train_config(args, rows), RunDir(run), settings=settings,
                seed=seed, system_prompt=system,
            )  # fmt: skip
            result = trainer.train([*positives, *negatives])
        else:
            data = [*positives, *negatives] if method == "naive" else list(positives)
            trainer = SFTTrainer(
                model, tokenizer, train_config(args, len(data)), RunDir(run), seed=seed,
                system_prompt=system,
            )  # fmt: skip
            result = trainer.train_rows(chat_rows(data, system))
            rows = len(data)
        examples = {"rows": rows}
    trained = trainer.model
    trained.eval()
    return (trained, tokenizer), {
        **examples,
        "steps": result.steps,
        "seconds": round(time.perf_counter() - began, 2),
        "threads": torch.get_num_threads(),
        "final_loss": result.losses[-1][1] if result.losses else None,
    }


def evaluate(
    model: Any, envs: Sequence[str], args: argparse.Namespace, task_template: str | None = None
) -> dict[str, list[Any]]:
    """Greedy held-out episodes of each env (the same seeds for every model)."""
    from llm_trainer.algorithms.evaluation import evaluate_model

    net, tokenizer = model
    out = {}
    for env_id in envs:
        _, played = evaluate_model(
            net,
            tokenizer,
            env_id,
            range(EVAL_OFFSET, EVAL_OFFSET + args.eval_episodes),
            difficulty=args.difficulty,
            system_prompt=args.system_prompt,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.eval_episodes,
            task_template=task_template,
        )
        out[env_id] = [slim(t) for t in played]
    return out


# -- the run -----------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, help="default: 5 (--quick: 2)")
    parser.add_argument("--positives", default="100,300,1000", help="data sizes (comma-separated)")
    parser.add_argument("--ratios", default="0,1,2,5,10", help="negatives per positive")
    parser.add_argument("--negatives", choices=("targeted", "corrupted"), default="targeted")
    parser.add_argument("--template", choices=("paper", "prefix", "meaningless"), default="paper")
    parser.add_argument(
        "--diversity", action="store_true", help="pick negatives spread over failure modes"
    )
    parser.add_argument("--train-envs", default="LLMTrainer/Calculator-v0")
    parser.add_argument(
        "--transfer-envs", default="", help="held-out envs not trained on (reported apart)"
    )
    parser.add_argument("--difficulty", type=int, default=1)
    parser.add_argument("--eval-episodes", type=int, default=200, help="held-out, per env")
    parser.add_argument("--budget", choices=("steps", "epochs"), default="steps")
    parser.add_argument("--steps", type=int, default=300, help="--budget steps: per model")
    parser.add_argument("--epochs", type=float, default=3.0, help="--budget epochs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dpo-steps", type=int, default=50)
    parser.add_argument("--dpo-lr", type=float, default=1e-4)
    parser.add_argument("--dpo-beta", type=float, default=0.1)
    parser.add_argument("--max-new-tokens", type=int, default=80)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=192)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--intermediate", type=int, default=512)
    parser.add_argument("--start-model", type=Path, help="a model directory to start from")
    parser.add_argument(
        "--chart-ratio", type=float, help="failure_modes.png's ratio (default: 1, or the least)"
    )
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's; --quick: 1)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/nat_study"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.positives, args.ratios = "20", "0,1"
        args.steps, args.dpo_steps, args.batch_size, args.eval_episodes = 4, 2, 4, 10
        args.layers, args.hidden, args.heads, args.intermediate = 1, 64, 2, 128
        args.max_new_tokens = 24
        args.threads = 1 if args.threads is None else args.threads
    args.threads = args.threads or 0
    if args.seeds is None:
        args.seeds = 2 if args.quick else 5
    args.system_prompt = ""  # the chat template still lists the tools; shorter sequences
    try:
        args.sizes = sorted({int(v) for v in args.positives.split(",") if v.strip()})
        args.ratio_grid = sorted({float(v) for v in args.ratios.split(",") if v.strip()})
    except ValueError as exc:
        parser.error(f"--positives / --ratios: {exc}")
    args.train_env_ids = [e.strip() for e in args.train_envs.split(",") if e.strip()]
    args.transfer_env_ids = [e.strip() for e in args.transfer_envs.split(",") if e.strip()]
    if args.seeds < 1 or args.eval_episodes < 1 or args.steps < 1 or args.dpo_steps < 1:
        parser.error("--seeds, --eval-episodes, --steps and --dpo-steps must be >= 1")
    if not args.sizes or min(args.sizes) < 1 or max(args.sizes) > TRAIN_STRIDE:
        parser.error(f"--positives: sizes between 1 and {TRAIN_STRIDE}")
    if not args.ratio_grid or min(args.ratio_grid) < 0:
        parser.error("--ratios: non-negative ratios")
    if args.eval_episodes > TRAIN_OFFSET - EVAL_OFFSET:
        parser.error("--eval-episodes: held-out seeds would reach the training seeds")
    if not args.train_env_ids or set(args.train_env_ids) & set(args.transfer_env_ids):
        parser.error("--train-envs: at least one, none of them in --transfer-envs")
    from llm_trainer.algorithms.config import check_env
    from llm_trainer.core.errors import ConfigError

    for env_id in [*args.train_env_ids, *args.transfer_env_ids]:
        try:
            check_env(env_id, args.difficulty, "--envs")
        except ConfigError as exc:
            parser.error(str(exc))
    if args.start_model is not None and not (args.start_model / "config.json").is_file():
        parser.error(f"--start-model: {args.start_model} is not a model directory")
    ratios = [r for r in args.ratio_grid if r > 0]
    if args.chart_ratio is None:
        args.chart_ratio = 1.0 if 1.0 in ratios else (ratios[0] if ratios else 0.0)
    elif args.chart_ratio not in [0.0, *ratios]:
        parser.error(f"--chart-ratio: one of the grid's ratios {args.ratio_grid}")
    return args


def conditions(args: argparse.Namespace) -> list[tuple[str, float]]:
    """``(method, ratio)`` in training order: ``sft`` (ratio 0) first (``dpo`` starts there)."""
    return [(BASELINE, 0.0)] + [(m, r) for r in args.ratio_grid if r > 0 for m in METHODS]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)

    import datasets
    import transformers

    from llm_trainer.agents.tinylm import TinyLMConfig
    from llm_trainer.algorithms.hf import torch_threads

    datasets.disable_progress_bars()  # a line per dataset pass and model load otherwise
    transformers.utils.logging.disable_progress_bar()
    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    tiny = TinyLMConfig(
        n_layers=args.layers,
        hidden_size=args.hidden,
        n_heads=args.heads,
        intermediate_size=args.intermediate,
    )
    grid = conditions(args)
    with torch_threads(args.threads):
        episodes, training, negatives_made = run_grid(args, grid, tiny, out)
    result = summarize(args, grid, episodes, training, tiny)
    result["negatives"] = negatives_made
    result["minutes"] = round((time.perf_counter() - started) / 60, 2)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    write_episodes(out / "per_episode.jsonl", args, episodes)
    report(result)
    plot_success(result, out / "success.png")
    plot_modes(args, episodes, out / "failure_modes.png")
    return result


def run_grid(
    args: argparse.Namespace, grid: Sequence[tuple[str, float]], tiny: Any, out: Path
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Train and evaluate every condition of every seed and data size.

    Returns:
        The held-out episodes (``[key][env]``: one list of trajectories per seed; ``start`` is
        the starting model), what each training did (``[key]``: one record per seed), and the
        negative pools made (one record per seed and data size).
    """
    from llm_trainer.algorithms.config import ModelConfig
    from llm_trainer.algorithms.models import load_model
    from llm_trainer.algorithms.nat import NATSettings, choose_negatives
    from llm_trainer.analysis.failure_modes import classify

    # imported before the clock starts, so the first model's training time is not the imports'
    for module in ("trl.trainer.sft_trainer", "trl.trainer.dpo_trainer"):
        importlib.import_module(module)

    eval_envs = [*args.train_env_ids, *args.transfer_env_ids]
    episodes: dict[str, dict[str, list[list[Any]]]] = {}
    training: dict[str, list[dict[str, Any]]] = {}
    negatives_made: list[dict[str, Any]] = []
    start_cache: dict[str, list[Any]] | None = None

    for seed in range(args.seeds):
        if args.start_model is None:
            init_dir = out / f"seed{seed}" / "init_model"
            config = ModelConfig(path="tiny", tiny=tiny)
        else:
            init_dir, config = args.start_model, ModelConfig(path=str(args.start_model))

        def start(
            init_dir: Path = init_dir, config: ModelConfig = config, seed: int = seed
        ) -> tuple[Any, Any]:
            return load_model(config, init_dir, seed=seed)

        if start_cache is None or args.start_model is None:
            net, tokenizer = start()
            net.eval()
            start_cache = evaluate((net, tokenizer), eval_envs, args)
            del net
        for env_id, played in start_cache.items():
            episodes.setdefault("start", {}).setdefault(env_id, []).append(played)
        main_success = np.mean([t.success for e in args.train_env_ids for t in start_cache[e]])
        log(f"seed {seed}: starting model, held-out success {main_success:.3f}")

        all_positives = positives_of(args.train_env_ids, max(args.sizes), args.difficulty, seed)
        for n in args.sizes:
            positives = all_positives[:n]
            per_positive = max(1, math.ceil(max(args.ratio_grid)))
            began = time.perf_counter()
            pool, perturbations = (
                negative_pool(positives, args.negatives, per_positive, seed)
                if max(args.ratio_grid) > 0
                else ([], {})
            )
            negatives_made.append(
                {
                    "seed": seed,
                    "positives": n,
                    "pool": len(pool),
                    "pool_by_mode": dict(sorted(Counter(classify(t) for t in pool).items())),
                    "seconds": round(time.perf_counter() - began, 2),
                    **({"targeted": perturbations} if perturbations else {}),
                }
            )
            log(f"seed {seed}, n {n}: {len(pool)} {args.negatives} negatives in the pool")
            sft_model: Any = None
            for method, ratio in grid:
                settings = NATSettings(
                    template=args.template,
                    negatives=args.negatives,
                    ratio=ratio,
                    diversity=args.diversity,
                )
                wanted = round(ratio * n)
                chosen = choose_negatives(pool, wanted, settings, seed=seed) if wanted else []
                key = cell_key(method, ratio, n)
                run = out / f"seed{seed}" / f"n{n}" / f"{method}_r{ratio:g}"
                fingerprint = cell_fingerprint(args, seed, method, ratio, positives, chosen)
                cached = load_cell(run, fingerprint)
                if cached is not None:
                    info, played = cached
                    training.setdefault(key, []).append(info)
                    for env_id, trajectories in played.items():
                        episodes.setdefault(key, {}).setdefault(env_id, []).append(trajectories)
                    log(f"seed {seed}, n {n}, {method} r{ratio:g}: done before, from {run}.json")
                    continue
                if method == "dpo" and sft_model is None:  # its sft cell was done before
                    sft_model, _ = train_method(
                        BASELINE, start, positives, [], args=args,
                        run=run.parent / f"{BASELINE}_r0", seed=seed, settings=settings,
                    )  # fmt: skip
                model, info = train_method(
                    method,
                    sft_model if method == "dpo" else start,
                    positives,
                    chosen,
                    args=args,
                    run=run,
                    seed=seed,
                    settings=settings,
                )
                if method == BASELINE:
                    sft_model = model
                info = {
                    "seed": seed,
                    "positives": n,
                    "negatives": len(chosen),
                    "negatives_wanted": wanted,
                    "negatives_digest": digest(chosen),
                    # what the model learned from: positives and negatives (DPO: the
                    # positives of its SFT stage and the pairs)
                    "examples": n + info.get("pairs", len(chosen)),
                    **info,
                }
                if method == "dpo":
                    sft_run = training[cell_key(BASELINE, 0.0, n)][-1]
                    info["seconds_with_sft"] = round(info["seconds"] + sft_run["seconds"], 2)
                training.setdefault(key, []).append(info)
                template = settings.positive_template if method == "nat" else None
                played = evaluate(model, eval_envs, args, template)
                for env_id, trajectories in played.items():
                    episodes.setdefault(key, {}).setdefault(env_id, []).append(trajectories)
                save_cell(run, fingerprint, info, played)
                rate = np.mean([t.success for e in args.train_env_ids for t in played[e]])
                log(
                    f"seed {seed}, n {n}, {method} r{ratio:g}: {len(chosen)} negatives, "
                    f"{info['steps']} steps in {info['seconds']:.1f}s, held-out success "
                    f"{rate:.3f}"
                )
                if method != BASELINE:
                    del model

    return episodes, training, negatives_made


# -- resuming ----------------------------------------------------------------------------------

#: Settings that do not change what a cell trains or how it is evaluated.
NOT_IN_FINGERPRINT = frozenset(
    {"seeds", "positives", "ratios", "sizes", "ratio_grid", "chart_ratio", "threads", "out",
     "quick"}
)  # fmt: skip


def cell_fingerprint(
    args: argparse.Namespace,
    seed: int,
    method: str,
    ratio: float,
    positives: Sequence[Any],
    negatives: Sequence[Any],
) -> str:
    """What one cell depends on: the settings that change its training or evaluation, its seed,
    method and ratio, and the exact positives and negatives it trains on."""
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in sorted(vars(args).items())
        if k not in NOT_IN_FINGERPRINT
    }
    text = json.dumps(
        [settings, seed, method, ratio, digest(positives), digest(negatives)], default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_cell(run: Path, fingerprint: str) -> tuple[dict[str, Any], dict[str, list[Any]]] | None:
    """A finished cell's training record and held-out episodes (``run``.json, written when
    the cell finished), or None when there is none or it was made with other settings or data."""
    from llm_trainer.core.trajectory import Trajectory

    path = run.with_name(run.name + ".json")
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("fingerprint") != fingerprint:
        log(f"{path}: made with other settings or data; trained again")
        return None
    played = {
        env_id: [Trajectory.from_dict(t) for t in rows]
        for env_id, rows in record["episodes"].items()
    }
    return record["info"], played


def save_cell(
    run: Path, fingerprint: str, info: Mapping[str, Any], played: Mapping[str, Sequence[Any]]
) -> None:
    """Record a finished cell (atomically) so that a rerun of the study skips it."""
    from llm_trainer.core.rundir import atomic_write

    record = {
        "fingerprint": fingerprint,
        "info": dict(info),
        "episodes": {env_id: [t.to_dict() for t in rows] for env_id, rows in played.items()},
    }
    atomic_write(run.with_name(run.name + ".json"), (json.dumps(record) + "\n").encode())


# -- statistics --------------------------------------------------------------------------------


def outcome_matrix(per_seed: Mapping[str, list[list[Any]]], envs: Sequence[str]) -> Any:
    """Success (0/1) of each (seed, env, episode) row, in that order, and each row's stratum
    (one per seed and env)."""
    values, strata = [], []
    seeds = len(per_seed[envs[0]])
    for s in range(seeds):
        for k, env_id in enumerate(envs):
            rows = [float(t.success) for t in per_seed[env_id][s]]
            values += rows
            strata += [s * len(envs) + k] * len(rows)
    return np.array(values), np.array(strata)


def interval(values: Any, strata: Any, seeds: int) -> dict[str, Any]:
    from llm_trainer.benchmarks.stats import bootstrap_ci

    ci = bootstrap_ci(values, strata)
    per_seed = [round(float(v.mean()), 4) for v in np.array_split(values, seeds)]
    return {"mean": ci.mean, "ci_low": ci.low, "ci_high": ci.high, "per_seed": per_seed}


def family(
    args: argparse.Namespace,
    grid: Sequence[tuple[str, float]],
    episodes: Mapping[str, Mapping[str, list[list[Any]]]],
    training: Mapping[str, list[dict[str, Any]]],
    envs: Sequence[str],
) -> dict[str, Any]:
    """Success with intervals, sample efficiency and time per cell, and the paired comparisons
    (Holm over this family) on ``envs``' held-out episodes."""
    from llm_trainer.benchmarks.stats import paired_family

    # every model's rows are the same (seed, env, episode) rows in the same order: paired
    values, strata = outcome_matrix(episodes["start"], envs)
    start = interval(values, strata, args.seeds)
    cells: dict[str, Any] = {}
    flat: dict[str, Any] = {}
    for n in args.sizes:
        for method, ratio in grid:
            key = cell_key(method, ratio, n)
            flat[key], _ = outcome_matrix(episodes[key], envs)
            success = interval(flat[key], strata, args.seeds)
            runs = training[key]
            examples = float(np.mean([r["examples"] for r in runs]))
            seconds = [r["seconds"] for r in runs]
            cells[key] = {
                "method": method,
                "ratio": ratio,
                "positives": n,
                "success": success,
                "episodes": int(flat[key].size),
                "negatives": float(np.mean([r["negatives"] for r in runs])),
                "negatives_wanted": runs[0]["negatives_wanted"],
                "examples": examples,
                "sample_efficiency": {
                    "success_per_1k_examples": 1000 * success["mean"] / examples,
                    "success_per_1k_positives": 1000 * success["mean"] / n,
                    "gain_per_1k_examples": 1000 * (success["mean"] - start["mean"]) / examples,
                },
                "train_seconds": {"mean": float(np.mean(seconds)), "per_seed": seconds},
                "steps": runs[0]["steps"],
            }
            if method == "dpo":
                total = [r["seconds_with_sft"] for r in runs]
                cells[key]["train_seconds"]["mean_with_sft"] = float(np.mean(total))
    pairs = [
        (
            cell_key(a, ratio if a != BASELINE else 0.0, n),
            cell_key(b, ratio if b != BASELINE else 0.0, n),
        )
        for n in args.sizes
        for ratio in (r for r in args.ratio_grid if r > 0)
        for a, b in COMPARISONS
    ]
    comparisons = paired_family(flat, pairs, strata)
    return {"envs": list(envs), "start": start, "cells": cells, "comparisons": comparisons}


def summarize(
    args: argparse.Namespace,
    grid: Sequence[tuple[str, float]],
    episodes: Mapping[str, Mapping[str, list[list[Any]]]],
    training: Mapping[str, list[dict[str, Any]]],
    tiny: Any,
) -> dict[str, Any]:
    from llm_trainer.analysis.failure_modes import mine

    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("sizes", "ratio_grid", "train_env_ids", "transfer_env_ids")
    }
    held_out = family(args, grid, episodes, training, args.train_env_ids)
    transfer = {
        env_id: family(args, grid, episodes, training, [env_id]) for env_id in args.transfer_env_ids
    }

    def modes(key: str, envs: Sequence[str]) -> dict[str, Any]:
        pooled = [t for e in envs for per_seed in episodes[key][e] for t in per_seed]
        return mine(pooled, name="start" if key == "start" else key).to_dict()

    failure_modes = {
        "before": modes("start", args.train_env_ids),
        "after": {key: modes(key, args.train_env_ids) for key in held_out["cells"]},
        "transfer": {
            env_id: {
                "before": modes("start", [env_id]),
                "after": {key: modes(key, [env_id]) for key in held_out["cells"]},
            }
            for env_id in args.transfer_env_ids
        },
    }
    model = (
        {"path": str(args.start_model)}
        if args.start_model is not None
        else {"layers": tiny.n_layers, "hidden": tiny.hidden_size, "heads": tiny.n_heads}
    )
    return {
        "settings": settings,
        "grid": {
            "methods": [BASELINE, *METHODS],
            "ratios": args.ratio_grid,
            "positives": args.sizes,
            "seeds": args.seeds,
            "cells": [cell_key(m, r, n) for n in args.sizes for m, r in grid],
        },
        "model": model,
        "held_out": held_out,
        "transfer": transfer,
        "training": training,
        "failure_modes": failure_modes,
    }


def write_episodes(
    path: Path, args: argparse.Namespace, episodes: Mapping[str, Mapping[str, list[list[Any]]]]
) -> None:
    from llm_trainer.analysis.failure_modes import classify

    with path.open("w") as handle:
        for key, by_env in episodes.items():
            method, ratio, n = (key, None, None)
            if key != "start":
                method, r, size = key.split("/")
                ratio, n = float(r[1:]), int(size[1:])
            for env_id, per_seed in by_env.items():
                for seed, played in enumerate(per_seed):
                    for t in played:
                        row = {
                            "seed": seed,
                            "method": method,
                            "ratio": ratio,
                            "positives": n,
                            "env_id": env_id,
                            "held_out": env_id in args.train_env_ids,
                            "episode_seed": t.seed,
                            "success": int(t.success),
                            "failure_mode": classify(t),
                            "reward": t.total_reward,
                            "steps": len(t.steps),
                        }
                        handle.write(json.dumps(row) + "\n")


# -- reports -----------------------------------------------------------------------------------


def report(result: Mapping[str, Any]) -> None:
    from llm_trainer.benchmarks.stats import comparison_lines

    grid = result["grid"]
    sections = [("held-out", result["held_out"])]
    sections += [("transfer, not trained on", f) for f in result["transfer"].values()]
    for title, fam in sections:
        print(f"\nNAT study, {title} ({', '.join(fam['envs'])}): {grid['seeds']} seeds, "
              f"{result['minutes']} min")  # fmt: skip
        start = fam["start"]
        print(
            f"starting model: {start['mean']:.3f} [{start['ci_low']:.3f}, {start['ci_high']:.3f}]"
        )
        print(f"{'cell':<18} {'success':>7}  95% CI          {'examples':>8} {'/1k ex':>7} "
              f"{'train s':>8}")  # fmt: skip
        for key, c in fam["cells"].items():
            s = c["success"]
            print(
                f"{key:<18} {s['mean']:7.3f}  [{s['ci_low']:.3f}, {s['ci_high']:.3f}]  "
                f"{c['examples']:8.0f} {c['sample_efficiency']['success_per_1k_examples']:7.3f} "
                f"{c['train_seconds']['mean']:8.1f}"
            )
        print()
        print("\n".join(comparison_lines(fam["comparisons"], width=30)))


def plot_success(result: Mapping[str, Any], path: Path) -> None:
    """Success vs ratio per method (95% intervals), one panel per data size (columns) and per
    env family (rows: held-out, then each transfer env)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = result["grid"]
    ratios, sizes = grid["ratios"], grid["positives"]
    rows = [("held-out", result["held_out"])]
    rows += [
        (f"transfer: {e.removeprefix('LLMTrainer/')}", f) for e, f in result["transfer"].items()
    ]
    fig = Figure(figsize=(4.2 * len(sizes), 3.4 * len(rows)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(sizes), squeeze=False)
    x_of = {r: i for i, r in enumerate(ratios)}
    colours = {"nat": "C0", "naive": "C1", "dpo": "C2"}
    for i, (title, fam) in enumerate(rows):
        for j, n in enumerate(sizes):
            ax = axes[i][j]
            base = fam["cells"][cell_key(BASELINE, 0.0, n)]["success"]
            start = fam["start"]
            ax.axhline(start["mean"], color="0.6", linestyle=":", label="starting model")
            ax.axhline(base["mean"], color="0.3", linestyle="--", linewidth=0.8, label="sft")
            for k, method in enumerate(METHODS):
                points = [(0.0, base)] if 0.0 in x_of else []
                points += [
                    (r, fam["cells"][cell_key(method, r, n)]["success"]) for r in ratios if r > 0
                ]
                xs = [x_of[r] + (k - 1) * 0.06 for r, _ in points]
                means = [p["mean"] for _, p in points]
                low = [p["mean"] - p["ci_low"] for _, p in points]
                high = [p["ci_high"] - p["mean"] for _, p in points]
                ax.errorbar(xs, means, yerr=[low, high], marker="o", capsize=3,
                            color=colours[method], label=method)  # fmt: skip
            ax.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("negatives per positive")
            ax.set_ylabel("success (95% CI)" if j == 0 else "")
            ax.set_title(f"{title}, {n} positives", fontsize="small")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="x-small", loc="best")
    fig.suptitle(f"NAT study: {grid['seeds']} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_modes(
    args: argparse.Namespace, episodes: Mapping[str, Mapping[str, list[list[Any]]]], path: Path
) -> None:
    """Before (the starting model) and after (``sft`` and each method at ``--chart-ratio``, the
    largest data size), on the held-out episodes of the training envs."""
    from llm_trainer.analysis.failure_modes import mine, plot_failure_modes

    n = max(args.sizes)
    keys = [cell_key(BASELINE, 0.0, n)]
    if args.chart_ratio > 0:
        keys += [cell_key(m, args.chart_ratio, n) for m in METHODS]
    reports = []
    for key in ["start", *keys]:
        pooled = [t for e in args.train_env_ids for s in episodes[key][e] for t in s]
        reports.append(mine(pooled, name="start (before)" if key == "start" else key))
    plot_failure_modes(reports, path)


if __name__ == "__main__":
    main()
