"""GRPO through TRL's ``GRPOTrainer``, on whole multi-turn episodes of any llm-trainer env.

TRL's GRPO samples a group of completions per prompt, scores them and pushes the policy towards
the better ones of each group. Here a "completion" is a whole episode: the model writes an
action, the env answers (a tool result, or a message about an invalid action), the model writes
the next action, and so on until the env ends the episode or ``max_turns`` actions were taken.
The pieces, usable from plain TRL in a few lines (see the README section "GRPO with TRL on any
llm-trainer env"):

* :func:`env_prompt_dataset`: the prompt dataset, one row per env reset seed. The user message
  is the env's reset observation and carries the seed (``env_seed``), so a rollout can replay
  exactly that episode.
* :func:`env_rollout_func` (an :class:`EnvRollout`): TRL's ``rollout_func``. It plays the
  episodes of a batch in lockstep, one batched generation per turn, strictly through the env
  API (``reset(seed)``, ``step(action)``). The sequence TRL trains on is the prompt followed by
  every generated token and, between the turns, the tokens the chat template puts around the
  env's answer; ``env_mask`` is 1 on generated tokens and 0 on the env's, so tool results are
  context, never targets. The model is conditioned on exactly these token ids while it plays
  (no re-tokenisation between turns).
* :func:`env_reward` and :func:`env_success`: reward functions reading what the rollout
  measured. ``env_reward`` is the episode's shaped return
  (:func:`~llm_trainer.algorithms.rewards.episode_return` with the rollout's
  :class:`~llm_trainer.algorithms.config.RewardConfig`); ``env_success`` (weight 0 in
  :class:`GRPOTrainer`) only logs the success rate.

Why ``rollout_func`` rather than TRL's ``environment_factory``: the latter exposes an env's
methods as tools the chat template renders and parses as structured ``tool_calls``, and ends an
episode when the model stops calling tools. Our envs take raw text actions, validate the call
format themselves (an invalid action is a step with a -0.1 reward), end the episode on an
``<answer>`` and pay the reward per step; the rollout keeps those semantics exactly.

:class:`GRPOTrainer` wires these into TRL with the project's plumbing (precision, atomic
checkpoints, run metrics, TensorBoard, LoRA); the mean shaped reward and success rate of the
sampled episodes go to the run's ``metrics.jsonl`` as ``rewards/env_reward/mean`` and
``rewards/env_success/mean``. Sampling uses a private generator seeded from ``seed``, the
optimizer step and the turn: two runs with one seed give the same losses on CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_trainer.algorithms.config import GRPOSettings, RewardConfig, TrainConfig
from llm_trainer.algorithms.hf import (
    AtomicCheckpoints,
    RunLogCallback,
    apply_lora,
    last_checkpoint,
    per_second,
    tensorboard_callback,
    training_kwargs,
)
from llm_trainer.algorithms.rewards import step_rewards
from llm_trainer.algorithms.sft import TrainResult
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import METRIC_KEYS, to_plain
from llm_trainer.core.rundir import RunDir
from llm_trainer.core.seeding import preserved_global_rngs
from llm_trainer.core.trajectory import Step, Trajectory
from llm_trainer.envs.registration import make

SEED_KEY = "env_seed"
"""The key of the user message that carries the episode's reset seed."""


def env_prompt_dataset(
    env_id: str,
    seeds: Iterable[int],
    *,
    difficulty: int | None = None,
    system_prompt: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """TRL's prompt dataset for ``env_id``: one conversational ``prompt`` per reset seed.

    Each prompt is ``[system, user]``: the env's system prompt (or ``system_prompt``) and its
    reset observation, the user message carrying the seed under ``env_seed``. The seed is also
    a column of its own. Returns a ``datasets.Dataset``.

    Raises:
        UnknownEnvError: for an unregistered ``env_id``.
        ValueError: for no seeds, or a bad ``difficulty`` (the env's message).
    """
    import datasets

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError(f"env_prompt_dataset({env_id!r}): no seeds given")
    env = make(env_id, **_env_kwargs(difficulty, env_kwargs))
    rows = []
    try:
        for seed in seeds:
            observation, info = env.reset(seed=seed)
            system = str(info.get("system_prompt", "")) if system_prompt is None else system_prompt
            rows.append(
                {
                    "prompt": [
                        {"role": "system", "content": system, SEED_KEY: None},
                        {"role": "user", "content": str(observation), SEED_KEY: seed},
                    ],
                    SEED_KEY: seed,
                }
            )
    finally:
        env.close()
    return datasets.Dataset.from_list(rows)


def env_reward(
    completions: Sequence[Any], env_return: Sequence[float], **_: Any
) -> list[float | None]:
    """TRL reward function: each episode's shaped return, as measured by the rollout."""
    if len(env_return) != len(completions):
        raise ValueError(
            f"env_reward: {len(env_return)} returns for {len(completions)} completions "
            "(is the rollout_func an llm-trainer env_rollout_func?)"
        )
    return [float(r) for r in env_return]


def env_success(
    completions: Sequence[Any], env_success: Sequence[float], **_: Any
) -> list[float | None]:
    """TRL reward function: 1.0 for a successful episode (give it weight 0 to only log it)."""
    return [float(s) for s in env_success]


@dataclass(frozen=True, slots=True)
class EnvEpisode:
    """One played episode, as TRL trains on it.

    Attributes:
        trajectory: The episode (each step with its prompt and generated token ids).
        prompt_ids: The rendered prompt (system, task, generation prompt).
        completion_ids: Every token after the prompt: generated turns and the env's answers.
        env_mask: 1 for a generated token, 0 for a token the env's answer put there.
        logprobs: The sampled tokens' raw log-probs (0.0 on env tokens).
        reward: The shaped return (:func:`~llm_trainer.algorithms.rewards.episode_return`).
        finished: Whether the env ended the episode (else ``max_turns`` or the context cut it).
    """

    trajectory: Trajectory
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    env_mask: tuple[int, ...]
    logprobs: tuple[float, ...]
    reward: float
    finished: bool

    @property
    def generated_tokens(self) -> int:
        return sum(self.env_mask)


@dataclass
class RolloutStats:
    """Running totals of an :class:`EnvRollout` (what a benchmark times)."""

    episodes: int = 0
    generated_tokens: int = 0
    generation_seconds: float = 0.0
    """Seconds spent generating (the env steps are included, they are negligible)."""

    @property
    def generated_tokens_per_second(self) -> float:
        return self.generated_tokens / self.generation_seconds if self.generation_seconds else 0.0


@dataclass
class _Live:
    """An episode being played."""

    env: Any
    seed: int
    prompt: str
    reset_info: Mapping[str, Any]
    tools: list[dict[str, Any]] | None
    messages: list[dict[str, str]]
    rendered: list[int]
    """The chat template's rendering of ``messages`` with the generation prompt."""
    prompt_ids: list[int]
    context: list[int]
    """What the model is conditioned on: the prompt and every completion token so far."""
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    finished: bool = False
    done: bool = False


class EnvRollout:
    """TRL ``rollout_func`` playing whole episodes of ``env_id`` (see :func:`env_rollout_func`).

    Call it as TRL does, ``rollout(prompts, trainer)``, or play episodes with any model with
    :meth:`play`. Envs are created once and reset for every episode.
    """

    def __init__(
        self,
        env_id: str,
        *,
        difficulty: int | None = None,
        max_turns: int = 4,
        max_new_tokens: int = 64,
        system_prompt: str | None = None,
        reward: RewardConfig | None = None,
        temperature: float | None = None,
        seed: int = 0,
        env_kwargs: Mapping[str, Any] | None = None,
        reward_model: Any = None,
    ) -> None:
        if max_turns < 1:
            raise ConfigError(f"env_rollout_func: max_turns must be >= 1, got {max_turns}")
        if max_new_tokens < 1:
            raise ConfigError(
                f"env_rollout_func: max_new_tokens must be >= 1, got {max_new_tokens}"
            )
        if temperature is not None and temperature < 0:
            raise ConfigError(f"env_rollout_func: temperature must be >= 0, got {temperature}")
        self.reward = reward if reward is not None else RewardConfig()
        if self.reward.reward_model_weight and reward_model is None:
            raise ConfigError(
                "reward.reward_model_weight is set: pass reward_model (an object with "
                "score(trajectories, system_prompt=...) -> list[float])"
            )
        self.env_id, self.max_turns, self.max_new_tokens = env_id, max_turns, max_new_tokens
        self.system_prompt, self.temperature, self.seed = system_prompt, temperature, seed
        self.reward_model = reward_model
        self.env_kwargs = _env_kwargs(difficulty, env_kwargs)
        self._envs = [make(env_id, **self.env_kwargs)]  # fails now, naming a bad id/difficulty
        self._calls: dict[int, int] = {}
        self.stats = RolloutStats()
        self.last_episodes: list[EnvEpisode] = []
        """The episodes of the latest call (what TRL was given)."""

    # -- TRL's protocol ------------------------------------------------------------------------

    def __call__(self, prompts: Sequence[Any], trainer: Any) -> dict[str, Any]:
        """Play one episode per prompt (TRL repeats each prompt ``num_generations`` times)."""
        seeds, tasks = [], []
        for i, prompt in enumerate(prompts):
            seed, task = prompt_seed(prompt, i)
            seeds.append(seed)
            tasks.append(task)
        step = int(trainer.state.global_step)
        call = self._calls.get(step, 0)
        self._calls = {step: call + 1}
        temperature = self.temperature if self.temperature is not None else trainer.temperature
        model = trainer.accelerator.unwrap_model(trainer.model)
        episodes = self.play(
            model,
            trainer.processing_class,
            seeds,
            temperature=float(temperature),
            sampling_seed=(self.seed, step, call),
            expected_prompts=tasks,
        )
        self.last_episodes = episodes
        return {
            "prompt_ids": [list(e.prompt_ids) for e in episodes],
            "completion_ids": [list(e.completion_ids) for e in episodes],
            "logprobs": [list(e.logprobs) for e in episodes],
            "env_mask": [list(e.env_mask) for e in episodes],
            "env_return": [e.reward for e in episodes],
            "env_success": [float(e.trajectory.success) for e in episodes],
        }

    # -- playing -------------------------------------------------------------------------------

    def play(
        self,
        model: Any,
        tokenizer: Any,
        seeds: Sequence[int],
        *,
        temperature: float = 1.0,
        sampling_seed: object = 0,
        expected_prompts: Sequence[str | None] | None = None,
    ) -> list[EnvEpisode]:
        """Play one episode per seed with ``model`` (in lockstep, one generation per turn).

        ``temperature`` 0 is greedy. ``sampling_seed`` (any hashable) seeds a private
        generator. ``expected_prompts`` are the tasks the prompts showed: a reset observation
        that differs (a dataset built for another env or difficulty) raises ``ValueError``.
        """
        from llm_trainer.agents.backends.base import DEFAULT_STOP, SamplingConfig, derive_seed
        from llm_trainer.agents.backends.transformers_backend import TransformersBackend

        start = time.perf_counter()
        while len(self._envs) < len(seeds):
            self._envs.append(make(self.env_id, **self.env_kwargs))
        live = [
            self._start(
                self._envs[i],
                int(seed),
                tokenizer,
                None if not expected_prompts else expected_prompts[i],
            )
            for i, seed in enumerate(seeds)
        ]
        backend = TransformersBackend(model, tokenizer)
        context_limit = backend.max_context
        for e in live:
            if context_limit is not None and len(e.context) >= context_limit - 1:
                raise ValueError(
                    f"{self.env_id} seed {e.seed}: the prompt has {len(e.context)} tokens, no "
                    f"room in the model's context of {context_limit} (shorten the system prompt)"
                )
        was_training = bool(getattr(model, "training", False))
        model.eval()
        try:
            for turn in range(self.max_turns):
                active = [e for e in live if not e.done]
                if context_limit is not None:
                    for e in active:
                        if len(e.context) >= context_limit - 1:
                            e.done = True  # no room left for another turn
                    active = [e for e in active if not e.done]
                if not active:
                    break
                params = SamplingConfig(
                    temperature=temperature,
                    max_new_tokens=self.max_new_tokens,
                    seed=derive_seed(self.seed, sampling_seed, turn),
                    stop=DEFAULT_STOP,
                )
                generations = backend.generate([e.context for e in active], params)
                for e, [generation] in zip(active, generations, strict=True):
                    self._step(e, generation, tokenizer)
        finally:
            if was_training:
                model.train()
        episodes = self._finish(live)
        self.stats.episodes += len(episodes)
        self.stats.generated_tokens += sum(e.generated_tokens for e in episodes)
        self.stats.generation_seconds += time.perf_counter() - start
        return episodes

    def _start(self, env: Any, seed: int, tokenizer: Any, expected: str | None) -> _Live:
        observation, info = env.reset(seed=seed)
        if expected is not None and str(observation) != expected:
            raise ValueError(
                f"{self.env_id} reset with seed {seed} shows {str(observation)[:80]!r}, but the "
                f"prompt shows {expected[:80]!r}: build the dataset with env_prompt_dataset for "
                f"the same env and difficulty ({self.env_kwargs or 'defaults'})"
            )
        system = (
            str(info.get("system_prompt", "")) if self.system_prompt is None else self.system_prompt
        )
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": str(observation)},
        ]
        tools = to_plain(info.get("tools")) or None
        rendered = _render(tokenizer, messages, tools, generation_prompt=True)
        return _Live(
            env=env,
            seed=seed,
            prompt=str(observation),
            reset_info=info,
            tools=tools,
            messages=messages,
            rendered=rendered,
            prompt_ids=list(rendered),
            context=list(rendered),
        )

    def _step(self, e: _Live, generation: Any, tokenizer: Any) -> None:
        """Send one generated action to the env and append the env's answer as context."""
        tokens, action = list(generation.token_ids), generation.text
        observation, reward, terminated, truncated, info = e.env.step(action)
        e.steps.append(
            Step(
                action=action,
                observation=str(observation),
                role=str(info.get("role", "user")),
                reward=float(reward),
                terminated=bool(terminated),
                truncated=bool(truncated),
                metrics={k: bool(info.get(k, False)) for k in METRIC_KEYS},
                prompt_token_ids=tuple(e.context),
                completion_token_ids=tuple(tokens),
                logprobs=tuple(generation.logprobs),
            )
        )
        e.context += tokens
        e.mask += [1] * len(tokens)
        e.logprobs += [float(lp) for lp in generation.logprobs]
        action_ids = tokenizer.encode(action, add_special_tokens=False)
        e.messages.append({"role": "assistant", "content": action})
        if terminated or truncated:
            e.finished = e.done = True
            closing = _render(tokenizer, e.messages, e.tools, generation_prompt=False)
        else:
            e.messages.append({"role": str(info.get("role", "user")), "content": str(observation)})
            closing = _render(tokenizer, e.messages, e.tools, generation_prompt=True)
        cut = len(e.rendered) + len(action_ids)
        if closing[: len(e.rendered)] != e.rendered or closing[len(e.rendered) : cut] != action_ids:
            raise ValueError(
                "the tokenizer's chat template is not prefix-preserving (rendering a longer "
                "conversation changed the tokens of the earlier turns): multi-turn rollouts need "
                "one that is"
            )
        bridge = closing[cut:]
        # A turn the model closed itself (its end-of-sequence token) is not closed again.
        if tokens and bridge and tokens[-1] == bridge[0] and tokens[-1] in _eos_ids(tokenizer):
            bridge = bridge[1:]
        e.context += bridge
        e.mask += [0] * len(bridge)
        e.logprobs += [0.0] * len(bridge)
        e.rendered = closing

    def _finish(self, live: Sequence[_Live]) -> list[EnvEpisode]:
        trajectories = [
            Trajectory(
                env_id=self.env_id,
                seed=e.seed,
                difficulty=int(e.reset_info.get("difficulty", 0)),
                system_prompt=str(e.reset_info.get("system_prompt", "")),
                tools=tuple(to_plain(e.reset_info.get("tools", ()))),
                prompt=e.prompt,
                steps=tuple(e.steps),
                source="policy:grpo",
            )
            for e in live
        ]
        scores: list[float | None] = [None] * len(live)
        if self.reward.reward_model_weight:
            scores = [
                float(s)
                for s in self.reward_model.score(trajectories, system_prompt=self.system_prompt)
            ]
        return [
            EnvEpisode(
                trajectory=t,
                prompt_ids=tuple(e.prompt_ids),
                completion_ids=tuple(e.context[len(e.prompt_ids) :]),
                env_mask=tuple(e.mask),
                logprobs=tuple(e.logprobs),
                reward=sum(step_rewards(t, self.reward, score)),
                finished=e.finished,
            )
            for e, t, score in zip(live, trajectories, scores, strict=True)
        ]


def env_rollout_func(
    env_id: str,
    *,
    difficulty: int | None = None,
    max_turns: int = 4,
    max_new_tokens: int = 64,
    system_prompt: str | None = None,
    reward: RewardConfig | None = None,
    temperature: float | None = None,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    reward_model: Any = None,
) -> EnvRollout:
    """A TRL ``rollout_func`` that plays whole multi-turn episodes of ``env_id``.

    Use it with a dataset from :func:`env_prompt_dataset` (same env, difficulty and system
    prompt) and the reward function :func:`env_reward`.

    Args:
        env_id: A registered env id.
        difficulty: Overrides the env's difficulty.
        max_turns: Most actions per episode (an episode still running then is cut; it keeps
            the rewards it earned).
        max_new_tokens: Generation budget per action.
        system_prompt: Replaces the env's system prompt (``None`` keeps it; ``""`` drops its
            text, the chat template still lists the tools). Use the one the model was trained
            with.
        reward: Weights and shaping of the reward (``env_reward``'s value).
        temperature: Sampling temperature; ``None`` takes the trainer's (``GRPOConfig``).
        seed: Seeds sampling, with the optimizer step and the turn (a private generator).
        env_kwargs: Extra env constructor arguments.
        reward_model: Scores episodes when ``reward.reward_model_weight`` is set (an object with
            ``score(trajectories, system_prompt=...) -> list[float]``).

    Raises:
        UnknownEnvError: for an unregistered ``env_id``.
        ConfigError: for a bad budget, or a reward model weight without a reward model.
    """
    return EnvRollout(
        env_id,
        difficulty=difficulty,
        max_turns=max_turns,
        max_new_tokens=max_new_tokens,
        system_prompt=system_prompt,
        reward=reward,
        temperature=temperature,
        seed=seed,
        env_kwargs=env_kwargs,
        reward_model=reward_model,
    )


class GRPOTrainer:
    """GRPO on an env's episodes through TRL's ``GRPOTrainer``.

    ``train.batch_size`` counts completions (episodes) per micro-batch, as in TRL: each
    optimizer step plays ``batch_size * grad_accum`` episodes, ``settings.num_generations`` per
    prompt, so that product must be a multiple of ``num_generations``.

    Args:
        model: A causal LM, normally already able to act in the env (e.g. an SFT run's final
            model): GRPO learns from reward differences within a group, and a model that never
            succeeds gets none.
        tokenizer: Its tokenizer (with a prefix-preserving chat template).
        train: Optimisation settings (``max_steps`` counts optimizer steps).
        settings: The env, the prompts and GRPO's own settings.
        reward: The reward (env reward, shaping, reward model weight).
        run: The run directory (checkpoints, TensorBoard, metrics).
        seed: Seeds data order, sampling and initialisation of new weights.
        system_prompt: Replaces the env's system prompt (``None`` keeps it).
        evaluate: Called with the model every ``eval_every`` steps; its metrics are logged.
        eval_every: Steps between evaluations (0: never during training).
        callbacks: Extra ``transformers.TrainerCallback`` objects.
        reward_model: Scores episodes when ``reward.reward_model_weight`` is set; loaded from
            ``reward.reward_model_path`` when omitted.

    Raises:
        ConfigError: for a batch that is not a whole number of groups.
        UnknownEnvError: for an unregistered ``settings.env_id``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        train: TrainConfig,
        settings: GRPOSettings,
        reward: RewardConfig,
        run: RunDir,
        *,
        seed: int = 0,
        system_prompt: str | None = None,
        evaluate: Callable[[Any], Mapping[str, float]] | None = None,
        eval_every: int = 0,
        callbacks: Sequence[Any] = (),
        reward_model: Any = None,
    ) -> None:
        episodes = train.batch_size * train.grad_accum
        if episodes % settings.num_generations:
            raise ConfigError(
                f"train.batch_size * train.grad_accum ({train.batch_size} * {train.grad_accum} = "
                f"{episodes}) must be a multiple of grpo.num_generations "
                f"({settings.num_generations}): each step plays whole groups of episodes"
            )
        if reward.reward_model_weight and reward_model is None:
            reward_model = _load_reward_model(reward)
        self.rollout = env_rollout_func(
            settings.env_id,
            difficulty=settings.difficulty,
            max_turns=settings.max_turns,
            max_new_tokens=settings.max_completion_length,
            system_prompt=system_prompt,
            reward=reward,
            seed=seed,
            reward_model=reward_model,
        )
        self.model = apply_lora(model, train.lora)
        self.tokenizer, self.config, self.settings, self.reward = tokenizer, train, settings, reward
        self.run, self.seed, self.system_prompt = run, seed, system_prompt
        self.extra_callbacks = list(callbacks)
        self.callback = RunLogCallback(run, evaluate, eval_every)

    @property
    def rollout_stats(self) -> RolloutStats:
        """Episodes played, tokens generated and generation time so far."""
        return self.rollout.stats

    def train(self, *, resume: bool = False) -> TrainResult:
        """Run ``train.max_steps`` GRPO steps (continuing the last checkpoint with ``resume``)."""
        import os

        import torch
        from trl.trainer.grpo_config import GRPOConfig
        from trl.trainer.grpo_trainer import GRPOTrainer as TRLGRPOTrainer

        class _GRPO(AtomicCheckpoints, TRLGRPOTrainer):
            pass

        s = self.settings
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        output_dir = str(self.run.checkpoints)
        kwargs = training_kwargs(self.config, output_dir, self.seed)
        # GRPO counts prompt and generated tokens itself; the Trainer's count finds no input ids.
        kwargs["include_num_input_tokens_seen"] = "no"
        args = GRPOConfig(
            **kwargs,
            num_generations=s.num_generations,
            max_completion_length=s.max_completion_length * s.max_turns,
            temperature=s.temperature,
            beta=s.beta,
            epsilon=s.epsilon,
            loss_type=s.loss_type,
            reward_weights=[1.0, 0.0],  # env_success is only logged
            remove_unused_columns=False,
            log_completions=False,
        )
        dataset = env_prompt_dataset(
            s.env_id,
            range(s.first_seed, s.first_seed + s.prompts),
            difficulty=s.difficulty,
            system_prompt=self.system_prompt,
        )
        checkpoint = last_checkpoint(output_dir) if resume else None
        silence = os.environ.get("TRL_EXPERIMENTAL_SILENCE")
        os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"  # rollout_func is "experimental" in TRL
        try:
            with preserved_global_rngs():
                trainer = _GRPO(
                    model=self.model,
                    reward_funcs=[env_reward, env_success],
                    args=args,
                    train_dataset=dataset,
                    processing_class=self.tokenizer,
                    rollout_func=self.rollout,
                    callbacks=[
                        self.callback,
                        tensorboard_callback(str(self.run.tensorboard)),
                        *self.extra_callbacks,
                    ],
                )
                start = time.perf_counter()
                output = trainer.train(resume_from_checkpoint=checkpoint)
                seconds = time.perf_counter() - start
        finally:
            if silence is None:
                os.environ.pop("TRL_EXPERIMENTAL_SILENCE", None)
            else:
                os.environ["TRL_EXPERIMENTAL_SILENCE"] = silence
        if self.config.save_steps:
            trainer._save_checkpoint(trainer.model, None)  # a final, atomic checkpoint
        trained_tokens = float(trainer.state.num_input_tokens_seen)
        self.model = trainer.model
        return TrainResult(
            steps=int(output.global_step),
            losses=tuple(self.callback.losses),
            seconds=seconds,
            tokens_per_second=per_second(trained_tokens, seconds - self.callback.eval_seconds),
            resumed_from=checkpoint,
        )


def _env_kwargs(difficulty: int | None, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    kwargs = dict(extra or {})
    if difficulty is not None:
        kwargs["difficulty"] = difficulty
    return kwargs


def prompt_seed(prompt: Any, index: int = 0) -> tuple[int, str]:
    """The reset seed a prompt of :func:`env_prompt_dataset` carries, and the task it shows.

    >>> prompt_seed([{"role": "system", "content": "", "env_seed": None},
    ...              {"role": "user", "content": "26 - 4 = ?", "env_seed": 7}])
    (7, '26 - 4 = ?')

    Raises:
        ValueError: for a prompt without one (naming prompt ``index`` of the batch).
    """
    if isinstance(prompt, Sequence) and not isinstance(prompt, str):
        for message in reversed(prompt):
            if isinstance(message, Mapping) and message.get(SEED_KEY) is not None:
                return int(message[SEED_KEY]), str(message.get("content", ""))
    raise ValueError(
        f"prompt {index} carries no {SEED_KEY!r}: build the prompt dataset with "
        "llm_trainer.algorithms.grpo.env_prompt_dataset"
    )


def _render(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    tools: list[dict[str, Any]] | None,
    *,
    generation_prompt: bool,
) -> list[int]:
    """Token ids of ``messages`` through the chat template (as the evaluation renders them)."""
    text = tokenizer.apply_chat_template(
        [dict(m) for m in messages],
        tools=tools,
        add_generation_prompt=generation_prompt,
        tokenize=False,
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _eos_ids(tokenizer: Any) -> frozenset[int]:
    from llm_trainer.agents.backends.base import eos_token_ids

    return eos_token_ids(tokenizer)


def _load_reward_model(reward: RewardConfig) -> Any:
    try:
        from llm_trainer.algorithms.reward_model import RewardModel
    except ImportError as exc:
        raise ConfigError(
            "reward.reward_model_weight is set but the reward model module cannot be imported "
            f"({exc}); pass reward_model= explicitly"
        ) from exc
    assert reward.reward_model_path is not None  # RewardConfig requires it with a weight
    return RewardModel.from_pretrained(reward.reward_model_path)
