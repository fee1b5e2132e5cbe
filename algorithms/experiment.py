"""One experiment, end to end: data -> evaluate -> train -> evaluate -> artefacts.

:func:`run_experiment` is what ``llm-trainer train --config FILE`` and ``llm-trainer
quickstart`` run. It creates the run directory, builds or loads the model, builds the training
data with the configured strategy (stored, versioned, in the run's trajectory store), measures
held-out success before training, trains (SFT or DPO), measures again, saves the final model
atomically, draws the learning curve, and returns the summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from llm_trainer.algorithms.config import ExperimentConfig
from llm_trainer.algorithms.evaluation import evaluate_model
from llm_trainer.core.config import to_dict
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import RunDir, atomic_directory
from llm_trainer.core.store import Provenance, TrajectoryStore
from llm_trainer.core.trajectory import Trajectory

Log = Callable[[str], None]

if TYPE_CHECKING:
    from llm_trainer.algorithms.data.templates import ToolName


def load_model(config: ExperimentConfig, run: RunDir) -> tuple[Any, Any]:
    """The tiny model built from scratch into the run dir, or a local HF model directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm_trainer.agents.tinylm import create_tiny_model

    if config.model.path == "tiny":
        path = run.path / "init_model"
        if not (path / "config.json").exists():
            create_tiny_model(path, config.model.tiny, seed=config.seed)
    else:
        path = Path(config.model.path)
        if not (path / "config.json").exists():
            raise ConfigError(
                f"model.path: {path} is not a Hugging Face model directory "
                "(no config.json); use 'tiny' for the embedded default model"
            )
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, tokenizer


_TOOL_OF_ENV = {
    "LLMTrainer/Calculator-v0": ("calculator",),
    "LLMTrainer/Weather-v0": ("weather",),
    "LLMTrainer/Search-v0": ("search",),
    "LLMTrainer/MultiTool-v0": ("calculator", "weather", "search"),
}


def _tools_of(env_id: str) -> tuple[ToolName, ...]:
    if env_id not in _TOOL_OF_ENV:
        raise ConfigError(
            f"data.env_id: the template and teacher strategies cover "
            f"{sorted(_TOOL_OF_ENV)}, not {env_id!r}"
        )
    return cast("tuple[ToolName, ...]", _TOOL_OF_ENV[env_id])


def build_data(
    config: ExperimentConfig, log: Log, model: Any = None, tokenizer: Any = None
) -> list[Trajectory]:
    """Training trajectories from the configured strategy (the seed's three, plus oracle
    demonstrations collected in the env)."""
    from llm_trainer.algorithms import data as strategies
    from llm_trainer.algorithms.rollout import oracle_trajectories

    data = config.data
    seeds = range(data.first_seed, data.first_seed + data.episodes)
    if data.strategy == "oracle":
        log(
            f"collecting {data.episodes} oracle demonstrations in {data.env_id} "
            f"(difficulty {data.difficulty})"
        )
        return oracle_trajectories(data.env_id, seeds, difficulty=data.difficulty)
    if data.strategy == "templates":
        tools = _tools_of(data.env_id)
        log(f"generating {data.episodes} template trajectories for {', '.join(tools)}")
        per_tool = -(-data.episodes // len(tools))
        out = [
            t
            for i, tool in enumerate(tools)
            for t in strategies.template_trajectories(tool, per_tool, data.first_seed + i)
        ]
        return out[: data.episodes]
    if data.strategy == "teacher":
        tools = _tools_of(data.env_id)
        per_tool = -(-data.episodes // len(tools))
        questions = [
            q
            for i, tool in enumerate(tools)
            for q in strategies.plain_examples(tool, per_tool, data.first_seed + i)
        ]
        result = strategies.teacher_trajectories(
            model,
            tokenizer,
            questions,
            strategies.TeacherConfig(
                threshold=data.teacher_threshold, seed=config.seed, tools=tools
            ),
        )
        log(f"teacher mode: {result.stats.as_dict()}")
        if not result.trajectories:
            raise ConfigError(
                f"teacher mode kept no tool calls at data.teacher_threshold="
                f"{data.teacher_threshold} (an untrained model gains little from tool results; "
                "lower the threshold or start from a trained model.path)"
            )
        return list(result.trajectories)
    log(f"loading ToolBench data from {data.toolbench_path or '(synthetic fallback)'}")
    return strategies.load_toolbench(data.toolbench_path)


def stored_training_data(
    config: ExperimentConfig, run: RunDir, log: Log, model: Any = None, tokenizer: Any = None
) -> tuple[list[Trajectory], str]:
    """:func:`build_data`, stored and versioned in the run's trajectory store with its
    provenance. Returns the trajectories and the dataset's version (content hash)."""
    trajectories = build_data(config, log, model, tokenizer)
    data = config.data
    dataset = TrajectoryStore(run.path / "trajectories.db").add(
        f"{config.name}-train",
        trajectories,
        Provenance(
            env_ids=(data.env_id,),
            seeds=(data.first_seed, data.first_seed + data.episodes - 1),
            agent="oracle",
            strategy=data.strategy,
            config=to_dict(data),
        ),
    )
    log(f"training data: {dataset.size} trajectories, version {dataset.id}")
    return trajectories, dataset.id


def _model_dir(config: ExperimentConfig, run: RunDir) -> Path:
    return run.path / "init_model" if config.model.path == "tiny" else Path(config.model.path)


def run_experiment(config: ExperimentConfig, *, log: Log = print) -> dict[str, Any]:
    """Run ``config``; returns the summary (also written to ``summary.json``)."""
    start = time.perf_counter()
    run = RunDir.create(
        config.output_dir, config.name, to_dict(config), config.seed, resume=config.resume
    )
    log(f"run directory: {run.path}")
    if config.algorithm == "reward_model":
        from llm_trainer.algorithms.reward_model import run_reward_model

        summary = {
            **run_reward_model(config, run, log),
            "wall_seconds": round(time.perf_counter() - start, 2),
            "run_dir": str(run.path),
        }
        run.write_json("summary.json", summary)
        return summary
    model, tokenizer = load_model(config, run)
    online = config.algorithm in ("ppo", "grpo")
    dataset_id = None
    trajectories: list[Trajectory] = []
    if not online:  # PPO and GRPO collect their own data, through the env
        trajectories, dataset_id = stored_training_data(config, run, log, model, tokenizer)
    ev = config.eval

    def evaluate(current: Any, episodes: int = ev.episodes) -> dict[str, float]:
        metrics, _ = evaluate_model(
            current,
            tokenizer,
            ev.env_id,
            range(ev.first_seed, ev.first_seed + episodes),
            difficulty=ev.difficulty,
            system_prompt=config.model.system_prompt,
            max_new_tokens=ev.max_new_tokens,
            batch_size=ev.batch_size,
        )
        return metrics

    # an untrained model runs every episode to its time limit: measure it on fewer episodes;
    # the starting point of online RL is a trained agent, measured like the result
    before_episodes = ev.episodes if online else ev.episodes_before
    log(f"evaluating on {before_episodes} held-out episodes of {ev.env_id} before training")
    before = evaluate(model, before_episodes)
    run.log_metrics(0, {f"eval/{k}": v for k, v in before.items()})

    result: Any
    if config.algorithm == "sft":
        from llm_trainer.algorithms.sft import SFTTrainer

        trainer = SFTTrainer(
            model,
            tokenizer,
            config.train,
            run,
            seed=config.seed,
            system_prompt=config.model.system_prompt,
            evaluate=evaluate,
            eval_every=ev.every_steps,
        )
        log(
            f"SFT: {config.train.max_steps} steps, batch {config.train.batch_size}, "
            f"lr {config.train.learning_rate}"
        )
        result = trainer.train(trajectories, resume=config.resume)
        model = trainer.model
    elif config.algorithm == "dpo":
        from llm_trainer.algorithms.dpo import DPOTrainer, corrupted_pairs

        pairs = corrupted_pairs(
            trajectories, seed=config.seed, system_prompt=config.model.system_prompt
        )
        log(f"DPO: {len(pairs)} env-verified preference pairs")
        dpo = DPOTrainer(model, tokenizer, config.train, config.dpo, run, seed=config.seed)
        result = dpo.train(pairs, resume=config.resume)
        model = dpo.model
    elif config.algorithm == "ppo":
        from llm_trainer.algorithms.ppo.trainer import PPOTrainer

        p = config.ppo
        log(
            f"PPO: {config.train.max_steps} iterations of {p.episodes_per_iteration} episodes "
            f"of {p.env_id} (difficulty {p.difficulty})"
        )
        ppo = PPOTrainer(
            model,
            tokenizer,
            config.train,
            p,
            config.reward,
            run,
            seed=config.seed,
            system_prompt=config.model.system_prompt,
            evaluate=evaluate,
            eval_every=ev.every_steps,
            model_dir=_model_dir(config, run),
        )
        result = ppo.train(resume=config.resume)
        model = ppo.model
    else:
        from llm_trainer.algorithms.grpo import GRPOTrainer

        g = config.grpo
        log(
            f"GRPO: {config.train.max_steps} steps, {g.num_generations} episodes per prompt "
            f"of {g.env_id} (difficulty {g.difficulty})"
        )
        grpo = GRPOTrainer(
            model,
            tokenizer,
            config.train,
            g,
            config.reward,
            run,
            seed=config.seed,
            system_prompt=config.model.system_prompt,
            evaluate=evaluate,
            eval_every=ev.every_steps,
        )
        result = grpo.train(resume=config.resume)
        model = grpo.model

    log("evaluating after training")
    after = evaluate(model)
    run.log_metrics(result.steps, {f"eval/{k}": v for k, v in after.items()})
    final = run.path / "final_model"
    if hasattr(model, "merge_and_unload") and online:
        model = model.merge_and_unload()  # the RL agent is saved whole: it serves anywhere

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    atomic_directory(final, save)
    png = run.plot_learning_curve()
    summary = {
        **{
            k: after[k]
            for k in (
                "success",
                "tool_accuracy",
                "format_correctness",
                "execution_success",
                "answer_correctness",
            )
        },
        "algorithm": config.algorithm,
        "success_before": before["success"],
        "success_after": after["success"],
        "reward_before": before["mean_reward"],
        "reward_after": after["mean_reward"],
        "before": before,
        "after": after,
        "train_steps": result.steps,
        "train_seconds": round(result.seconds, 2),
        "train_tokens_per_second": round(result.tokens_per_second, 1),
        "final_loss": result.losses[-1][1] if result.losses else None,
        "dataset_version": dataset_id,
        "wall_seconds": round(time.perf_counter() - start, 2),
        "run_dir": str(run.path),
        "model_dir": str(final),
        "learning_curve": str(png) if png else None,
    }
    run.write_json("summary.json", summary)
    return summary


def sft_calculator_agent(
    path: str | Path,
    *,
    max_steps: int = 600,
    stop_at_success: float | None = 0.25,
    eval_every: int = 25,
    seed: int = 0,
) -> Path:
    """A weak calculator agent: the quickstart's tiny model fine-tuned on Calculator-v0
    (difficulty 1) oracle demonstrations until its greedy success on 100 validation tasks
    (seeds 2,000,000 on, disjoint from training and held-out seeds) reaches
    ``stop_at_success`` (checked every ``eval_every`` steps), or for ``max_steps``. Saved
    (model and tokenizer) to ``path``.

    The model learns the call format first and then, in a phase change whose timing varies
    with the seed, to copy numbers; stopping on success rather than after a fixed number of
    steps gives an agent that is reliably right on part of the tasks: the starting point of
    the RL tests and ``scripts/bench_rl.py``.
    """
    import tempfile

    from transformers import TrainerCallback

    from llm_trainer.agents.tinylm import TinyLMConfig, build_model, build_tokenizer
    from llm_trainer.algorithms.config import TrainConfig
    from llm_trainer.algorithms.rollout import oracle_trajectories
    from llm_trainer.algorithms.sft import SFTTrainer

    path = Path(path)
    tokenizer = build_tokenizer()
    # the architecture the RL tests' thresholds were measured with (kept when the quickstart
    # moved to 8 heads)
    tiny = TinyLMConfig(
        n_layers=2, hidden_size=192, n_heads=4, intermediate_size=512, max_position_embeddings=512
    )
    model = build_model(tiny, seed=seed, vocab_size=len(tokenizer))
    demos = oracle_trajectories("LLMTrainer/Calculator-v0", range(max_steps * 32), difficulty=1)

    class StopOnSuccess(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            step = state.global_step
            if stop_at_success is not None and step % eval_every == 0:
                metrics, _ = evaluate_model(
                    kwargs["model"],
                    tokenizer,
                    "LLMTrainer/Calculator-v0",
                    range(2_000_000, 2_000_100),
                    difficulty=1,
                    system_prompt="",
                    max_new_tokens=80,
                )
                if metrics["success"] >= stop_at_success:
                    control.should_training_stop = True
            return control

    run = RunDir.create(tempfile.mkdtemp(prefix="sft-agent-"), "sft_agent", {}, seed)
    trainer = SFTTrainer(
        model,
        tokenizer,
        TrainConfig(
            max_steps=max_steps,
            batch_size=32,
            learning_rate=2e-3,
            lr_scheduler="constant_with_warmup",
            warmup_steps=10,
            logging_steps=50,
            max_length=256,
        ),
        run,
        seed=seed,
        system_prompt="",
        callbacks=[StopOnSuccess()],
    )
    trainer.train(demos)
    trainer.model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
