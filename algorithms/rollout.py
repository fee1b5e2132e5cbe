"""The one episode engine: evaluation, benchmarks, PPO, GRPO and every plug-in play here.

:func:`play_episodes` plays a list of tasks (reset seeds and options) on a set of envs in
lockstep: each env is a *slot*; at each step one ``policy.act_batch`` call serves every active
slot (one batched generation for LLM agents), and a slot whose episode ends starts the next
pending task. Around that loop, one place for what every caller needs:

* **Seeding**: each episode resets its env with its task's seed (and options, e.g. the
  difficulty) and the policy with ``reset(seed=task seed, slot=k)`` (``reset(seed=...)`` for
  policies without slots; a task's ``policy_seed`` when it has one), so an episode depends only
  on its task, not on which slot played it or what that slot played before.
* **Token-faithful records**: every step is a :class:`~llm_trainer.core.trajectory.Step`; when
  the policy exposes ``last_generation(slot)`` (LLM agents), the step keeps the exact prompt
  token ids, sampled token ids and their log-probs. Token usage per episode comes from
  ``episode_generations(slot)`` (or ``last_usage`` for one slot). Each step also keeps the
  part of the env's ``info`` that explains failures (``invalid_reason``, a problem's
  ``failures`` and ``score``...: :func:`~llm_trainer.core.trajectory.step_info`), which
  :mod:`llm_trainer.analysis.failure_modes` reads.
* **Failures**: a slot whose policy or env fails records the error on its trajectory and its
  siblings go on (a batched policy reports per-slot failures with
  :class:`~llm_trainer.core.errors.BatchActError`, whose ``actions`` carry the others'
  actions). A :class:`~llm_trainer.core.errors.UserError` (a bad config, an unknown
  difficulty) stops the whole run with its message.
* **Episode ends**: a finished episode is passed to ``policy.end_episode(info, reward=...,
  slot=..., env_id=...)`` when the policy has it (an LLM agent's long-term memory records it),
  then to ``on_episode``.

:func:`collect` creates the envs of one env id, plays, and closes them on every path.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from llm_trainer.agents.baselines import ReplayPolicy, ScriptAction
from llm_trainer.agents.policy import Policy, act_on_slots, resets_slots
from llm_trainer.agents.policy import describe_error as _describe
from llm_trainer.core.errors import UserError
from llm_trainer.core.records import METRIC_KEYS, EpisodeResult, to_plain
from llm_trainer.core.trajectory import Step, Trajectory, step_info
from llm_trainer.core.usage import TokenUsage
from llm_trainer.envs.registration import make


@dataclass(frozen=True, slots=True)
class EpisodeTask:
    """One episode to play: its reset seed and reset options (e.g. ``{"difficulty": 2}``)."""

    seed: int
    options: Mapping[str, Any] | None = None
    policy_seed: int | None = None
    """The seed the policy's slot is reset with; ``None``: ``seed`` (a benchmark replaying one
    task several times gives each trial its own)."""


@dataclass(frozen=True, slots=True)
class PlayedEpisode:
    """An episode the engine played.

    Attributes:
        trajectory: What happened (``error`` set when the policy or the env failed).
        seconds: Wall time from reset to the end (the slot's share of lockstep batches).
        usage: Tokens the policy spent, when it reports them (LLM agents), else ``None``.
        final_info: The env's last ``info`` (its reset info when no step was taken).
    """

    trajectory: Trajectory
    seconds: float
    usage: TokenUsage | None
    final_info: Mapping[str, Any]


@dataclass(slots=True)
class _Slot:
    index: int
    task: EpisodeTask
    env_id: str
    prompt: str
    reset_info: Mapping[str, Any]
    observation: str
    info: Mapping[str, Any]
    started: float
    steps: list[Step] = dataclasses.field(default_factory=list)
    usage: TokenUsage | None = None


def env_id_of(env: gym.Env[Any, Any]) -> str:
    """The registered id of ``env`` (its class name when it was not made from the registry)."""
    return env.spec.id if env.spec is not None else type(env.unwrapped).__name__


def _as_task(task: EpisodeTask | int) -> EpisodeTask:
    return task if isinstance(task, EpisodeTask) else EpisodeTask(int(task))


def play_episodes(
    envs: Sequence[gym.Env[Any, Any]],
    policy: Policy,
    tasks: Sequence[EpisodeTask | int],
    *,
    source: str = "policy",
    on_episode: Callable[[PlayedEpisode], None] | None = None,
    max_turns: int | None = None,
) -> list[PlayedEpisode]:
    """Play every task on ``envs`` (one slot each) in lockstep; see the module docstring.

    Args:
        envs: The slots' envs (the caller owns and closes them).
        policy: Acts for every slot (``infos[i]["slot"]`` names the slot of entry ``i``).
        tasks: Reset seeds (ints) or :class:`EpisodeTask`\\ s, played in order as slots free.
        source: Recorded on each trajectory (``oracle``, ``policy:<name>``...).
        on_episode: Called with each finished episode (progress bars, streaming to a store).
        max_turns: Cut an episode after this many actions (its last step is marked
            ``truncated``; the env's own time limit still applies).

    Returns:
        One :class:`PlayedEpisode` per task, in the order of ``tasks``.

    Raises:
        UserError: when the policy or an env raises one (the run cannot go on).
    """
    if not envs:
        raise ValueError("play_episodes needs at least one env")
    if max_turns is not None and max_turns < 1:
        raise ValueError(f"max_turns must be >= 1, got {max_turns}")
    pending = [(i, _as_task(t)) for i, t in enumerate(tasks)][::-1]  # popped from the end
    results: dict[int, PlayedEpisode] = {}
    slots: list[_Slot | None] = [None] * len(envs)
    reset_takes_slot = resets_slots(policy)
    end_episode = getattr(policy, "end_episode", None)
    episode_generations = getattr(policy, "episode_generations", None)

    def finish(k: int, error: str | None = None) -> None:
        state = slots[k]
        assert state is not None
        slots[k] = None
        steps = state.steps
        if (
            error is None
            and max_turns is not None
            and steps
            and not (steps[-1].terminated or steps[-1].truncated)
        ):
            steps[-1] = dataclasses.replace(steps[-1], truncated=True)
        info = state.reset_info
        trajectory = Trajectory(
            env_id=state.env_id,
            seed=state.task.seed,
            difficulty=int(info.get("difficulty", 0)),
            system_prompt=str(info.get("system_prompt", "")),
            tools=tuple(to_plain(info.get("tools", ()))),
            prompt=state.prompt,
            steps=tuple(steps),
            source=source,
            error=error,
        )
        usage = state.usage
        if callable(episode_generations):
            generations = episode_generations(k)
            usage = TokenUsage(
                sum(len(g.prompt_token_ids) for g in generations),
                sum(len(g.token_ids) for g in generations),
            )
        if error is None and callable(end_episode):
            end_episode(state.info, reward=trajectory.total_reward, slot=k, env_id=state.env_id)
        episode = PlayedEpisode(trajectory, time.perf_counter() - state.started, usage, state.info)
        results[state.index] = episode
        if on_episode is not None:
            on_episode(episode)

    def start(k: int) -> None:
        """Give slot ``k`` its next task (a reset that fails ends that episode at once)."""
        while pending:
            index, task = pending.pop()
            env = envs[k]
            started = time.perf_counter()
            try:
                observation, info = env.reset(
                    seed=task.seed, options=dict(task.options) if task.options else None
                )
            except UserError:
                raise
            except Exception as exc:  # recorded: one broken task never stops the others
                slots[k] = _Slot(index, task, env_id_of(env), "", {}, "", {}, started)
                finish(k, _describe(exc))
                continue
            slots[k] = _Slot(
                index, task, env_id_of(env), str(observation), info, observation, info, started
            )
            policy_seed = task.seed if task.policy_seed is None else task.policy_seed
            try:
                if reset_takes_slot:
                    policy.reset(seed=policy_seed, slot=k)  # type: ignore[call-arg]
                else:
                    policy.reset(seed=policy_seed)
            except UserError:
                raise
            except Exception as exc:
                finish(k, _describe(exc))
                continue
            return

    for k in range(len(envs)):
        start(k)
    while True:
        active = [k for k, s in enumerate(slots) if s is not None]
        if not active:
            break
        states = [slots[k] for k in active]
        observations = [s.observation for s in states if s is not None]
        infos = [{**s.info, "slot": k} for k, s in zip(active, states, strict=True) if s]
        actions, failures = act_on_slots(policy, observations, infos, active)
        single = len(active) == 1
        for k, action in zip(active, actions, strict=True):
            state = slots[k]
            assert state is not None
            if action is None:
                finish(k, failures.get(k, "the policy returned no action"))
                start(k)
                continue
            if single and not callable(episode_generations):
                usage = getattr(policy, "last_usage", None)
                if isinstance(usage, TokenUsage):
                    base = state.usage or TokenUsage(0, 0)
                    state.usage = TokenUsage(
                        base.prompt_tokens + usage.prompt_tokens,
                        base.completion_tokens + usage.completion_tokens,
                    )
            try:
                observation, reward, terminated, truncated, info = envs[k].step(action)
            except UserError:
                raise
            except Exception as exc:  # an env bug must not take the batch down either
                finish(k, _describe(exc))
                start(k)
                continue
            state.steps.append(
                Step(
                    action=action,
                    observation=str(observation),
                    role=str(info.get("role", "user")),
                    reward=float(reward),
                    terminated=bool(terminated),
                    truncated=bool(truncated),
                    metrics={m: bool(info.get(m, False)) for m in METRIC_KEYS},
                    info=step_info(info),
                    **_token_record(policy, k),
                )
            )
            state.observation, state.info = observation, info
            if terminated or truncated or (max_turns is not None and len(state.steps) >= max_turns):
                finish(k)
                start(k)
    return [results[i] for i in range(len(tasks))]


def _token_record(policy: Any, slot: int) -> dict[str, tuple[Any, ...]]:
    """The tokens behind a policy's last action in ``slot``, when it records them.

    A policy exposes them with ``last_generation(slot)`` returning an object with
    ``prompt_token_ids``, ``token_ids`` and ``logprobs`` (LLM agents do; scripted ones don't).
    """
    getter = getattr(policy, "last_generation", None)
    generation = getter(slot) if callable(getter) else None
    if generation is None:
        return {}
    return {
        "prompt_token_ids": tuple(generation.prompt_token_ids),
        "completion_token_ids": tuple(generation.token_ids),
        "logprobs": tuple(generation.logprobs),
    }


def make_envs(
    env_id: str,
    count: int,
    *,
    difficulty: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    wrap: Callable[[gym.Env[Any, Any]], gym.Env[Any, Any]] | None = None,
) -> list[gym.Env[Any, Any]]:
    """``count`` envs of ``env_id`` (closed again if one of them fails to build), each passed
    through ``wrap`` when given (e.g. a ``CurriculumManager`` sharing one curriculum)."""
    kwargs = dict(env_kwargs or {})
    if difficulty is not None:
        kwargs["difficulty"] = difficulty
    envs: list[gym.Env[Any, Any]] = []
    try:
        for _ in range(count):
            env = make(env_id, **kwargs)
            try:
                envs.append(env if wrap is None else wrap(env))
            except BaseException:
                env.close()
                raise
    except BaseException:
        close_all(envs)
        raise
    return envs


def close_all(envs: Iterable[gym.Env[Any, Any]]) -> None:
    """Close every env, even when closing one raises (the first error is re-raised)."""
    first: BaseException | None = None
    for env in envs:
        try:
            env.close()
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first


def collect(
    env_id: str,
    policy_factory: Callable[[list[gym.Env[Any, Any]]], Policy],
    seeds: Sequence[int],
    *,
    num_envs: int = 16,
    difficulty: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    source: str = "policy",
    on_episode: Callable[[Trajectory], None] | None = None,
    max_turns: int | None = None,
    wrap: Callable[[gym.Env[Any, Any]], gym.Env[Any, Any]] | None = None,
) -> list[Trajectory]:
    """Play one episode per seed of ``env_id`` in ``num_envs`` lockstep envs; return the
    trajectories in seed order. The envs are closed on every path.

    Args:
        env_id: A registered env id.
        policy_factory: Builds the policy from the list of envs (the oracle binds to them).
        seeds: Reset seeds, one episode each.
        num_envs: Envs stepped in lockstep (the batch size of ``act_batch``).
        difficulty: Overrides the env's difficulty.
        env_kwargs: Extra constructor arguments.
        source: Recorded on each trajectory (``oracle``, ``policy:<name>``...).
        on_episode: Called with each finished trajectory.
        max_turns: Cut episodes after this many actions.
        wrap: Wraps each env (e.g. a ``CurriculumManager`` sharing one curriculum).
    """
    if not seeds:
        return []
    envs = make_envs(
        env_id,
        max(1, min(num_envs, len(seeds))),
        difficulty=difficulty,
        env_kwargs=env_kwargs,
        wrap=wrap,
    )
    try:
        played = play_episodes(
            envs,
            policy_factory(envs),
            list(seeds),
            source=source,
            on_episode=None if on_episode is None else (lambda e: on_episode(e.trajectory)),
            max_turns=max_turns,
        )
    finally:
        close_all(envs)
    return [e.trajectory for e in played]


def replay_scripts(
    scripts: Sequence[tuple[Trajectory, Sequence[ScriptAction]]], *, source: str
) -> list[Trajectory]:
    """Each ``(task, actions)`` played in a fresh env of the task's env id, reset with its seed
    and difficulty, through the engine (a :class:`~llm_trainer.agents.baselines.ReplayPolicy`):
    the env's own observations, rewards and metrics. ``task`` is any trajectory of the task
    (only its env id, seed and difficulty are read). Returns the played episodes in the order
    of ``scripts``; a script that runs out before its episode ends gives an episode with
    ``error`` set."""
    played: list[Trajectory | None] = [None] * len(scripts)
    by_env: dict[str, list[int]] = {}
    for i, (task, _) in enumerate(scripts):
        by_env.setdefault(task.env_id, []).append(i)
    policy = ReplayPolicy([actions for _, actions in scripts])
    for env_id, indices in sorted(by_env.items()):
        tasks = [
            EpisodeTask(
                scripts[i][0].seed,
                {"difficulty": scripts[i][0].difficulty} if scripts[i][0].difficulty else None,
                policy_seed=i,
            )
            for i in indices
        ]
        envs = make_envs(env_id, 1)
        try:
            episodes = play_episodes(envs, policy, tasks, source=source)
        finally:
            close_all(envs)
        for i, episode in zip(indices, episodes, strict=True):
            played[i] = episode.trajectory
    return [t for t in played if t is not None]


def oracle_trajectories(
    env_id: str, seeds: Sequence[int], *, difficulty: int | None = None, num_envs: int = 32
) -> list[Trajectory]:
    """Oracle demonstrations: one solved episode per seed (the ``oracle`` data strategy)."""
    from llm_trainer.agents.baselines import OracleAgent

    return collect(
        env_id, OracleAgent, seeds, num_envs=num_envs, difficulty=difficulty, source="oracle"
    )


# -- evaluation summaries (the CLI's ``evaluate``) ---------------------------------------------


def episode_result(episode: PlayedEpisode) -> EpisodeResult:
    """The compact record of a played episode (metrics, reward, steps, error)."""
    t = episode.trajectory
    return EpisodeResult(
        t.env_id, t.seed, t.difficulty, t.total_reward, len(t.steps), t.metrics, t.error
    )


def run_episode(
    env: gym.Env[Any, Any],
    policy: Policy,
    seed: int,
    *,
    options: dict[str, Any] | None = None,
    env_id: str | None = None,
) -> EpisodeResult:
    """Play one episode on ``env`` (through :func:`play_episodes`); a failing policy is
    recorded on the result, never raised (except a :class:`UserError`)."""
    [episode] = play_episodes([env], policy, [EpisodeTask(seed, options)])
    result = episode_result(episode)
    return dataclasses.replace(result, env_id=env_id) if env_id else result


@dataclass(frozen=True, slots=True)
class EvalSummary:
    """Means over a set of episodes of one env."""

    env_id: str
    episodes: int
    mean_reward: float
    mean_steps: float
    rates: Mapping[str, float]
    errors: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "episodes": self.episodes,
            "mean_reward": self.mean_reward,
            "mean_steps": self.mean_steps,
            **self.rates,
            "errors": self.errors,
            "seconds": self.seconds,
        }


def summarize(env_id: str, results: Sequence[EpisodeResult], seconds: float = 0.0) -> EvalSummary:
    n = len(results)
    if n == 0:
        raise ValueError("cannot summarise zero episodes")
    return EvalSummary(
        env_id=env_id,
        episodes=n,
        mean_reward=sum(r.total_reward for r in results) / n,
        mean_steps=sum(r.steps for r in results) / n,
        rates={k: sum(r.metrics[k] for r in results) / n for k in METRIC_KEYS},
        errors=sum(r.error is not None for r in results),
        seconds=seconds,
    )


def evaluate(
    env_id: str,
    policy_factory: Callable[[gym.Env[Any, Any]], Policy],
    seeds: Iterable[int],
    *,
    difficulty: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
) -> tuple[EvalSummary, list[EpisodeResult]]:
    """Evaluate a policy on ``env_id`` over ``seeds`` (one episode per seed, one env).

    ``policy_factory(env)`` builds the policy for the env (the oracle needs the env; most
    policies ignore it).
    """
    [env] = make_envs(env_id, 1, difficulty=difficulty, env_kwargs=env_kwargs)
    start = time.perf_counter()
    try:
        played = play_episodes([env], policy_factory(env), list(seeds))
    finally:
        env.close()
    results = [dataclasses.replace(episode_result(e), env_id=env_id) for e in played]
    return summarize(env_id, results, time.perf_counter() - start), results
