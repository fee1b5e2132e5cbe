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
  episodes of a batch through the episode engine (:func:`~llm_trainer.algorithms.rollout.
  play_episodes`: lockstep, one batched generation per turn, strictly through the env API)
  with a :class:`TokenContextPolicy`. The sequence TRL trains on is the prompt followed by
  every generated token and, between the turns, the tokens the chat template puts around the
  env's answer; ``env_mask`` is 1 on generated tokens and 0 on the env's, so tool results are
  context, never targets. The model is conditioned on exactly these token ids while it plays
  (no re-tokenisation between turns).
* :func:`env_reward` and :func:`env_success`: reward functions reading what the rollout
  measured. ``env_reward`` is the episode's shaped return
  (:func:`~llm_trainer.algorithms.rewards.episode_return` with the rollout's
  :class:`~llm_trainer.algorithms.config.RewardConfig`); ``env_success`` (weight 0 in
  :class:`GRPOTrainer`) only logs the success rate.

**Curriculum** (``grpo.curriculum``, ``env_rollout_func(curriculum=...)``): TRL's prompt
dataset is fixed when training starts, but the episodes are played by the rollout, which
returns the ``prompt_ids`` TRL trains on. So a prompt only names a reset seed: the rollout
resets the env with that seed *at the curriculum's current level* (every env of the rollout
shares one :class:`~llm_trainer.envs.wrappers.curriculum.Curriculum`), and the prompt TRL
trains on is the task the env showed. The level is held for a whole ``rollout_func`` call, so
the ``num_generations`` episodes of a group always play the same task; the call's outcomes
(an episode cut at ``max_turns`` is a failure) move it for the next call. The dataset's prompt
text is then only informative (it shows the task at ``grpo.difficulty``) and is not compared
with the task played. The level is logged as ``rewards/env_curriculum_level/mean`` (a reward
function of weight 0) and kept in TRL's checkpoints (``trainer_state.json``), so a resumed run
continues at its level.

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

Data-parallel (``torchrun``/``accelerate launch``), each process plays the episodes of its share
of the prompts, its generator seeded with its rank too (a group of ``num_generations`` episodes
of one task may span processes, and must not draw the same samples twice). A curriculum is
refused there: each process would move its own level.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from llm_trainer.algorithms.base import (
    Algorithm,
    AlgorithmContext,
    AlgorithmResult,
    TrainResult,
    merged,
)
from llm_trainer.algorithms.config import (
    NonNegativeInt,
    PositiveInt,
    RewardConfig,
    TrainConfig,
    check_env,
)
from llm_trainer.algorithms.rewards import step_rewards
from llm_trainer.algorithms.rollout import close_all, make_envs, play_episodes
from llm_trainer.algorithms.trl_trainer import TRLTrainer
from llm_trainer.core.config import POSITIVE, Range, check_ranges
from llm_trainer.core.errors import BackendError, BatchActError, ConfigError, UserError
from llm_trainer.core.records import Generation, to_plain
from llm_trainer.core.rundir import RunDir
from llm_trainer.core.seeding import derive_seed
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.envs.registration import make
from llm_trainer.envs.wrappers.curriculum import (
    Curriculum,
    CurriculumConfig,
    CurriculumManager,
    check_curriculum,
)


@dataclass(frozen=True)
class GRPOSettings:
    """GRPO through TRL's ``GRPOTrainer`` on an env (``algorithm: grpo``); ``train.max_steps``
    counts optimizer steps."""

    env_id: str = "LLMTrainer/MultiTool-v0"
    """The env GRPO trains on (prompts are its reset observations)."""
    difficulty: int = 1
    """Its difficulty (with a ``curriculum``: the difficulty the prompt dataset shows, while
    the episodes are played at the curriculum's level)."""
    curriculum: CurriculumConfig | None = None
    """Move the difficulty with the sampled episodes' success: each ``rollout_func`` call
    plays at the current level, its outcomes move it for the next (see the module docstring);
    logged as ``rewards/env_curriculum_level/mean`` and kept in checkpoints."""
    prompts: PositiveInt = 256
    """Distinct training episodes (reset seeds) in the prompt dataset."""
    first_seed: NonNegativeInt = 500_000
    """Their seeds start here."""
    num_generations: Annotated[int, Range(ge=2)] = 8
    """Completions (whole episodes) per prompt: the group whose rewards are normalised (>= 2)."""
    max_completion_length: PositiveInt = 64
    """Generation budget per turn."""
    max_turns: PositiveInt = 4
    """Most model turns per episode (tool call, tool result, ... answer)."""
    temperature: Annotated[float, POSITIVE] = 1.0
    """Sampling temperature."""
    beta: Annotated[float, Range(ge=0)] = 0.0
    """KL coefficient to the reference model (0: no reference model, TRL's default)."""
    epsilon: Annotated[float, POSITIVE] = 0.2
    """Ratio clipping."""
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = "dapo"
    """TRL's loss normalisation."""

    def __post_init__(self) -> None:
        check_ranges(self, "grpo")
        check_env(self.env_id, self.difficulty, "grpo")
        check_curriculum(self.curriculum, self.env_id, "grpo.curriculum")


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


def env_curriculum_level(
    completions: Sequence[Any], env_curriculum_level: Sequence[float], **_: Any
) -> list[float | None]:
    """TRL reward function: the curriculum level each episode was played at (with a
    curriculum; give it weight 0 to only log it)."""
    return [float(level) for level in env_curriculum_level]


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
class _Context:
    """One slot's episode: the chat so far and the exact token context the model reads."""

    messages: list[dict[str, str]]
    tools: list[dict[str, Any]] | None
    rendered: list[int]
    """The chat template's rendering of ``messages`` (with the generation prompt while the
    episode runs)."""
    context: list[int]
    """What the model is conditioned on: the prompt and every token since."""
    generations: list[Generation] = field(default_factory=list)


class TokenContextPolicy:
    """A policy acting with a causal LM on exact token contexts (GRPO's rollouts).

    Each slot's context is the rendered prompt, then, turn after turn, the tokens the model
    generated and the tokens the chat template puts around the env's answer (found by
    rendering the longer conversation, which must extend the shorter one token for token). So
    the model is conditioned on exactly the ids TRL later trains on, never on re-tokenised text;
    :meth:`last_generation` records them for the engine.

    Args:
        backend: A :class:`~llm_trainer.agents.backends.transformers_backend.
            TransformersBackend` around the model.
        tokenizer: Its tokenizer (with a prefix-preserving chat template).
        max_new_tokens: Generation budget per turn.
        temperature: Sampling temperature (0: greedy).
        seed: Seeds sampling, with the turn number (a private generator).
        system_prompt: Replaces the env's system prompt (``None`` keeps it).
        expected_prompts: Per slot, the task the dataset's prompt showed; a reset observation
            that differs is a :class:`~llm_trainer.core.errors.UserError`.
        env_id: For error messages.
    """

    def __init__(
        self,
        backend: Any,
        tokenizer: Any,
        *,
        max_new_tokens: int,
        temperature: float,
        seed: object,
        system_prompt: str | None = None,
        expected_prompts: Mapping[int, str | None] | None = None,
        env_id: str = "",
    ) -> None:
        self.backend, self.tokenizer = backend, tokenizer
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self.system_prompt, self.env_id = system_prompt, env_id
        self.expected = dict(expected_prompts or {})
        self.context_limit: int | None = backend.max_context
        self._slots: dict[int, _Context | None] = {}
        self._turn = 0
        self.closings: dict[int, tuple[int, ...]] = {}
        """Per slot, the tokens that close its last finished episode's final assistant turn
        (what the chat template renders after it, e.g. an end-of-turn token)."""

    def reset(self, *, seed: int | None = None, slot: int | None = None) -> None:
        if slot is None:
            self._slots = {}
        else:
            self._slots[slot] = None

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def end_episode(
        self, info: Mapping[str, Any], *, reward: float = 0.0, slot: int = 0, env_id: str = ""
    ) -> None:
        """Record the tokens that close the episode's final assistant turn."""
        state = self._slots.get(slot)
        if state is None or not state.generations:
            return
        closing = _render(self.tokenizer, state.messages, state.tools, generation_prompt=False)
        self.closings[slot] = tuple(self._bridge(state, closing))

    def last_generation(self, slot: int = 0) -> Generation | None:
        state = self._slots.get(slot)
        return state.generations[-1] if state is not None and state.generations else None

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """One action per entry (``infos[i]["slot"]``), from one batched generation.

        Raises:
            UserError: for a task that differs from the dataset's prompt, or a prompt with no
                room left in the model's context.
            BatchActError: for episodes whose context filled up (their siblings' actions are
                in it).
        """
        from llm_trainer.agents.backends.base import DEFAULT_STOP, SamplingConfig

        slots = [int(info.get("slot", i)) for i, info in enumerate(infos)]
        errors: dict[int, BackendError] = {}
        for slot, observation, info in zip(slots, observations, infos, strict=True):
            state = self._slots.get(slot)
            if state is None:
                state = self._slots[slot] = self._start(slot, str(observation), info)
            else:
                self._extend(state, str(observation), info)
            limit = self.context_limit
            if limit is not None and len(state.context) >= limit - 1:
                if not state.generations:
                    raise UserError(
                        f"{self.env_id}: the prompt has {len(state.context)} tokens, no room "
                        f"in the model's context of {limit} (shorten the system prompt)"
                    )
                errors[slot] = BackendError(
                    f"context full: {len(state.context)} of {limit} tokens after "
                    f"{len(state.generations)} turns"
                )
        live = [s for s in slots if s not in errors]
        self._turn += 1
        params = SamplingConfig(
            temperature=self.temperature,
            max_new_tokens=self.max_new_tokens,
            seed=derive_seed(self.seed, self._turn),
            stop=DEFAULT_STOP,
        )
        contexts = []
        for s in live:
            state = self._slots[s]
            assert state is not None
            contexts.append(state.context)
        generations = self.backend.generate(contexts, params) if contexts else []
        actions: dict[int, str] = {}
        for slot, [generation] in zip(live, generations, strict=True):
            state = self._slots[slot]
            assert state is not None
            record = Generation(
                text=generation.text,
                prompt_token_ids=tuple(state.context),
                token_ids=tuple(generation.token_ids),
                logprobs=tuple(generation.logprobs),
                finish_reason=generation.finish_reason,
            )
            state.generations.append(record)
            state.context += list(generation.token_ids)
            state.messages.append({"role": "assistant", "content": generation.text})
            actions[slot] = generation.text
        if errors:
            raise BatchActError(
                f"{self.env_id}: {len(errors)} episode(s) ran out of context",
                actions=[actions.get(s) for s in slots],
                errors=errors,
            )
        return [actions[s] for s in slots]

    def _start(self, slot: int, observation: str, info: Mapping[str, Any]) -> _Context:
        expected = self.expected.get(slot)
        if expected is not None and observation != expected:
            raise UserError(
                f"{self.env_id}: the env shows {observation[:80]!r}, but the prompt shows "
                f"{expected[:80]!r}: build the dataset with env_prompt_dataset for the same env "
                "and difficulty"
            )
        system = (
            str(info.get("system_prompt", "")) if self.system_prompt is None else self.system_prompt
        )
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": observation},
        ]
        tools = to_plain(info.get("tools")) or None
        rendered = _render(self.tokenizer, messages, tools, generation_prompt=True)
        return _Context(messages, tools, rendered, list(rendered))

    def _extend(self, state: _Context, observation: str, info: Mapping[str, Any]) -> None:
        """Append the env's answer (and the next generation prompt) as context tokens."""
        state.messages.append({"role": str(info.get("role", "user")), "content": observation})
        closing = _render(self.tokenizer, state.messages, state.tools, generation_prompt=True)
        state.context += self._bridge(state, closing)
        state.rendered = closing

    def _bridge(self, state: _Context, closing: list[int]) -> list[int]:
        """The tokens ``closing`` (a longer rendering of the conversation) adds after the
        model's last action: the template's end of the assistant turn and what follows."""
        action = next(m["content"] for m in reversed(state.messages) if m["role"] == "assistant")
        action_ids = self.tokenizer.encode(action, add_special_tokens=False)
        cut = len(state.rendered) + len(action_ids)
        if (
            closing[: len(state.rendered)] != state.rendered
            or closing[len(state.rendered) : cut] != action_ids
        ):
            raise UserError(
                "the tokenizer's chat template is not prefix-preserving (rendering a longer "
                "conversation changed the tokens of the earlier turns): multi-turn rollouts need "
                "one that is"
            )
        bridge = closing[cut:]
        tokens = state.generations[-1].token_ids
        # A turn the model closed itself (its end-of-sequence token) is not closed again.
        if tokens and bridge and tokens[-1] == bridge[0] and tokens[-1] in _eos_ids(self.tokenizer):
            bridge = bridge[1:]
        return bridge


def episode_tokens(
    trajectory: Trajectory,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[float, ...]]:
    """``(prompt_ids, completion_ids, env_mask, logprobs)`` of an episode played by a
    :class:`TokenContextPolicy`: its first prompt, then every generated token (mask 1, its
    log-prob) and the context tokens between turns (mask 0, log-prob 0)."""
    from llm_trainer.algorithms.ppo.core import pack_episode

    rows = pack_episode(trajectory, [0.0] * len(trajectory.steps))
    if len(rows) != 1:
        raise ValueError(
            f"episode seed={trajectory.seed}: the turns' contexts do not extend each other"
        )
    [row] = rows
    n = len(trajectory.steps[0].prompt_token_ids)
    return row.tokens[:n], row.tokens[n:], row.action_mask[n:], row.logprobs[n:]


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
        curriculum: Curriculum | CurriculumConfig | None = None,
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
        if isinstance(curriculum, CurriculumConfig):
            curriculum = Curriculum.for_env(curriculum, env_id)
        self.curriculum: Curriculum | None = curriculum
        """Shared by every env of the rollout (``None``: no curriculum)."""
        self._envs = make_envs(env_id, 1, env_kwargs=self.env_kwargs, wrap=self._wrap)
        # (made now: a bad id, difficulty or curriculum fails here, named)
        self._calls: dict[int, int] = {}
        self.stats = RolloutStats()
        self.last_episodes: list[EnvEpisode] = []
        """The episodes of the latest call (what TRL was given)."""

    def close(self) -> None:
        """Close the envs."""
        close_all(self._envs)
        self._envs = []

    def _wrap(self, env: Any) -> Any:
        return env if self.curriculum is None else CurriculumManager(env, self.curriculum)

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
        level = self.curriculum.level if self.curriculum is not None else None
        sampling: tuple[int, ...] = (self.seed, step, call)
        if trainer.accelerator.num_processes > 1:  # one group may span processes: draw apart
            sampling += (trainer.accelerator.process_index,)
        episodes = self.play(
            model,
            trainer.processing_class,
            seeds,
            temperature=float(temperature),
            sampling_seed=sampling,
            # with a curriculum the env shows the task at its level, not the dataset's
            expected_prompts=tasks if self.curriculum is None else None,
        )
        self.last_episodes = episodes
        out: dict[str, Any] = {
            "prompt_ids": [list(e.prompt_ids) for e in episodes],
            "completion_ids": [list(e.completion_ids) for e in episodes],
            "logprobs": [list(e.logprobs) for e in episodes],
            "env_mask": [list(e.env_mask) for e in episodes],
            "env_return": [e.reward for e in episodes],
            "env_success": [float(e.trajectory.success) for e in episodes],
        }
        if level is not None:
            out["env_curriculum_level"] = [float(level)] * len(episodes)
        return out

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
        that differs (a dataset built for another env or difficulty) raises ``UserError``.
        With a curriculum, every episode is played at its current level, and their outcomes
        move it once they are all over (an episode cut at ``max_turns`` counts as a failure).
        """
        from llm_trainer.agents.backends.transformers_backend import TransformersBackend

        start = time.perf_counter()
        if len(self._envs) < len(seeds):
            self._envs += make_envs(
                self.env_id,
                len(seeds) - len(self._envs),
                env_kwargs=self.env_kwargs,
                wrap=self._wrap,
            )
        policy = TokenContextPolicy(
            TransformersBackend(model, tokenizer),
            tokenizer,
            max_new_tokens=self.max_new_tokens,
            temperature=temperature,
            seed=(self.seed, sampling_seed),
            system_prompt=self.system_prompt,
            expected_prompts=dict(enumerate(expected_prompts or ())),
            env_id=self.env_id,
        )
        was_training = bool(getattr(model, "training", False))
        model.eval()
        envs = self._envs[: len(seeds)]
        held = self.curriculum.hold() if self.curriculum is not None else contextlib.nullcontext()
        try:
            with held:  # one level for the whole batch: a group's episodes play one task
                played = play_episodes(
                    envs,
                    policy,
                    [int(s) for s in seeds],
                    source="policy:grpo",
                    max_turns=self.max_turns,
                )
                for env in envs:  # episodes cut at max_turns count now, as failures
                    if isinstance(env, CurriculumManager):
                        env.end_episode()
        finally:
            if was_training:
                model.train()
        # slot i played task i (one env per seed): its closing tokens are policy.closings[i]
        episodes = self._finish(
            [e.trajectory for e in played], [policy.closings.get(i, ()) for i in range(len(seeds))]
        )
        self.stats.episodes += len(episodes)
        self.stats.generated_tokens += sum(e.generated_tokens for e in episodes)
        self.stats.generation_seconds += time.perf_counter() - start
        return episodes

    def _finish(
        self, trajectories: Sequence[Trajectory], closings: Sequence[Sequence[int]]
    ) -> list[EnvEpisode]:
        scores: list[float | None] = [None] * len(trajectories)
        if self.reward.reward_model_weight:
            scores = [
                float(s)
                for s in self.reward_model.score(trajectories, system_prompt=self.system_prompt)
            ]
        episodes = []
        for t, score, closing in zip(trajectories, scores, closings, strict=True):
            if not t.steps:
                raise RuntimeError(f"{self.env_id} seed {t.seed}: the episode failed: {t.error}")
            prompt_ids, completion_ids, mask, logprobs = episode_tokens(t)
            finished = t.error is None and t.steps[-1].terminated
            if finished:  # the final turn closed as the template renders it (context, no loss)
                completion_ids += tuple(closing)
                mask += (0,) * len(closing)
                logprobs += (0.0,) * len(closing)
            episodes.append(
                EnvEpisode(
                    trajectory=t,
                    prompt_ids=prompt_ids,
                    completion_ids=completion_ids,
                    env_mask=mask,
                    logprobs=logprobs,
                    reward=sum(step_rewards(t, self.reward, score)),
                    finished=finished,
                )
            )
        return episodes


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
    curriculum: Curriculum | CurriculumConfig | None = None,
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
        curriculum: Plays each call's episodes at the level of this curriculum (a config builds
            one); see the module docstring. The output then has ``env_curriculum_level`` (log
            it with the reward function :func:`env_curriculum_level` at weight 0).

    Raises:
        UnknownEnvError: for an unregistered ``env_id``.
        ConfigError: for a bad budget, a reward model weight without a reward model, or a
            curriculum the env cannot play.
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
        curriculum=curriculum,
    )


class GRPOTrainer(TRLTrainer):
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
            curriculum=settings.curriculum,
        )
        curriculum = self.rollout.curriculum
        if curriculum is not None:
            callbacks = [*callbacks, _curriculum_callback(curriculum)]
        super().__init__(
            model,
            tokenizer,
            train,
            run,
            seed=seed,
            system_prompt=system_prompt,
            evaluate=evaluate,
            eval_every=eval_every,
            callbacks=callbacks,
        )
        self.settings, self.reward = settings, reward

    @property
    def rollout_stats(self) -> RolloutStats:
        """Episodes played, tokens generated and generation time so far."""
        return self.rollout.stats

    def train(self, *, resume: bool = False) -> TrainResult:
        """Run ``train.max_steps`` GRPO steps (continuing the last checkpoint with ``resume``)."""
        from trl.trainer.grpo_config import GRPOConfig
        from trl.trainer.grpo_trainer import GRPOTrainer as TRLGRPOTrainer

        s = self.settings
        dataset = env_prompt_dataset(
            s.env_id,
            range(s.first_seed, s.first_seed + s.prompts),
            difficulty=s.difficulty,
            system_prompt=self.system_prompt,
        )
        curriculum = self.rollout.curriculum
        reward_funcs: list[Callable[..., list[float | None]]] = [env_reward, env_success]
        if curriculum is not None:
            reward_funcs.append(env_curriculum_level)
            if resume:
                restore_curriculum(curriculum, str(self.run.checkpoints))
        silence = os.environ.get("TRL_EXPERIMENTAL_SILENCE")
        os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"  # rollout_func is "experimental" in TRL
        try:
            return self._fit(
                TRLGRPOTrainer,
                GRPOConfig,
                resume=resume,
                config_kwargs={
                    # GRPO counts prompt and generated tokens itself
                    "include_num_input_tokens_seen": "no",
                    "num_generations": s.num_generations,
                    "max_completion_length": s.max_completion_length * s.max_turns,
                    "temperature": s.temperature,
                    "beta": s.beta,
                    "epsilon": s.epsilon,
                    "loss_type": s.loss_type,
                    # env_success (and env_curriculum_level) are only logged
                    "reward_weights": [1.0] + [0.0] * (len(reward_funcs) - 1),
                    "remove_unused_columns": False,
                    "log_completions": False,
                },
                reward_funcs=reward_funcs,
                train_dataset=dataset,
                rollout_func=self.rollout,
            )
        finally:
            if silence is None:
                os.environ.pop("TRL_EXPERIMENTAL_SILENCE", None)
            else:
                os.environ["TRL_EXPERIMENTAL_SILENCE"] = silence


class GRPOAlgorithm(Algorithm):
    """GRPO through TRL's GRPOTrainer on whole multi-turn episodes of any env (env reward)."""

    name = "grpo"
    config_class = GRPOSettings
    sections = ("reward",)
    multi_process = True

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        g: GRPOSettings = self.config
        experiment = context.experiment
        if g.curriculum is not None and context.processes.multi:
            raise ConfigError(
                "grpo.curriculum: not in a run of several processes (each process would move "
                "its own level with its own episodes); run it in one process"
            )
        model, tokenizer = context.load_model()
        level = "a curriculum" if g.curriculum is not None else f"difficulty {g.difficulty}"
        context.log(
            f"GRPO: {experiment.train.max_steps} steps, {g.num_generations} episodes per prompt "
            f"of {g.env_id} ({level})"
        )
        grpo = GRPOTrainer(
            model,
            tokenizer,
            experiment.train,
            g,
            experiment.reward,
            context.run,
            **context.trainer_options(tokenizer),
        )
        try:
            result = grpo.train(resume=context.resume)
        finally:
            grpo.rollout.close()
        return AlgorithmResult(model=merged(grpo.model), tokenizer=tokenizer, training=result)


#: The key of the curriculum's state in TRL's ``trainer_state.json`` (``stateful_callbacks``).
CURRICULUM_CALLBACK = "CurriculumCallback"


def _curriculum_callback(curriculum: Curriculum) -> Any:
    """A ``TrainerCallback`` whose state (TRL's ``ExportableState``) is the curriculum's: the
    Trainer writes it into every checkpoint's ``trainer_state.json``, atomically with it."""
    from transformers.trainer_callback import ExportableState, TrainerCallback

    class CurriculumCallback(TrainerCallback, ExportableState):
        def state(self) -> dict[str, Any]:
            return {"args": {}, "attributes": {"curriculum": curriculum.get_state()}}

    assert CurriculumCallback.__name__ == CURRICULUM_CALLBACK
    return CurriculumCallback()


def restore_curriculum(curriculum: Curriculum, checkpoints: str) -> bool:
    """Restore ``curriculum`` from the newest checkpoint in ``checkpoints`` (TRL's
    ``trainer_state.json``); ``False`` when there is no checkpoint yet.

    Raises:
        ConfigError: for a checkpoint without a curriculum, or with another one.
    """
    import json

    from llm_trainer.algorithms.hf import last_checkpoint

    checkpoint = last_checkpoint(checkpoints)
    if checkpoint is None:
        return False
    path = os.path.join(checkpoint, "trainer_state.json")
    with open(path, encoding="utf-8") as f:
        stored = json.load(f).get("stateful_callbacks", {}).get(CURRICULUM_CALLBACK)
    if not isinstance(stored, dict) or "curriculum" not in stored.get("attributes", {}):
        raise ConfigError(
            f"checkpoint {checkpoint} was written without a curriculum; resume it without "
            "grpo.curriculum (or start a new run)"
        )
    try:
        curriculum.set_state(stored["attributes"]["curriculum"])
    except ValueError as exc:
        raise ConfigError(f"checkpoint {checkpoint}: {exc}") from None
    return True


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
