"""Reward models learned from preferences (seed: "learn from human feedback").

A reward model reads a whole conversation (an episode rendered by the tokenizer's chat template,
with the env's tools) and returns one number: how good the episode is. It is trained on
preference pairs with TRL's ``RewardTrainer`` (a Bradley-Terry loss, ``-log sigmoid(r_chosen -
r_rejected)``) and then scores episodes for online RL in place of, or added to, the env's
reward (:class:`~llm_trainer.algorithms.config.RewardConfig`, ``reward_model_path`` and
``reward_model_weight``).

Pairs (:class:`RewardPair`: a shared ``prompt``, then a ``chosen`` and a ``rejected``
continuation) come from:

* the env (:func:`env_pairs`): a successful and a failed episode of the same task, cut at their
  first differing action, and oracle episodes against the same episode with a corrupted final
  answer that the env confirms fails (the pairs of :mod:`llm_trainer.algorithms.dpo`);
* people (:func:`load_pairs_jsonl`): one JSON object per line, ``{"prompt": [messages],
  "chosen": [messages], "rejected": [messages]}`` (``prompt`` optional, as in TRL's implicit
  prompt format; ``tools`` optional).

Held-out pairs are split off by task (:func:`split_pairs`), and :func:`ranking_accuracy` is the
fraction of them the model ranks right (0.5 is chance). The model is the policy's architecture
with a one-output score head (``AutoModelForSequenceClassification``, ``num_labels=1``) reading
the last token; :class:`RewardModel` is the scorer PPO loads.

The score head starts random, so the scale and offset of raw scores are arbitrary (the loss only
sees differences): the saved model stores the mean raw score over its training pairs, and
:class:`RewardModel` returns scores centred on it.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from llm_trainer.algorithms.base import Algorithm, AlgorithmContext, AlgorithmResult, TrainResult
from llm_trainer.algorithms.config import TrainConfig, check_file
from llm_trainer.algorithms.dpo import PreferencePair, corrupted_pairs, pair_trajectories
from llm_trainer.algorithms.trl_trainer import TRLTrainer
from llm_trainer.core.config import Range, check_ranges
from llm_trainer.core.errors import ConfigError, UserError
from llm_trainer.core.records import to_plain
from llm_trainer.core.rundir import RunDir, atomic_directory
from llm_trainer.core.trajectory import ROLES, Trajectory


@dataclass(frozen=True)
class RewardModelSettings:
    """Reward-model training on preference pairs (``algorithm: reward_model``)."""

    pairs: Literal["env", "file"] = "env"
    """``env``: pairs scored by the env (a successful episode vs a failed one of the same
    task); ``file``: human-labelled pairs from ``pairs_path``."""
    pairs_path: str | None = None
    """JSONL of ``{"prompt": [...messages], "chosen": [...], "rejected": [...]}`` rows."""
    held_out_fraction: Annotated[float, Range(gt=0, lt=1)] = 0.2
    """Pairs kept out of training to measure ranking accuracy."""

    def __post_init__(self) -> None:
        check_ranges(self, "reward_model")
        if self.pairs == "file" and not self.pairs_path:
            raise ConfigError("reward_model.pairs 'file' needs reward_model.pairs_path")
        check_file(self.pairs_path, "reward_model.pairs_path")


Message = Mapping[str, str]
METADATA_FILE = "reward_model.json"
"""Written beside a saved reward model: the system prompt and score offset it was trained with."""


@dataclass(frozen=True, slots=True)
class RewardPair:
    """``prompt + chosen`` is preferred to ``prompt + rejected``.

    Attributes:
        prompt: The shared start of both conversations (may be empty).
        chosen: The preferred continuation (at least one message).
        rejected: The other continuation (at least one message).
        tools: Tool specs (JSON schemas) the chat template lists.
        group: The task the pair belongs to (the env seed, or a file's line number): all pairs
            of one group fall on the same side of the train/held-out split.
    """

    prompt: tuple[Message, ...]
    chosen: tuple[Message, ...]
    rejected: tuple[Message, ...]
    tools: tuple[Any, ...] = ()
    group: int = 0

    @classmethod
    def from_preference(cls, pair: PreferencePair) -> RewardPair:
        """A DPO pair (one chosen and one rejected assistant action after a shared history)."""
        return cls(
            tuple(pair.prompt),
            ({"role": "assistant", "content": pair.chosen},),
            ({"role": "assistant", "content": pair.rejected},),
            tuple(pair.tools),
            pair.seed,
        )

    @property
    def chosen_conversation(self) -> list[Message]:
        return [*self.prompt, *self.chosen]

    @property
    def rejected_conversation(self) -> list[Message]:
        return [*self.prompt, *self.rejected]


def as_reward_pairs(pairs: Sequence[RewardPair | PreferencePair]) -> list[RewardPair]:
    """``pairs`` as :class:`RewardPair` (DPO pairs are converted)."""
    return [p if isinstance(p, RewardPair) else RewardPair.from_preference(p) for p in pairs]


def env_pairs(
    trajectories: Sequence[Trajectory],
    *,
    seed: int = 0,
    system_prompt: str | None = None,
    corrupted: bool = True,
) -> list[RewardPair]:
    """Env-scored pairs from ``trajectories``: each task's success against one of its failures
    (cut at the first differing action) and, with ``corrupted``, every successful episode
    against itself with a corrupted final answer that the env scores as a failure (``seed``
    draws the corruptions).

    ``system_prompt`` replaces the episodes' system prompt (``None`` keeps it); score with the
    same one (a trained model saves it, see :meth:`RewardModel.from_pretrained`).
    """
    pairs = pair_trajectories(trajectories, system_prompt=system_prompt)
    if corrupted:
        pairs += corrupted_pairs(trajectories, seed=seed, system_prompt=system_prompt)
    return as_reward_pairs(pairs)


def load_pairs_jsonl(path: str | Path) -> list[RewardPair]:
    """Human-labelled pairs from a JSONL file, one object per line (blank lines are skipped).

    Each line has ``chosen`` and ``rejected`` (non-empty lists of ``{"role", "content"}``
    messages), optionally ``prompt`` (a list of messages both continue) and ``tools`` (a list of
    tool specs, or that list as a JSON string). Without ``prompt``, ``chosen`` and ``rejected``
    are whole conversations (TRL's implicit-prompt format).

    Raises:
        UserError: A line is not valid JSON, or a field is missing or malformed; the message
            names the file, the line number and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"reward_model.pairs_path: {path} is not a file")
    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                pairs.append(_parse_row(line, f"{path}:{number}", number))
    if not pairs:
        raise UserError(f"{path}: no preference pairs (the file has no non-blank line)")
    return pairs


def _parse_row(line: str, where: str, number: int) -> RewardPair:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - {"prompt", "chosen", "rejected", "tools"})
    if unknown:
        raise UserError(
            f"{where}: unknown field(s) {unknown}; expected prompt, chosen, rejected, tools"
        )
    for name in ("chosen", "rejected"):
        if name not in row:
            raise UserError(f"{where}: missing field {name!r}")
    prompt = _messages(row.get("prompt", []), f"{where}: field 'prompt'", allow_empty=True)
    chosen = _messages(row["chosen"], f"{where}: field 'chosen'", allow_empty=False)
    rejected = _messages(row["rejected"], f"{where}: field 'rejected'", allow_empty=False)
    if chosen == rejected:
        raise UserError(f"{where}: fields 'chosen' and 'rejected' are identical")
    tools = row.get("tools", [])
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: field 'tools' is not valid JSON ({exc.msg})") from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise UserError(f"{where}: field 'tools' must be a list of tool specs (objects)")
    return RewardPair(prompt, chosen, rejected, tuple(tools), number)


def _messages(value: Any, where: str, *, allow_empty: bool) -> tuple[Message, ...]:
    if not isinstance(value, list):
        raise UserError(f"{where} must be a list of messages, got {type(value).__name__}")
    if not value and not allow_empty:
        raise UserError(f"{where} is empty")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise UserError(f"{where}[{i}] must be an object, got {type(message).__name__}")
        if set(message) != {"role", "content"}:
            raise UserError(
                f"{where}[{i}] must have exactly the keys 'role' and 'content', "
                f"got {sorted(message)}"
            )
        if message["role"] not in ROLES:
            raise UserError(
                f"{where}[{i}].role must be one of {list(ROLES)}, got {message['role']!r}"
            )
        if not isinstance(message["content"], str):
            raise UserError(
                f"{where}[{i}].content must be a string, got {type(message['content']).__name__}"
            )
        out.append({"role": message["role"], "content": message["content"]})
    return tuple(out)


def split_pairs(
    pairs: Sequence[RewardPair], held_out_fraction: float, seed: int = 0
) -> tuple[list[RewardPair], list[RewardPair]]:
    """``(train, held_out)``: whole groups (tasks) are held out, ``ceil(fraction * groups)`` of
    them, drawn by ``seed``; each side keeps the pairs' order.

    Raises:
        UserError: Fewer than two groups (nothing to hold out), or a fraction outside (0, 1).
    """
    if not 0 < held_out_fraction < 1:
        raise UserError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    groups = sorted({p.group for p in pairs})
    if len(groups) < 2:
        raise UserError(
            f"cannot hold out pairs: {len(pairs)} pair(s) from {len(groups)} task(s); "
            "at least two tasks are needed"
        )
    n_held = min(len(groups) - 1, max(1, math.ceil(held_out_fraction * len(groups))))
    order = np.random.default_rng(seed).permutation(len(groups))
    held = {groups[i] for i in order[:n_held]}
    return [p for p in pairs if p.group not in held], [p for p in pairs if p.group in held]


def reward_rows(pairs: Sequence[RewardPair]) -> list[dict[str, Any]]:
    """TRL's conversational preference format (explicit prompt; tools as a JSON string, since
    tool schemas differ in shape)."""
    return [
        {
            "prompt": [dict(m) for m in p.prompt],
            "chosen": [dict(m) for m in p.chosen],
            "rejected": [dict(m) for m in p.rejected],
            "tools": json.dumps(to_plain(list(p.tools))),
        }
        for p in pairs
    ]


def _encode(tokenizer: Any, messages: Sequence[Message], tools: Sequence[Any]) -> list[int]:
    """Token ids of a conversation, exactly as TRL's ``RewardTrainer`` renders a pair."""
    encoded = tokenizer.apply_chat_template(
        [dict(m) for m in messages],
        tools=json.loads(json.dumps(to_plain(list(tools)))),
        tokenize=True,
        return_dict=True,
    )
    return list(encoded["input_ids"])


def sequence_classifier(model_or_path: Any, tokenizer: Any, *, seed: int = 0) -> Any:
    """A one-output ``AutoModelForSequenceClassification`` for reward modelling.

    ``model_or_path`` is a Hugging Face model directory (the score head is new), a sequence
    classifier with ``num_labels=1`` (used as is), or an in-memory causal LM (its transformer
    weights are copied under a new score head). ``seed`` initialises the new head (on a forked
    RNG: the process's generators are untouched). Sets the model's ``pad_token_id`` from the
    tokenizer (the eos token when it has no pad token): the head reads the last non-pad token.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if isinstance(model_or_path, str | Path):
        path = Path(model_or_path)
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a Hugging Face model directory (no config.json)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, dtype=torch.float32
            )
    elif not hasattr(model_or_path, "config") or not hasattr(model_or_path, "base_model_prefix"):
        kind = type(model_or_path).__name__
        raise UserError(f"expected a model directory or a transformers model, got {kind}")
    elif type(model_or_path).__name__.endswith("ForSequenceClassification"):
        if model_or_path.config.num_labels != 1:
            raise UserError(
                f"a reward model has one output; {type(model_or_path).__name__} has "
                f"num_labels={model_or_path.config.num_labels}"
            )
        model = model_or_path
    else:
        config = copy.deepcopy(model_or_path.config)
        config.num_labels = 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_config(config)
        body = getattr(model_or_path, model_or_path.base_model_prefix)
        getattr(model, model.base_model_prefix).load_state_dict(body.state_dict())
        model.to(dtype=next(body.parameters()).dtype, device=next(body.parameters()).device)
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    return model


class RewardModel:
    """Scores conversations and episodes with a trained reward model (no gradients).

    Scores do not depend on the batch: sequences are padded on the right, so a sequence's
    positions and attention are the same alone or in a batch.

    Args:
        model: A sequence classifier with one output (``num_labels=1``).
        tokenizer: Its tokenizer (with the chat template it was trained with).
        system_prompt: Replaces the episodes' system prompt in :meth:`score` (``None`` keeps
            it); set from the saved metadata by :meth:`from_pretrained`.
        offset: Subtracted from every raw score (the mean over the training pairs).
        batch_size: Sequences per forward pass.
        max_length: Longer conversations keep their last ``max_length`` tokens (default: the
            model's ``max_position_embeddings``).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        system_prompt: str | None = None,
        offset: float = 0.0,
        batch_size: int = 32,
        max_length: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if getattr(model.config, "num_labels", None) != 1:
            raise UserError(
                f"a reward model has one output; {type(model).__name__} has "
                f"num_labels={getattr(model.config, 'num_labels', None)}"
            )
        if tokenizer.pad_token_id is None:
            raise UserError("the reward model's tokenizer has no pad token")
        self.model, self.tokenizer = model, tokenizer
        self.system_prompt, self.offset, self.batch_size = system_prompt, offset, batch_size
        self.max_length = max_length or getattr(model.config, "max_position_embeddings", None)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, batch_size: int = 32, device: str | None = None
    ) -> RewardModel:
        """Load a reward model saved by :meth:`RewardModelTrainer.save` (or any local sequence
        classifier with one output). ``device`` defaults to the GPU when there is one."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise UserError(f"reward model: {path} is not a model directory (no config.json)")
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32)
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        meta_file = path / METADATA_FILE
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        return cls(
            model,
            tokenizer,
            system_prompt=meta.get("system_prompt"),
            offset=float(meta.get("offset", 0.0)),
            batch_size=batch_size,
        )

    def score(
        self, trajectories: Sequence[Trajectory], system_prompt: str | None = None
    ) -> list[float]:
        """One score per episode: its chat (:meth:`Trajectory.messages`) with its tools.

        ``system_prompt`` replaces the episodes' system prompt (``None``: the one the model was
        trained with, else the recorded one).
        """
        prompt = self.system_prompt if system_prompt is None else system_prompt
        return self.score_messages(
            [t.messages(system_prompt=prompt) for t in trajectories],
            [to_plain(t.tools) for t in trajectories],
        )

    def score_messages(
        self,
        conversations: Sequence[Sequence[Message]],
        tools: Sequence[Sequence[Any]] | None = None,
    ) -> list[float]:
        """One score per conversation (``tools[i]`` are the tool specs of conversation i)."""
        import torch

        if tools is not None and len(tools) != len(conversations):
            raise ValueError(f"{len(tools)} tool lists for {len(conversations)} conversations")
        encoded = [
            _encode(self.tokenizer, messages, tools[i] if tools is not None else ())
            for i, messages in enumerate(conversations)
        ]
        if self.max_length:
            encoded = [ids[-self.max_length :] for ids in encoded]
        # Similar lengths share a batch (less padding); the scores come back in input order.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        scores = [0.0] * len(encoded)
        device = next(self.model.parameters()).device
        pad = int(self.tokenizer.pad_token_id)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), self.batch_size):
                    batch = order[start : start + self.batch_size]
                    width = max(len(encoded[i]) for i in batch)
                    ids = torch.full((len(batch), width), pad, dtype=torch.long)
                    mask = torch.zeros((len(batch), width), dtype=torch.long)
                    for row, i in enumerate(batch):
                        ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                        mask[row, : len(encoded[i])] = 1
                    logits = self.model(
                        input_ids=ids.to(device), attention_mask=mask.to(device)
                    ).logits
                    for row, i in enumerate(batch):
                        scores[i] = float(logits[row, 0]) - self.offset
        finally:
            if was_training:
                self.model.train()
        return scores

    def score_pairs(self, pairs: Sequence[RewardPair]) -> tuple[list[float], list[float]]:
        """Scores of the chosen and of the rejected conversation of each pair."""
        scores = self.score_messages(
            [p.chosen_conversation for p in pairs] + [p.rejected_conversation for p in pairs],
            [p.tools for p in pairs] * 2,
        )
        return scores[: len(pairs)], scores[len(pairs) :]


def ranking_accuracy(scorer: RewardModel, pairs: Sequence[RewardPair | PreferencePair]) -> float:
    """The fraction of ``pairs`` whose chosen conversation scores above the rejected one (a tie
    counts one half, so a model that cannot tell them apart scores 0.5)."""
    if not pairs:
        raise ValueError("ranking_accuracy needs at least one pair")
    chosen, rejected = scorer.score_pairs(as_reward_pairs(pairs))
    wins = sum(
        1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True)
    )
    return wins / len(pairs)


class RewardModelTrainer(TRLTrainer):
    """Train a reward model on preference pairs (TRL ``RewardTrainer``).

    Args:
        model_path_or_model: A model directory (e.g. the tiny model or an SFT run's
            ``final_model``), a causal LM in memory, or a one-output sequence classifier; see
            :func:`sequence_classifier`.
        tokenizer: Its tokenizer with a chat template.
        train: Optimisation settings (with ``lora.enabled``, adapters and the score head train).
        settings: Reward-model settings.
        run: The run directory (checkpoints, TensorBoard, metrics).
        seed: Seeds the new score head and the data order.
        system_prompt: The system prompt the pairs were built with (see :func:`env_pairs`);
            saved with the model so that :meth:`RewardModel.score` renders episodes the same way.
        callbacks: Extra ``transformers.TrainerCallback`` objects.
    """

    def __init__(
        self,
        model_path_or_model: Any,
        tokenizer: Any,
        train: TrainConfig,
        settings: RewardModelSettings,
        run: RunDir,
        *,
        seed: int = 0,
        system_prompt: str | None = None,
        callbacks: Sequence[Any] = (),
    ) -> None:
        from llm_trainer.algorithms.hf import apply_lora

        model = sequence_classifier(model_path_or_model, tokenizer, seed=seed)
        super().__init__(
            # SEQ_CLS: peft also trains (and saves) the new score head
            apply_lora(model, train.lora, task_type="SEQ_CLS"),
            tokenizer,
            train,
            run,
            seed=seed,
            system_prompt=system_prompt,
            callbacks=callbacks,
            lora=False,
        )
        self.settings = settings
        self.offset = 0.0

    def train(
        self, pairs: Sequence[RewardPair | PreferencePair], *, resume: bool = False
    ) -> TrainResult:
        """Train on ``pairs``; afterwards scores are centred on their mean over these pairs."""
        import datasets
        from trl.trainer.reward_config import RewardConfig as TRLRewardConfig
        from trl.trainer.reward_trainer import RewardTrainer as TRLRewardTrainer

        reward_pairs = as_reward_pairs(pairs)
        if not reward_pairs:
            raise UserError("reward-model training needs at least one preference pair")

        def check_lengths(trainer: Any) -> None:
            kept = len(trainer.train_dataset)  # TRL drops pairs longer than max_length
            if kept < len(reward_pairs):
                self.run.log_metrics(0, {"reward_model/pairs_too_long": len(reward_pairs) - kept})
            if not kept:
                raise UserError(
                    f"every pair is longer than train.max_length={self.config.max_length} tokens"
                )

        result = self._fit(
            TRLRewardTrainer,
            TRLRewardConfig,
            resume=resume,
            config_kwargs={"max_length": self.config.max_length, "dataset_num_proc": None},
            before_train=check_lengths,
            train_dataset=datasets.Dataset.from_list(reward_rows(reward_pairs)),
        )
        chosen, rejected = RewardModel(self.model, self.tokenizer).score_pairs(reward_pairs)
        self.offset = float(np.mean(chosen + rejected))
        return result

    def scorer(self, batch_size: int = 32) -> RewardModel:
        """The model being trained, as a :class:`RewardModel` (shares its weights)."""
        return RewardModel(
            self.model,
            self.tokenizer,
            system_prompt=self.system_prompt,
            offset=self.offset,
            batch_size=batch_size,
        )

    def save(self, path: str | Path, **metadata: Any) -> Path:
        """Write the model (adapters merged), tokenizer and metadata into ``path`` atomically;
        :meth:`RewardModel.from_pretrained` loads it. ``metadata`` is stored too."""
        model = self.model
        if hasattr(model, "merge_and_unload"):  # LoRA: a plain model loads without peft
            model = copy.deepcopy(model).merge_and_unload()
        meta = {"system_prompt": self.system_prompt, "offset": self.offset, **metadata}

        def write(tmp: Path) -> None:
            model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")

        return atomic_directory(Path(path), write)


class RewardModelAlgorithm(Algorithm):
    """A reward model (TRL RewardTrainer) on env-scored or human-labelled preference pairs."""

    name = "reward_model"
    config_class = RewardModelSettings
    produces_policy = False
    sections = ("data",)
    multi_process = True

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        """pairs -> held-out split -> ranking accuracy before -> train -> after -> save
        ``run/reward_model``.

        Env pairs are built from the ``data`` section's trajectories with :func:`env_pairs`;
        file pairs from ``reward_model.pairs_path``.
        """
        settings: RewardModelSettings = self.config
        system_prompt = context.system_prompt
        model, tokenizer = context.load_model()
        dataset_version = None
        if settings.pairs == "env":
            trajectories, dataset_version = context.training_data(model, tokenizer)
            pairs = env_pairs(trajectories, seed=context.seed, system_prompt=system_prompt)
            context.log(
                f"reward model: {len(pairs)} env-scored pairs from {len(trajectories)} episodes"
            )
        else:
            assert settings.pairs_path is not None  # RewardModelSettings checks it
            pairs = load_pairs_jsonl(settings.pairs_path)
            context.log(f"reward model: {len(pairs)} labelled pairs from {settings.pairs_path}")
        train_pairs, held_out = split_pairs(pairs, settings.held_out_fraction, seed=context.seed)
        trainer = RewardModelTrainer(
            model,
            tokenizer,
            context.experiment.train,
            settings,
            context.run,
            seed=context.seed,
            system_prompt=system_prompt,
        )
        before = ranking_accuracy(trainer.scorer(), held_out)
        context.run.log_metrics(0, {"eval/ranking_accuracy": before})
        context.log(
            f"reward model: {len(train_pairs)} training / {len(held_out)} held-out pairs; "
            f"held-out ranking accuracy before training {before:.3f}"
        )
        result = trainer.train(train_pairs, resume=context.resume)
        after = ranking_accuracy(trainer.scorer(), held_out)
        context.run.log_metrics(result.steps, {"eval/ranking_accuracy": after})
        context.log(
            f"reward model: held-out ranking accuracy after {result.steps} steps {after:.3f}"
        )
        final = context.run.path / "reward_model"
        if context.processes.is_main:  # data-parallel: the main process saves it
            trainer.save(
                final,
                ranking_accuracy=after,
                train_pairs=len(train_pairs),
                held_out_pairs=len(held_out),
            )
        return AlgorithmResult(
            training=result,
            metrics={
                "ranking_accuracy_before": before,
                "ranking_accuracy_after": after,
                "train_pairs": len(train_pairs),
                "held_out_pairs": len(held_out),
                "seconds_per_step": round(result.seconds / result.steps, 3)
                if result.steps
                else None,
                "score_offset": trainer.offset,
            },
            dataset_version=dataset_version,
            artifacts={"model_dir": str(final)},
        )
