"""Direct preference optimisation on pairs scored by the env: a success against a failure.

Pairs come from episodes of the same task (same seed). Two trajectories of one task share a
history until their first differing action; that history is the DPO prompt, the successful
episode's action the ``chosen`` completion and the failed one's the ``rejected`` completion.

* ``policy`` pairs (on-policy): sample ``samples_per_prompt`` episodes per task from the model
  being trained, at ``temperature``, and pair each task's success with one of its failures
  (:func:`policy_pairs`); tasks where every sample succeeded or every one failed give none.
* ``corrupted`` pairs (negative samples, as in NAT): replay an oracle episode with its final
  answer corrupted, check in the env that it now fails, and pair the two.

Training is TRL's ``DPOTrainer`` (a frozen copy of the model is the reference).
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np

from llm_trainer.algorithms.base import (
    Algorithm,
    AlgorithmContext,
    AlgorithmResult,
    TrainResult,
    merged,
)
from llm_trainer.algorithms.config import PositiveInt, TrainConfig
from llm_trainer.algorithms.trl_trainer import TRLTrainer
from llm_trainer.core.config import POSITIVE, Range, check_ranges
from llm_trainer.core.errors import UserError
from llm_trainer.core.records import to_plain
from llm_trainer.core.rundir import RunDir
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.envs.registration import make
from llm_trainer.envs.tools import AnswerAction, format_answer, parse_action


@dataclass(frozen=True)
class DPOSettings:
    """Direct preference optimisation (``algorithm: dpo``) on env-scored pairs."""

    beta: Annotated[float, POSITIVE] = 0.1
    """Strength of the KL anchor to the reference model (> 0)."""
    pairs: Literal["corrupted", "policy", "both"] = "corrupted"
    """Where pairs come from: ``corrupted`` (each ``data`` demonstration against itself with a
    wrong final answer the env rejects), ``policy`` (on-policy: the model's own samples of the
    ``data`` tasks, a success against a failure of the same task) or ``both``."""
    samples_per_prompt: Annotated[int, Range(ge=2)] = 4
    """``policy`` pairs: episodes sampled per task to find a success and a failure."""
    temperature: Annotated[float, POSITIVE] = 1.0
    """``policy`` pairs: sampling temperature."""
    max_pairs_per_task: PositiveInt = 1
    """``policy`` pairs: at most this many pairs per task."""
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    """TRL DPO loss."""

    def __post_init__(self) -> None:
        check_ranges(self, "dpo")


@dataclass(frozen=True, slots=True)
class PreferencePair:
    """A shared history, and a chosen and a rejected next action for it."""

    prompt: tuple[dict[str, str], ...]
    chosen: str
    rejected: str
    tools: tuple[Any, ...]
    seed: int


def pair_trajectories(
    trajectories: Sequence[Trajectory],
    system_prompt: str | None = None,
    max_pairs_per_task: int = 1,
) -> list[PreferencePair]:
    """Pair successes with failures of the same (env, seed) at their first differing action."""
    groups: dict[tuple[str, int], list[Trajectory]] = defaultdict(list)
    for t in trajectories:
        if t.error is None and t.steps:
            groups[(t.env_id, t.seed)].append(t)
    pairs = []
    for (_, seed), group in sorted(groups.items()):
        wins = [t for t in group if t.success]
        losses = [t for t in group if not t.success]
        made = 0
        for win in wins:
            for loss in losses:
                pair = _first_difference(win, loss, system_prompt, seed)
                if pair is not None and made < max_pairs_per_task:
                    pairs.append(pair)
                    made += 1
    return pairs


def _first_difference(
    win: Trajectory, loss: Trajectory, system_prompt: str | None, seed: int
) -> PreferencePair | None:
    win_messages = win.messages(system_prompt=system_prompt)
    loss_messages = loss.messages(system_prompt=system_prompt)
    for i, (a, b) in enumerate(zip(win_messages, loss_messages, strict=False)):
        if a != b:
            if a["role"] != "assistant" or b["role"] != "assistant":
                return None  # the histories diverged in the env's answer, not the agent's
            return PreferencePair(
                tuple(win_messages[:i]),
                a["content"],
                b["content"],
                tuple(to_plain(win.tools)),
                seed,
            )
    return None


def corrupted_pairs(
    oracle: Sequence[Trajectory], seed: int = 0, system_prompt: str | None = None
) -> list[PreferencePair]:
    """Pairs of an oracle episode and the same episode with a wrong final answer, kept only
    when the env confirms that the corrupted episode fails."""
    rng = np.random.default_rng(seed)
    pairs = []
    envs: dict[str, Any] = {}
    for t in oracle:
        if not t.success or not isinstance(parse_action(t.steps[-1].action), AnswerAction):
            continue
        answer = parse_action(t.steps[-1].action)
        assert isinstance(answer, AnswerAction)
        wrong = _corrupt(answer.text, rng)
        env = envs.setdefault(t.env_id, make(t.env_id))
        env.reset(seed=t.seed, options={"difficulty": t.difficulty} if t.difficulty else None)
        for step in t.steps[:-1]:
            env.step(step.action)
        *_, info = env.step(format_answer(wrong))
        if info["success"]:
            continue  # the corruption happened to be right too
        messages = t.messages(system_prompt=system_prompt)
        pairs.append(
            PreferencePair(
                tuple(messages[:-1]),
                t.steps[-1].action,
                format_answer(wrong),
                tuple(to_plain(t.tools)),
                t.seed,
            )
        )
    return pairs


def policy_pairs(
    context: AlgorithmContext,
    model: Any,
    tokenizer: Any,
    tasks: Sequence[Trajectory],
    settings: DPOSettings,
) -> list[PreferencePair]:
    """On-policy pairs: ``settings.samples_per_prompt`` episodes of each task of ``tasks``
    (their env, seed and difficulty) sampled from ``model`` at ``settings.temperature``, each
    task's success paired with one of its failures at their first differing action."""
    agent = context.agent(
        model,
        tokenizer,
        temperature=settings.temperature,
        seed=context.seed,
    )
    sampled = context.collect_tasks(
        agent, tasks, repeats=settings.samples_per_prompt, source="policy:dpo"
    )
    pairs = pair_trajectories(
        sampled, context.system_prompt, max_pairs_per_task=settings.max_pairs_per_task
    )
    wins = sum(t.success for t in sampled)
    context.log(
        f"DPO: sampled {len(sampled)} episodes ({wins} successes) of {len(tasks)} tasks at "
        f"temperature {settings.temperature}: {len(pairs)} on-policy pairs"
    )
    return pairs


def _corrupt(answer: str, rng: np.random.Generator) -> str:
    """A plausible wrong answer: a nearby number, or another word."""
    try:
        value = float(answer.replace(",", ""))
    except ValueError:
        return answer[::-1] if len(answer) > 1 else answer + "x"
    delta = int(rng.integers(1, 10)) * (1 if rng.random() < 0.5 else -1)
    corrupted = value + delta
    return str(int(corrupted)) if corrupted == int(corrupted) else f"{corrupted:g}"


def dpo_rows(pairs: Sequence[PreferencePair]) -> list[dict[str, Any]]:
    """TRL's conversational preference format."""
    return [
        {
            "prompt": list(p.prompt),
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
            "tools": json.dumps(list(p.tools)),
        }
        for p in pairs
    ]


class DPOTrainer(TRLTrainer):
    """Preference-tune ``model`` on env-scored pairs (TRL ``DPOTrainer``).

    Args:
        model: The policy (a frozen copy of it is the reference).
        tokenizer: Its tokenizer with a chat template.
        config: Optimisation settings.
        settings: DPO-specific settings (beta, loss type).
        run: The run directory.
        seed: Seeds data order.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: TrainConfig,
        settings: DPOSettings,
        run: RunDir,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__(model, tokenizer, config, run, seed=seed)
        self.settings = settings

    def train(self, pairs: Sequence[PreferencePair], *, resume: bool = False) -> TrainResult:
        """Train on ``pairs``.

        Raises:
            UserError: when there are none.
        """
        import datasets
        from trl.trainer.dpo_config import DPOConfig
        from trl.trainer.dpo_trainer import DPOTrainer as TRLDPOTrainer

        if not pairs:
            raise UserError(
                "DPO needs at least one preference pair and none was found (policy pairs need "
                "tasks the model sometimes solves and sometimes fails: raise dpo.temperature "
                "or dpo.samples_per_prompt, or use dpo.pairs: corrupted)"
            )
        # The reference is a frozen copy of the starting policy (with LoRA, TRL uses the base
        # model with the adapters disabled, so no copy is needed). A model that arrives with
        # adapters already trained (MALT's per-role SFT then DPO) is its own reference, merged:
        # TRL's fused LM head patches a plain model, not a peft wrapper.
        reference = None if self.config.lora.enabled else merged(copy.deepcopy(self.model)).eval()
        return self._fit(
            TRLDPOTrainer,
            DPOConfig,
            resume=resume,
            config_kwargs={
                "beta": self.settings.beta,
                "loss_type": [self.settings.loss_type],
                "max_length": self.config.max_length,
            },
            ref_model=reference,
            train_dataset=datasets.Dataset.from_list(dpo_rows(pairs)),
        )


class DPOAlgorithm(Algorithm):
    """Direct preference optimisation (TRL) on env-scored pairs: corrupted answers or the
    model's own successes against its failures."""

    name = "dpo"
    config_class = DPOSettings
    sections = ("data",)
    multi_process = True

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        settings: DPOSettings = self.config
        model, tokenizer = context.load_model()
        trajectories, version = context.training_data(model, tokenizer)
        pairs: list[PreferencePair] = []
        if settings.pairs in ("corrupted", "both"):
            pairs += corrupted_pairs(
                trajectories, seed=context.seed, system_prompt=context.system_prompt
            )
        if settings.pairs in ("policy", "both"):
            pairs += policy_pairs(context, model, tokenizer, trajectories, settings)
        context.log(f"DPO: {len(pairs)} env-verified preference pairs ({settings.pairs})")
        dpo = DPOTrainer(
            model, tokenizer, context.experiment.train, settings, context.run, seed=context.seed
        )
        result = dpo.train(pairs, resume=context.resume)
        return AlgorithmResult(
            model=dpo.model,
            tokenizer=tokenizer,
            training=result,
            metrics={"preference_pairs": len(pairs)},
            dataset_version=version,
        )
