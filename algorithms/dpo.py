"""Direct preference optimisation on pairs scored by the env: a success against a failure.

Pairs come from episodes of the same task (same seed). Two trajectories of one task share a
history until their first differing action; that history is the DPO prompt, the successful
episode's action the ``chosen`` completion and the failed one's the ``rejected`` completion.

* ``policy`` pairs: sample several episodes per task from the current model and pair each
  success with a failure.
* ``corrupted`` pairs (negative samples, as in NAT): replay an oracle episode with its final
  answer corrupted, check in the env that it now fails, and pair the two.

Training is TRL's ``DPOTrainer`` (a frozen copy of the model is the reference).
"""

from __future__ import annotations

import copy
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_trainer.algorithms.config import DPOSettings, TrainConfig
from llm_trainer.algorithms.hf import (
    AtomicCheckpoints,
    RunLogCallback,
    apply_lora,
    last_checkpoint,
    per_second,
    tensorboard_callback,
    training_kwargs,
)
from llm_trainer.algorithms.sft import TrainResult
from llm_trainer.core.records import to_plain
from llm_trainer.core.rundir import RunDir
from llm_trainer.core.seeding import preserved_global_rngs
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.envs.registration import make
from llm_trainer.envs.tools import AnswerAction, format_answer, parse_action


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


class DPOTrainer:
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
        self.model = apply_lora(model, config.lora)
        self.tokenizer, self.config, self.settings, self.run = tokenizer, config, settings, run
        self.seed = seed
        self.callback = RunLogCallback(run, prefix="")
        self.trainer: Any = None

    def train(self, pairs: Sequence[PreferencePair], *, resume: bool = False) -> TrainResult:
        import datasets
        from trl.trainer.dpo_config import DPOConfig
        from trl.trainer.dpo_trainer import DPOTrainer as TRLDPOTrainer

        class _DPO(AtomicCheckpoints, TRLDPOTrainer):
            pass

        if not pairs:
            raise ValueError("DPO needs at least one preference pair")
        output_dir = str(self.run.checkpoints)
        args = DPOConfig(
            **training_kwargs(self.config, output_dir, self.seed),
            beta=self.settings.beta,
            loss_type=[self.settings.loss_type],
            max_length=self.config.max_length,
        )
        dataset = datasets.Dataset.from_list(dpo_rows(pairs))
        checkpoint = last_checkpoint(output_dir) if resume else None
        # The reference is a frozen copy of the starting policy (with LoRA, TRL uses the base
        # model with the adapters disabled, so no copy is needed).
        reference = None if self.config.lora.enabled else copy.deepcopy(self.model).eval()
        with preserved_global_rngs():
            self.trainer = _DPO(
                model=self.model,
                ref_model=reference,
                args=args,
                train_dataset=dataset,
                processing_class=self.tokenizer,
                callbacks=[self.callback, tensorboard_callback(str(self.run.tensorboard))],
            )
            start = time.perf_counter()
            output = self.trainer.train(resume_from_checkpoint=checkpoint)
            seconds = time.perf_counter() - start
        self.model = self.trainer.model
        tokens = float(self.trainer.state.num_input_tokens_seen)
        return TrainResult(
            int(output.global_step),
            tuple(self.callback.losses),
            seconds,
            per_second(tokens, seconds),
            checkpoint,
        )
