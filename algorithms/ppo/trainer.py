"""PPO for LLM agents over multi-turn env episodes (ours: TRL 1.16 has no PPOTrainer).

Read it top to bottom, in the spirit of cleanrl's ``ppo.py``. Each iteration:

1. **Rollout.** ``episodes_per_iteration`` episodes of the env run in lockstep
   (:func:`~llm_trainer.algorithms.rollout.collect`); an :class:`~llm_trainer.agents.
   llm_agent.LLMAgent` samples every turn in one batched generation and records, per step,
   the exact prompt tokens, the sampled tokens and their log-probs.
2. **Rewards.** Each step's env reward, shaped (:mod:`llm_trainer.algorithms.rewards`) and
   optionally plus a reward model's score, is placed on the last token the agent generated
   in that step; with ``kl_mode: reward`` every generated token also pays
   ``-kl_coef * (log p - log p_ref)`` against the frozen initial policy.
3. **Advantages.** Values come from a head on the policy's last hidden state (or a separate
   value model); GAE runs over the generated tokens only: tool results and chat markers are
   context, never actions (:func:`~llm_trainer.algorithms.ppo.core.gae`). Values of every row
   are computed first, then GAE runs per episode, across the rows an episode was split into
   (:func:`~llm_trainer.algorithms.ppo.core.episode_gae`).
4. **Update.** ``update_epochs`` passes of ``num_minibatches`` mini-batches each; each
   mini-batch is split into micro-batches of ``train.batch_size`` episodes whose losses are
   normalised by the mini-batch's token count, so gradient accumulation is exact.

Training uses the token ids and log-probs recorded at sampling time, never re-tokenised text.
Log-probs are ``gather(logits) - logsumexp(logits)`` in fp32 chunks
(:func:`~llm_trainer.algorithms.ppo.core.token_logprobs`): no full-vocabulary log-softmax is
ever built, and the entropy is computed only for an entropy bonus (``ppo.ent_coef`` > 0; the
``ppo/entropy`` metric is then logged). Everything runs on the device the model is on, with
bf16/fp16 autocast there when ``train.precision`` asks for it (``auto``: bf16 on a GPU that
has it); fp16 adds a gradient scaler.
Checkpoints (policy, value head, optimizer, scheduler, iteration, and the curriculum's state)
are written atomically every ``train.save_steps`` iterations; a resumed run continues the same
curve, because every source of randomness is derived from ``(seed, iteration)``.

With ``ppo.curriculum`` the iteration's envs share one
:class:`~llm_trainer.envs.wrappers.curriculum.Curriculum`: every episode of an iteration is
played at its current level, the iteration's outcomes move it for the next one, and its
``curriculum/*`` metrics are logged with the others.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from llm_trainer.algorithms.base import (
    Algorithm,
    AlgorithmContext,
    AlgorithmResult,
    TrainResult,
    merged,
)
from llm_trainer.algorithms.config import RewardConfig, TrainConfig
from llm_trainer.algorithms.ppo.config import PPOSettings
from llm_trainer.algorithms.ppo.core import (
    TokenRow,
    episode_gae,
    masked_mean,
    pack_episode,
    ppo_losses,
    token_logprobs,
    whiten,
)
from llm_trainer.algorithms.rewards import step_rewards
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import RunDir, atomic_directory
from llm_trainer.core.seeding import derive_seed, preserved_global_rngs
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.envs.wrappers.curriculum import Curriculum, CurriculumManager

Evaluate = Callable[[Any], Mapping[str, float]]

CHECKPOINT_PREFIX = "iteration-"


class ValueHead:
    """A linear value head on a causal LM's last hidden state (built lazily: needs torch)."""

    @staticmethod
    def build(hidden_size: int) -> Any:
        """Initialised to zero: the first advantages are the returns themselves, not the noise
        of a random head (which would swamp a sparse end-of-episode reward)."""
        import torch

        head = torch.nn.Linear(hidden_size, 1)
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
        return head


class PPOTrainer:
    """Train ``model`` with PPO on ``settings.env_id``.

    Args:
        model: A causal LM, usually an SFT agent (wrapped with LoRA when ``train.lora``).
        tokenizer: Its tokenizer (with the chat template used at SFT time).
        train: Optimisation: ``max_steps`` iterations, ``batch_size`` episodes per micro-batch,
            ``learning_rate``, ``warmup_steps`` (optimizer steps), ``max_grad_norm``,
            ``save_steps`` (iterations between checkpoints), ``lora``, ``threads``.
        settings: PPO's own settings (:class:`~llm_trainer.algorithms.config.PPOSettings`).
        reward: What is optimised (:class:`~llm_trainer.algorithms.config.RewardConfig`).
        run: The run directory (metrics, TensorBoard, checkpoints).
        seed: Seeds the value head, sampling and mini-batch order.
        system_prompt: The agent's system prompt (as at SFT time; ``None`` keeps the env's).
        evaluate: Called with the model every ``eval_every`` iterations; logged as ``eval/*``.
        eval_every: Iterations between evaluations (0: never during training).
        model_dir: The directory ``model`` was loaded from (needed by the vLLM backend).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        train: TrainConfig,
        settings: PPOSettings,
        reward: RewardConfig,
        run: RunDir,
        *,
        seed: int = 0,
        system_prompt: str | None = None,
        evaluate: Evaluate | None = None,
        eval_every: int = 0,
        model_dir: str | Path | None = None,
    ) -> None:
        import torch

        from llm_trainer.algorithms.hf import apply_lora
        from llm_trainer.envs.registration import make

        make(settings.env_id).close()  # an unknown id fails here, with a suggestion
        if settings.backend == "vllm" and model_dir is None:
            raise ConfigError("ppo.backend 'vllm' needs the model directory (model_dir)")
        self.train_config, self.settings, self.reward = train, settings, reward
        self.tokenizer, self.run, self.seed = tokenizer, run, seed
        self.system_prompt = system_prompt
        self.evaluate, self.eval_every = evaluate, eval_every
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.lora = train.lora.enabled
        with preserved_global_rngs():
            # the frozen reference: the initial policy (LoRA: the base with adapters disabled)
            self.ref_model = None if self.lora else copy.deepcopy(model).eval()
            if self.ref_model is not None:
                self.ref_model.requires_grad_(False)
            self.model = apply_lora(model, train.lora)
            hidden = int(model.config.hidden_size)
            self.device = next(model.parameters()).device
            self.value_head = ValueHead.build(hidden).to(self.device)
            self.value_model = None
            if settings.value_model == "separate":
                base = self.ref_model if self.ref_model is not None else model
                self.value_model = copy.deepcopy(base).train().requires_grad_(True)
        policy = [p for p in self.model.parameters() if p.requires_grad]
        value = list(self.value_head.parameters())
        if self.value_model is not None:
            value += list(self.value_model.parameters())
        self.parameters = policy + value
        from llm_trainer.algorithms.hf import precision_kwargs

        # bf16/fp16 autocast where the model is on a GPU that has it (``train.precision:
        # auto``); fp32 on a CPU (no speed-up there, see STACK.md). Weights stay fp32.
        precision = precision_kwargs(train.precision)
        on_gpu = self.device.type == "cuda"
        self.autocast_dtype = (
            torch.bfloat16
            if on_gpu and precision["bf16"]
            else torch.float16
            if on_gpu and precision["fp16"]
            else None
        )
        # fp16 gradients underflow without loss scaling; bf16 and fp32 need none (a no-op)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.autocast_dtype == torch.float16
        )
        self.optimizer = torch.optim.AdamW(
            [
                {"params": policy, "lr": train.learning_rate},
                {"params": value, "lr": train.learning_rate * settings.value_lr_multiplier},
            ],
            lr=train.learning_rate,
            betas=(0.9, train.adam_beta2),
            weight_decay=train.weight_decay,
        )
        from llm_trainer.algorithms.hf import lr_scheduler

        total = train.max_steps * settings.update_epochs * settings.num_minibatches
        self.scheduler = lr_scheduler(train, self.optimizer, total)
        self.reward_model: Any = None
        if reward.reward_model_path is not None and reward.reward_model_weight:
            from llm_trainer.algorithms.reward_model import RewardModel

            self.reward_model = RewardModel.from_pretrained(
                reward.reward_model_path, device=self.device.type
            )
        self._backend: Any = None
        self.curriculum = (
            Curriculum.for_env(settings.curriculum, settings.env_id)
            if settings.curriculum is not None
            else None
        )
        """The run's curriculum (``ppo.curriculum``), shared by every rollout env."""
        self.iteration = 0
        self.losses: list[tuple[int, float]] = []
        self.tokens_trained = 0
        self.tokens_generated = 0
        self.env_steps = 0
        self.generation_seconds = 0.0
        self.update_seconds = 0.0

    # -- 1. rollout ---------------------------------------------------------------------------

    def _backend_for_rollouts(self) -> Any:
        if self.settings.backend == "transformers":
            from llm_trainer.agents.backends.transformers_backend import TransformersBackend

            if self._backend is None:
                self._backend = TransformersBackend(self.model, self.tokenizer)
            return self._backend
        from llm_trainer.agents.backends.vllm_backend import VLLMBackend

        if self._backend is None:
            # On a GPU vLLM shares the chip with training: it takes only its configured share
            # (weights and KV cache). On a CPU, leave it None: the backend then sizes the KV
            # cache in GiB (``kv_cache_gib``, 1 GiB by default), not as a fraction of memory.
            share = self.settings.vllm_gpu_memory_utilization
            self._backend = VLLMBackend(
                str(self.model_dir),
                weight_sync=True,
                gpu_memory_utilization=share if self.device.type == "cuda" else None,
            )
        # vLLM generates, torch updates: the engine gets this iteration's weights in place
        # (LoRA adapters merged; see VLLMBackend.sync_weights_from)
        self._backend.sync_weights_from(self.model)
        return self._backend

    def rollout(self, iteration: int) -> list[Trajectory]:
        """Play this iteration's episodes with the current policy (sampling, seeded)."""
        from llm_trainer.agents.backends.base import SamplingConfig
        from llm_trainer.agents.llm_agent import LLMAgent, LLMAgentConfig
        from llm_trainer.algorithms.rollout import collect

        s = self.settings
        backend = self._backend_for_rollouts()
        config = LLMAgentConfig(
            backend=f"{backend.kind}:<in-memory policy>"
            if backend.kind == "transformers"
            else f"vllm:{self.model_dir}",
            sampling=SamplingConfig(
                temperature=s.temperature,
                max_new_tokens=s.max_new_tokens,
                seed=derive_seed(self.seed, "ppo-rollout", iteration),
            ),
            system_prompt=self.system_prompt,
            record_episodes=False,
        )
        agent = LLMAgent(config, backend=backend)
        first = s.first_seed + iteration * s.episodes_per_iteration
        seeds = range(first, first + s.episodes_per_iteration)
        curriculum = self.curriculum
        self.model.eval()
        # the whole iteration at one level: its outcomes move the curriculum when it is over
        with curriculum.hold() if curriculum is not None else contextlib.nullcontext():
            try:
                return collect(
                    s.env_id,
                    lambda envs: agent,
                    list(seeds),
                    num_envs=s.episodes_per_iteration,
                    difficulty=s.difficulty,
                    env_kwargs=s.env_kwargs,
                    max_turns=s.max_turns,
                    source="policy:ppo",
                    wrap=None
                    if curriculum is None
                    else (lambda env: CurriculumManager(env, curriculum)),
                )
            finally:
                self.model.train()

    # -- 2-4. one iteration -------------------------------------------------------------------

    def _forward(
        self,
        model: Any,
        tokens: Any,
        attention: Any,
        *,
        logprobs: bool = True,
        values: bool = False,
        entropy: bool = False,
    ) -> tuple[Any, Any, Any]:
        """``(logprobs, entropy, values)`` at each position t < T-1 (predicting token t+1),
        each ``[batch, T-1]`` fp32, or ``None`` unless asked.

        The policy is the tempered distribution (``ppo.temperature``): the one sampled from.
        """
        import contextlib

        import torch

        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        policy_hidden = values and self.value_model is None
        with autocast:
            out = model(
                input_ids=tokens, attention_mask=attention, output_hidden_states=policy_hidden
            )
        logp = ent = value = None
        if logprobs or entropy:
            # the full logits go in as they are (no shifted or fp32 copy of them is made)
            logp, ent = token_logprobs(
                out.logits, tokens[:, 1:], temperature=self.settings.temperature, entropy=entropy
            )
        if values:
            if self.value_model is not None:
                # its body only: the last hidden state, without a [batch, T, vocabulary] head
                body = getattr(self.value_model, "base_model", self.value_model)
                with autocast:
                    hidden = body(input_ids=tokens, attention_mask=attention).last_hidden_state
            else:
                hidden = out.hidden_states[-1]
            value = self.value_head(hidden[:, :-1].float()).squeeze(-1)
        return logp, ent, value

    def _ref_logprobs(self, tokens: Any, attention: Any) -> Any:
        import torch

        with torch.no_grad():
            if self.ref_model is not None:
                logp, _, _ = self._forward(self.ref_model, tokens, attention)
            else:
                with self.model.disable_adapter():
                    logp, _, _ = self._forward(self.model, tokens, attention)
        return logp

    def _batch(self, rows: Sequence[TokenRow]) -> dict[str, Any]:
        """Right-padded tensors of ``rows``, shifted so position t predicts token t+1."""
        import torch

        width = max(len(r.tokens) for r in rows)
        pad = int(self.tokenizer.pad_token_id or 0)

        def tensor(values: list[list[Any]], dtype: Any) -> Any:
            return torch.tensor(values, dtype=dtype, device=self.device)

        tokens = tensor(
            [list(r.tokens) + [pad] * (width - len(r.tokens)) for r in rows], torch.long
        )
        attention = tensor(
            [[1] * len(r.tokens) + [0] * (width - len(r.tokens)) for r in rows], torch.long
        )
        mask = tensor(
            [list(r.action_mask) + [0] * (width - len(r.tokens)) for r in rows], torch.float32
        )
        old = tensor(
            [list(r.logprobs) + [0.0] * (width - len(r.tokens)) for r in rows], torch.float32
        )
        rew = tensor(
            [list(r.rewards) + [0.0] * (width - len(r.tokens)) for r in rows], torch.float32
        )
        return {
            "tokens": tokens,
            "attention": attention,
            "mask": mask[:, 1:],
            "old_logprobs": old[:, 1:],
            "rewards": rew[:, 1:],
        }

    def _check_context(self, rows: Sequence[TokenRow]) -> None:
        limit = getattr(self.model.config, "max_position_embeddings", None)
        longest = max(len(r.tokens) for r in rows)
        if isinstance(limit, int) and longest > limit:
            raise ConfigError(
                f"an episode of {longest} tokens exceeds the model's context of {limit}: lower "
                "ppo.max_new_tokens or use an env with fewer turns"
            )

    def rollout_data(self, episode_rows: Sequence[Sequence[TokenRow]]) -> list[dict[str, Any]]:
        """Per row of each episode (in order): its padded tensors (``tokens``, ``attention``,
        and, shifted so position t predicts token t+1, ``mask``, ``old_logprobs``, the token
        ``rewards`` with the KL penalty, ``values``, ``ref_logprobs``, ``kl``, ``advantages``
        and ``returns``), on the model's device.

        Values and reference log-probs are computed ``train.batch_size`` rows at a time (no
        grad), then GAE runs per episode over all of its rows, so an episode split into
        several rows (:func:`~llm_trainer.algorithms.ppo.core.pack_episode`) bootstraps from
        its next row wherever that row's values were computed.
        """
        import torch

        s = self.settings
        rows = [r for episode in episode_rows for r in episode]
        episode_of_row = [e for e, episode in enumerate(episode_rows) for _ in episode]
        micro = self.train_config.batch_size
        # rows of similar length share a micro-batch (less padding), then go back in order
        by_length = sorted(range(len(rows)), key=lambda i: len(rows[i].tokens))
        computed: dict[int, dict[str, Any]] = {}
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(rows), micro):
                    picked = by_length[start : start + micro]
                    batch = self._batch([rows[i] for i in picked])
                    tokens, attention, mask = batch["tokens"], batch["attention"], batch["mask"]
                    # the recorded log-probs are the raw (temperature 1) ones: at another
                    # temperature the sampling policy's are recomputed from the same weights
                    tempered = s.temperature != 1.0
                    logp, _, values = self._forward(
                        self.model, tokens, attention, logprobs=tempered, values=True
                    )
                    if tempered:
                        batch["old_logprobs"] = logp * mask
                    ref = self._ref_logprobs(tokens, attention)
                    kl = (batch["old_logprobs"] - ref) * mask
                    if s.kl_mode == "reward":
                        batch["rewards"] = batch["rewards"] - s.kl_coef * kl
                    batch.update(values=values * mask, ref_logprobs=ref, kl=kl)
                    for j, i in enumerate(picked):
                        computed[i] = {k: v[j] for k, v in batch.items()}
                data = [computed[i] for i in range(len(rows))]
                advantages, returns = episode_gae(
                    [d["rewards"] for d in data],
                    [d["values"] for d in data],
                    [d["mask"] for d in data],
                    episode_of_row,
                    gamma=s.gamma,
                    lam=s.gae_lambda,
                )
        finally:
            self.model.train()
        for d, adv, ret in zip(data, advantages, returns, strict=True):
            d.update(advantages=adv, returns=ret)
        return data

    def step(self, iteration: int) -> dict[str, float]:
        """One PPO iteration: rollout, advantages, update. Returns its metrics."""
        import torch

        s, cfg = self.settings, self.train_config
        t0 = time.perf_counter()
        trajectories = self.rollout(iteration)
        t1 = time.perf_counter()
        scores: list[float | None] = [None] * len(trajectories)
        if self.reward_model is not None:
            scores = list(self.reward_model.score(trajectories, system_prompt=self.system_prompt))
        usable = [
            (t, score)
            for t, score in zip(trajectories, scores, strict=True)
            if t.error is None and t.steps
        ]
        episode_rows: list[list[TokenRow]] = [
            pack_episode(t, step_rewards(t, self.reward, score)) for t, score in usable
        ]
        rows = [r for episode in episode_rows for r in episode]
        if not rows:
            raise RuntimeError(
                f"iteration {iteration}: every episode failed: {trajectories[0].error}"
            )
        self._check_context(rows)
        self.tokens_generated += sum(r.num_actions for r in rows)
        self.env_steps += sum(len(t.steps) for t in trajectories)
        # values, reference log-probs, token rewards, then GAE per episode (across its rows)
        data = self.rollout_data(episode_rows)
        micro = cfg.batch_size
        # whiten advantages over the iteration's tokens
        if s.whiten_advantages:
            flat_adv = torch.cat([d["advantages"] for d in data])
            flat_mask = torch.cat([d["mask"] for d in data])
            white = whiten(flat_adv, flat_mask)
            offset = 0
            for d in data:
                n = d["advantages"].shape[0]
                d["advantages"] = white[offset : offset + n]
                offset += n

        stats: dict[str, list[float]] = {}
        generator = torch.Generator().manual_seed(
            derive_seed(self.seed, "ppo-minibatches", iteration, bits=63)
        )
        stopped_early = False
        for epoch in range(s.update_epochs):
            order = torch.randperm(len(data), generator=generator).tolist()
            chunks = [order[i :: s.num_minibatches] for i in range(s.num_minibatches)]
            for chunk in chunks:
                if not chunk:
                    continue
                tokens_in_minibatch = float(sum(data[i]["mask"].sum() for i in chunk))
                # rows of similar length share a micro-batch (less padding); the gradient is the
                # same in any grouping: each micro-batch's loss is over the mini-batch's tokens
                chunk = sorted(chunk, key=lambda i: data[i]["tokens"].shape[0])
                self.optimizer.zero_grad(set_to_none=True)
                minibatch: dict[str, float] = {}
                for mstart in range(0, len(chunk), micro):
                    part = [data[i] for i in chunk[mstart : mstart + micro]]
                    losses = self._micro_loss(part, tokens_in_minibatch)
                    self.scaler.scale(losses.total).backward()
                    # the losses are sums over the mini-batch's tokens already; the clip
                    # fraction and approximate KL are means over the micro-batch's own tokens
                    share = float(sum(d["mask"].sum() for d in part)) / max(
                        tokens_in_minibatch, 1.0
                    )
                    for name in ("policy", "value", "entropy", "kl", "clip_fraction", "approx_kl"):
                        term = getattr(losses, name)
                        if term is not None:  # the entropy only with an entropy bonus
                            weight = share if name in ("clip_fraction", "approx_kl") else 1.0
                            minibatch[name] = (
                                minibatch.get(name, 0.0) + float(term.detach()) * weight
                            )
                for name, value in minibatch.items():  # one value per mini-batch
                    stats.setdefault(name, []).append(value)
                self.scaler.unscale_(self.optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, cfg.max_grad_norm)
                stats.setdefault("grad_norm", []).append(float(grad_norm))
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
            approx_kl = stats["approx_kl"]
            if s.target_kl is not None and sum(approx_kl) / len(approx_kl) > s.target_kl:
                stopped_early = epoch < s.update_epochs - 1
                break
        t2 = time.perf_counter()
        self.generation_seconds += t1 - t0
        self.update_seconds += t2 - t1
        self.tokens_trained += int(sum(float(d["mask"].sum()) for d in data)) * s.update_epochs

        metrics = {f"ppo/{k}": sum(v) / len(v) for k, v in stats.items()}
        all_mask = torch.cat([d["mask"] for d in data])
        metrics["ppo/kl_to_ref"] = float(masked_mean(torch.cat([d["kl"] for d in data]), all_mask))
        values = torch.cat([d["values"] for d in data])
        returns = torch.cat([d["returns"] for d in data])
        var = float(masked_mean((returns - masked_mean(returns, all_mask)) ** 2, all_mask))
        resid = float(masked_mean((returns - values) ** 2, all_mask))
        metrics["ppo/explained_variance"] = 1 - resid / var if var > 1e-12 else 0.0
        done = [t for t in trajectories if t.error is None]
        n_ep = max(1, len(trajectories))
        metrics.update(
            {
                "rollout/env_reward": sum(t.total_reward for t in trajectories) / n_ep,
                "rollout/shaped_reward": sum(
                    sum(step_rewards(t, self.reward, sc)) for t, sc in usable
                )
                / n_ep,
                "rollout/success": sum(t.success for t in done) / n_ep,
                "rollout/errors": float(len(trajectories) - len(done)),
                "rollout/mean_steps": sum(len(t.steps) for t in trajectories) / n_ep,
                "rollout/generated_tokens": float(sum(r.num_actions for r in rows)),
                "time/rollout_seconds": t1 - t0,
                "time/update_seconds": t2 - t1,
                "time/env_steps_per_second": sum(len(t.steps) for t in trajectories) / (t1 - t0),
                "time/generated_tokens_per_second": sum(r.num_actions for r in rows) / (t1 - t0),
                "learning_rate": float(self.scheduler.get_last_lr()[0]),
                "ppo/stopped_early": float(stopped_early),
            }
        )
        if self.curriculum is not None:  # the level the next iteration plays at
            metrics.update(self.curriculum.as_metrics())
        loss = metrics["ppo/policy"] + s.vf_coef * metrics["ppo/value"]
        metrics["loss"] = loss
        return metrics

    def _micro_loss(self, part: Sequence[dict[str, Any]], denominator: float) -> Any:
        import torch

        s = self.settings

        def stack(key: str) -> Any:
            items = [d[key] for d in part]
            width = max(x.shape[0] for x in items)
            return torch.stack([torch.nn.functional.pad(x, (0, width - x.shape[0])) for x in items])

        tokens, attention = stack("tokens"), stack("attention")
        # the entropy (a softmax over the vocabulary) only for an entropy bonus
        new_logprobs, entropy, values = self._forward(
            self.model, tokens, attention, values=True, entropy=s.ent_coef > 0
        )
        return ppo_losses(
            new_logprobs,
            stack("old_logprobs"),
            stack("advantages"),
            values,
            stack("values"),
            stack("returns"),
            stack("mask"),
            entropy=entropy,
            clip_range=s.clip_range,
            clip_range_value=s.clip_range_value,
            vf_coef=s.vf_coef,
            ent_coef=s.ent_coef,
            ref_logprobs=stack("ref_logprobs") if s.kl_mode == "loss" else None,
            kl_coef=s.kl_coef if s.kl_mode == "loss" else 0.0,
            denominator=denominator,
        )

    # -- the loop -----------------------------------------------------------------------------

    def train(self, *, resume: bool = False) -> TrainResult:
        """Run ``train.max_steps`` iterations (continuing from the last checkpoint on resume)."""
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        from llm_trainer.algorithms.hf import per_second, torch_threads

        checkpoint = self.last_checkpoint() if resume else None
        if checkpoint is not None:
            self.load_checkpoint(checkpoint)
        if self.train_config.grad_accum != 1:
            raise ConfigError(
                "train.grad_accum: PPO accumulates exactly over each mini-batch "
                "(ppo.num_minibatches and train.batch_size set it); leave grad_accum at 1"
            )
        writer = SummaryWriter(log_dir=str(self.run.tensorboard))
        start = time.perf_counter()
        total = self.train_config.max_steps
        bar = tqdm(
            range(self.iteration, total), desc="PPO", unit="it", initial=self.iteration, total=total
        )
        eval_seconds = 0.0  # held-out evaluations: left out of the training throughput
        try:
            with preserved_global_rngs(), torch_threads(self.train_config.threads):
                for iteration in bar:
                    metrics = self.step(iteration)
                    self.iteration = iteration + 1
                    if (
                        self.evaluate is not None
                        and self.eval_every
                        and (self.iteration % self.eval_every == 0 or self.iteration == total)
                    ):
                        evaluated = time.perf_counter()
                        metrics.update(
                            {f"eval/{k}": v for k, v in self.evaluate(self.model).items()}
                        )
                        eval_seconds += time.perf_counter() - evaluated
                    self.losses.append((self.iteration, metrics["loss"]))
                    self.run.log_metrics(self.iteration, metrics)
                    for key, value in metrics.items():
                        writer.add_scalar(key, value, self.iteration)
                    bar.set_postfix(
                        reward=f"{metrics['rollout/env_reward']:.3f}",
                        success=f"{metrics['rollout/success']:.2f}",
                        kl=f"{metrics['ppo/kl_to_ref']:.3f}",
                    )
                    saving = self.train_config.save_steps
                    if saving and (self.iteration % saving == 0 or self.iteration == total):
                        self.save_checkpoint()
        finally:
            writer.close()
            bar.close()
        seconds = time.perf_counter() - start
        return TrainResult(
            steps=self.iteration,
            losses=tuple(self.losses),
            seconds=seconds,
            tokens_per_second=per_second(self.tokens_trained, seconds - eval_seconds),
            resumed_from=str(checkpoint) if checkpoint is not None else None,
        )

    # -- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/iteration-N`` atomically; keep ``train.save_total_limit``."""
        import shutil

        import torch

        final = self.run.checkpoints / f"{CHECKPOINT_PREFIX}{self.iteration}"

        def write(tmp: Path) -> None:
            self.model.save_pretrained(tmp / "policy")
            self.tokenizer.save_pretrained(tmp / "policy")
            state = {
                "value_head": self.value_head.state_dict(),
                "value_model": self.value_model.state_dict()
                if self.value_model is not None
                else None,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
            }
            torch.save(state, tmp / "trainer_state.pt")
            (tmp / "progress.json").write_text(
                json.dumps(
                    {
                        "iteration": self.iteration,
                        "losses": self.losses,
                        "tokens_trained": self.tokens_trained,
                        "tokens_generated": self.tokens_generated,
                        "env_steps": self.env_steps,
                        "curriculum": self.curriculum.get_state()
                        if self.curriculum is not None
                        else None,
                    }
                )
            )

        atomic_directory(final, write)
        kept = sorted(self._checkpoints(), key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))
        for old in kept[: -self.train_config.save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def _checkpoints(self) -> list[Path]:
        root = self.run.checkpoints
        if not root.is_dir():
            return []
        return [
            p
            for p in root.iterdir()
            if p.is_dir()
            and p.name.startswith(CHECKPOINT_PREFIX)
            and (p / "progress.json").is_file()
        ]

    def last_checkpoint(self) -> Path | None:
        found = self._checkpoints()
        return max(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :])) if found else None

    def load_checkpoint(self, path: Path) -> None:
        """Restore the policy, value head, optimizer, scheduler, progress and the curriculum's
        state from ``path``."""
        import torch
        from safetensors.torch import load_file

        policy = path / "policy"
        weights = policy / ("adapter_model.safetensors" if self.lora else "model.safetensors")
        state_dict = load_file(str(weights))
        if self.lora:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, state_dict)
        else:
            missing, unexpected = self.model.load_state_dict(state_dict, strict=False)
            if unexpected or [m for m in missing if "lm_head" not in m]:
                raise RuntimeError(
                    f"checkpoint {path} does not fit the model: {missing} {unexpected}"
                )
            if any("lm_head" in m for m in missing):
                self.model.tie_weights()
        # onto this trainer's device, wherever the checkpoint was written (a GPU run resumes
        # on a CPU and back)
        state = torch.load(path / "trainer_state.pt", map_location=self.device, weights_only=True)
        self.value_head.load_state_dict(state["value_head"])
        if self.value_model is not None and state["value_model"] is not None:
            self.value_model.load_state_dict(state["value_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        progress = json.loads((path / "progress.json").read_text())
        self.iteration = int(progress["iteration"])
        self.losses = [(int(a), float(b)) for a, b in progress["losses"]]
        self.tokens_trained = int(progress["tokens_trained"])
        self.tokens_generated = int(progress["tokens_generated"])
        self.env_steps = int(progress["env_steps"])
        stored = progress.get("curriculum")
        if self.curriculum is not None:
            if stored is None:
                raise ConfigError(
                    f"checkpoint {path} was written without a curriculum; resume it without "
                    "ppo.curriculum (or start a new run)"
                )
            try:
                self.curriculum.set_state(stored)
            except ValueError as exc:
                raise ConfigError(f"checkpoint {path}: {exc}") from None


class PPOAlgorithm(Algorithm):
    """PPO (ours) over whole multi-turn episodes: value head or model, GAE over generated
    tokens, clipped losses, KL to the initial policy."""

    name = "ppo"
    config_class = PPOSettings
    sections = ("reward",)

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        p: PPOSettings = self.config
        experiment = context.experiment
        model, tokenizer = context.load_model()
        level = "a curriculum" if p.curriculum is not None else f"difficulty {p.difficulty}"
        context.log(
            f"PPO: {experiment.train.max_steps} iterations of {p.episodes_per_iteration} "
            f"episodes of {p.env_id} ({level})"
        )
        ppo = PPOTrainer(
            model,
            tokenizer,
            experiment.train,
            p,
            experiment.reward,
            context.run,
            model_dir=context.model_dir,
            **context.trainer_options(tokenizer),
        )
        result = ppo.train(resume=context.resume)
        # the RL agent is saved whole (adapters merged): it serves anywhere
        return AlgorithmResult(model=merged(ppo.model), tokenizer=tokenizer, training=result)
