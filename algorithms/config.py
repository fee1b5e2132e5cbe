"""Typed experiment configs: what ``llm-trainer train --config FILE`` reads.

YAML files in ``configs/`` map onto :class:`ExperimentConfig` through
:func:`llm_trainer.core.config.load_config`; ``--set train.learning_rate=3e-3`` overrides any
field. Every field's docstring is its help.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from llm_trainer.agents.tinylm import TinyLMConfig
from llm_trainer.core.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    path: str = "tiny"
    """``tiny`` builds the embedded default model from scratch; otherwise a local Hugging Face
    model directory (e.g. a Qwen instruct model or a previous run's ``final_model``)."""
    tiny: TinyLMConfig = field(default_factory=TinyLMConfig)
    """Size of the tiny model when ``path`` is ``tiny``."""
    system_prompt: str | None = None
    """The system prompt the agent sees: ``None`` keeps the env's; ``""`` drops its text (the
    chat template still lists the tools). Short prompts train much faster on a CPU."""


@dataclass(frozen=True)
class DataConfig:
    strategy: Literal["oracle", "templates", "teacher", "toolbench"] = "oracle"
    """Where the training trajectories come from (``oracle``: solved env episodes)."""
    env_id: str = "LLMTrainer/Calculator-v0"
    """The env the data is collected in."""
    difficulty: int = 1
    """Its difficulty."""
    episodes: int = 4000
    """How many trajectories (for DPO: prompts) to build."""
    first_seed: int = 0
    """Training seeds are ``first_seed .. first_seed + episodes - 1``."""
    toolbench_path: str | None = None
    """A ToolBench-format JSON file (``toolbench`` strategy; synthetic data when unset)."""
    teacher_threshold: float = 0.1
    """Minimum loss reduction for a tool call to be kept (``teacher`` strategy)."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ConfigError(f"data.episodes must be >= 1, got {self.episodes}")


@dataclass(frozen=True)
class LoRAConfig:
    enabled: bool = False
    """Train low-rank adapters (peft) instead of every weight."""
    r: int = 16
    """Adapter rank."""
    alpha: int = 32
    """Adapter scaling (``alpha / r`` multiplies the update)."""
    dropout: float = 0.0
    """Dropout on the adapter input."""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Module names that get adapters."""


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 300
    """Optimizer steps."""
    batch_size: int = 32
    """Sequences per device per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    learning_rate: float = 2e-3
    """Peak learning rate (AdamW)."""
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule after warm-up."""
    warmup_steps: int = 20
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    max_length: int = 512
    """Longest training sequence in tokens (longer ones are truncated)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """``auto``: bf16 on a GPU that supports it, else fp32 (TRL's bf16 default fails on CPU)."""
    logging_steps: int = 10
    """Log the loss every N steps."""
    save_steps: int = 0
    """Checkpoint every N steps (0: only at the end)."""
    save_total_limit: int = 2
    """Checkpoints kept."""
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    """Low-rank adapters."""
    threads: int = 0
    """torch CPU threads (0: one per core)."""

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate must be > 0, got {self.learning_rate}")


@dataclass(frozen=True)
class DPOSettings:
    beta: float = 0.1
    """Strength of the KL anchor to the reference model."""
    samples_per_prompt: int = 4
    """Completions sampled per prompt to find a success and a failure."""
    temperature: float = 1.0
    """Sampling temperature when collecting pairs."""
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    """TRL DPO loss."""


@dataclass(frozen=True)
class EvalConfig:
    env_id: str = "LLMTrainer/Calculator-v0"
    """Held-out env."""
    difficulty: int = 1
    """Its difficulty."""
    episodes: int = 200
    """Held-out episodes."""
    episodes_before: int = 50
    """Held-out episodes for the measurement before training (an untrained model runs every
    episode to its time limit, so this one is the expensive one; its success is ~0)."""
    first_seed: int = 1_000_000
    """Held-out seeds start here (training seeds start at ``data.first_seed``)."""
    every_steps: int = 0
    """Evaluate during training every N steps (0: before and after only)."""
    max_new_tokens: int = 96
    """Generation budget per turn."""
    batch_size: int = 200
    """Envs stepped in lockstep (one batched generation per step)."""


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "calculator_sft"
    """Run name (the run directory is ``output_dir/<timestamp>_<name>``)."""
    algorithm: Literal["sft", "dpo"] = "sft"
    """The training method."""
    seed: int = 0
    """Seeds model initialisation, data order and sampling."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The model."""
    data: DataConfig = field(default_factory=DataConfig)
    """The training data."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation."""
    dpo: DPOSettings = field(default_factory=DPOSettings)
    """DPO only."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Held-out evaluation."""
    output_dir: str = "runs"
    """Where run directories go."""
    resume: bool = False
    """Continue the latest run of this name from its last checkpoint."""


def quickstart_config() -> ExperimentConfig:
    """The main job's experiment: the tiny model learns Calculator-v0 (difficulty 1) by SFT
    on oracle demonstrations, sized for two CPU cores.

    Measured here (2 cores, shared): a 2-layer, 192-wide model (1.0 M parameters) learns the
    call format within 100 steps and to copy the numbers between steps 100 and 200 (a phase
    change typical of copying tasks); it plateaus near 95% held-out success, the remaining
    errors being "Subtract b from a" (operands in reverse order) and long results.
    """
    return ExperimentConfig(
        name="quickstart",
        model=ModelConfig(
            system_prompt="",
            tiny=TinyLMConfig(n_layers=2, hidden_size=192, n_heads=4, intermediate_size=512),
        ),
        data=DataConfig(episodes=8000),
        train=TrainConfig(
            max_steps=500, batch_size=32, learning_rate=2e-3, warmup_steps=20, logging_steps=25
        ),
        eval=EvalConfig(episodes=200, every_steps=125, max_new_tokens=64),
    )
