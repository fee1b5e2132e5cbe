"""Several policies in one PettingZoo AEC env, many episodes in lockstep.

:class:`MultiAgentCoordinator` is the multi-agent counterpart of
:func:`~llm_trainer.algorithms.rollout.play_episodes`: it plays one episode per seed of a
multi-agent env (``LLMTrainer/MALT-v0``, Kuhn poker, any PettingZoo ``AECEnv``) on
``num_envs`` envs in lockstep, with one :class:`~llm_trainer.agents.policy.Policy` per agent
(an :class:`~llm_trainer.agents.llm_agent.LLMAgent` on its own backend or adapter, a scripted
player, a remote model). Around that loop, what every multi-agent algorithm needs:

* **Batching.** Each *round*, every env is advanced to the next agent that must act (agents
  that are terminated or truncated step ``None``, the AEC way, and leave). The envs are then
  grouped by that agent, and each group is served by **one** call of the agent's policy:
  ``act`` for a group of one, ``act_batch`` otherwise, so an LLM role generates one batch per
  round for all the episodes waiting on it. When one policy object plays several agents
  (self-play: one model in both seats), the groups of those agents are merged into one call,
  so a shared model still generates one batch per round; its entries carry ``info["agent"]``.
  An env whose episode ends starts the next pending seed at once.
* **Slots.** Every (env, agent) pair is a *slot* of the policy that plays it:
  ``slot = env_index * len(possible_agents) + agent_index``. Slot ids never collide, even when
  one policy object plays several agents, so an LLM agent keeps one conversation per seat of
  each env. Each entry's ``info`` is the env's info for that agent plus ``slot``, ``agent`` and
  ``env_index`` (the env the entry comes from, for scripted policies bound to envs).
* **Seeding.** Each episode resets its env with ``reset(seed=s, options=...)`` and each
  agent's slot with ``policy.reset(seed=derive_seed(s, agent), slot=slot)`` (``reset(seed=...)``
  for policies without slots): the seats get independent streams even when they share a
  policy, and nothing reads a process-wide RNG. The same seeds give the same episodes; with
  policies that keep their randomness per slot (LLM agents do), the results also do not depend
  on ``num_envs`` (for LLM agents, up to the numerics of padded batches: the tiny model's
  greedy actions match across batch sizes, its log-probs to about 1e-6). A policy with one
  generator for all its envs (e.g.
  :class:`~llm_trainer.envs.multiagent.kuhn_solver.StrategyPolicy`) is deterministic for a
  given ``num_envs``, but its draws interleave across the envs of a batch.
* **Records.** One token-faithful :class:`~llm_trainer.core.trajectory.Trajectory` per agent
  per episode, as the agent saw it: its first observation is the ``prompt`` (its info's
  ``system_prompt``, ``tools`` and ``difficulty`` the trajectory's), then one
  :class:`~llm_trainer.core.trajectory.Step` per action of its own, whose ``observation`` and
  ``reward`` are what ``env.last()`` gave it at its next turn (the rewards of every step in
  between, the other agents' included) and whose ``metrics`` (and the failure-explaining part
  of its ``info``, :func:`~llm_trainer.core.trajectory.step_info`) come from its info then; with
  ``last_generation(slot)`` (LLM agents) a step keeps the prompt token ids, sampled token ids
  and log-probs. The episode adds the shared transcript (every action in AEC order, with the
  rewards of that step), each agent's return, its final ``info`` and, for policies with
  ``episode_generations(slot)``, its token usage.
* **Trainable or frozen.** Each trajectory's ``source`` is ``policy:<agent>``; the episode
  marks which agents are ``trainable`` (their trajectories are training data) and which are
  frozen (opponents, fixed roles): :meth:`MultiAgentEpisode.trainable_trajectories`.
* **Failures.** As in ``play_episodes``: a policy or an env that raises (a reset, a step, a
  ``last()``) records its error on that episode (on every agent's trajectory, the steps so far
  kept; an action whose outcome its agent had not seen yet is in the transcript only) and the
  other episodes go on; a batched policy reports per-slot failures with
  :class:`~llm_trainer.core.errors.BatchActError`. A :class:`~llm_trainer.core.errors.
  UserError` stops the run. An episode still running after ``max_actions`` actions is ended
  with an error (AEC envs bound their own episodes; this only guards against a broken one).
* **Episode ends.** A finished episode is passed to ``policy.end_episode(info, reward=...,
  slot=..., env_id=...)`` for each agent whose policy has it (an LLM agent's long-term memory),
  then to ``on_episode``.

**The communication protocol belongs to the env.** What each role observes (the question,
earlier roles' messages, the other player's moves) is decided and documented by the env (e.g.
``MALTEnv.protocol``); the coordinator only routes ``env.last()`` to the policy of
``env.agent_selection`` and the completion back to ``env.step``. It never edits, merges or
shares text between agents.

Parallel envs are not played here (convert one with ``pettingzoo.utils.parallel_to_aec``).

>>> from llm_trainer.envs.multiagent.kuhn import KuhnPokerEnv
>>> from llm_trainer.envs.multiagent.kuhn_solver import StrategyPolicy, always_bet_strategy
>>> bettor = StrategyPolicy(always_bet_strategy())  # one scripted player in both seats
>>> with MultiAgentCoordinator(
...     KuhnPokerEnv, {"player_0": bettor, "player_1": bettor}, trainable={"player_0"}
... ) as coordinator:
...     [episode] = coordinator.play([3])
>>> [(e.agent, e.action, e.reward) for e in episode.transcript]  # player_0 holds the K
[('player_0', '<answer>bet</answer>', 0.0), ('player_1', '<answer>call</answer>', -2.0)]
>>> dict(episode.returns), episode.trajectories["player_1"].total_reward
({'player_0': 2.0, 'player_1': -2.0}, -2.0)
>>> sorted(episode.trainable_trajectories()), episode.trajectories["player_1"].source
(['player_0'], 'policy:player_1')
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from llm_trainer.agents.policy import Policy, act_on_slots, resets_slots
from llm_trainer.agents.policy import describe_error as _describe
from llm_trainer.core.errors import UserError
from llm_trainer.core.records import METRIC_KEYS, FrozenDict, to_plain
from llm_trainer.core.seeding import derive_seed
from llm_trainer.core.trajectory import Step, Trajectory, step_info
from llm_trainer.core.usage import TokenUsage
from llm_trainer.envs.common import registered_ids, short_repr
from llm_trainer.envs.registration import make_multiagent

if TYPE_CHECKING:  # PettingZoo is imported only when a multi-agent env is made
    from pettingzoo import AECEnv

    MultiAgentEnv = AECEnv[str, Any, Any]
else:
    MultiAgentEnv = Any

#: What the coordinator plays: a registered multi-agent id, or a callable building the env.
EnvSource = str | Callable[[], Any]
#: The policies by agent name, or a callable building them from the coordinator's envs (for
#: scripted policies bound to envs, such as a MALT oracle).
PolicySource = Mapping[str, Policy] | Callable[[Sequence[Any]], Mapping[str, Policy]]

#: Actions after which an episode that has not ended is recorded as failed.
DEFAULT_MAX_ACTIONS = 10_000


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One action of an episode, in AEC order.

    Attributes:
        agent: Who acted.
        action: The completion sent to ``env.step``.
        reward: The acting agent's reward from this step (``env.rewards[agent]`` after it).
        rewards: Every live agent's reward from this step (summed over the transcript, an
            agent's entries give its return when all rewards come from actions).
    """

    agent: str
    action: str
    reward: float
    rewards: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class MultiAgentEpisode:
    """An episode the coordinator played.

    Attributes:
        env_id: The registered id (the env's class name when it was not made from one).
        seed: The reset seed.
        trajectories: One trajectory per agent, in ``possible_agents`` order
            (``source="policy:<agent>"``; ``error`` set on all of them when the episode
            failed).
        trainable: The agents whose trajectories are training data; the others are frozen.
        transcript: Every action of the episode, in AEC order.
        returns: Each agent's summed reward (what ``env.last()`` gave it over the episode;
            a trajectory's ``total_reward`` equals it unless the env rewarded the agent before
            its first action).
        final_infos: Each agent's last ``info`` (its metrics at the end).
        usage: Tokens each agent's policy spent this episode, when it reports them
            (``episode_generations(slot)``), else ``None``.
        seconds: Wall time from reset to the end (its share of lockstep batches).
        error: Why the episode failed (``None`` when it did not).
    """

    env_id: str
    seed: int
    trajectories: Mapping[str, Trajectory]
    trainable: frozenset[str]
    transcript: tuple[TranscriptEntry, ...]
    returns: Mapping[str, float]
    final_infos: Mapping[str, Mapping[str, Any]]
    usage: Mapping[str, TokenUsage | None]
    seconds: float
    error: str | None = None

    @property
    def agents(self) -> tuple[str, ...]:
        """The agents, in ``possible_agents`` order."""
        return tuple(self.trajectories)

    @property
    def frozen(self) -> frozenset[str]:
        """The agents whose policies are not trained (their trajectories are not data)."""
        return frozenset(self.trajectories) - self.trainable

    def is_trainable(self, agent: str) -> bool:
        """Whether ``agent``'s trajectory is training data (else its policy is frozen)."""
        if agent not in self.trajectories:
            raise KeyError(f"no agent {agent!r} in this episode; agents: {list(self.agents)}")
        return agent in self.trainable

    def trainable_trajectories(self) -> dict[str, Trajectory]:
        """The trainable agents' trajectories, by agent."""
        return {a: t for a, t in self.trajectories.items() if a in self.trainable}


@dataclass(slots=True)
class _Seat:
    """One agent's side of a running episode."""

    slot: int
    prompt: str | None = None
    first_info: Mapping[str, Any] = field(default_factory=dict)
    final_info: Mapping[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    pending: tuple[str, dict[str, tuple[Any, ...]]] | None = None
    """The latest action (and its tokens), waiting for what ``last()`` gives back."""
    returned: float = 0.0

    def see(
        self,
        observation: Any,
        reward: float,
        terminated: bool,
        truncated: bool,
        info: Mapping[str, Any],
    ) -> None:
        """Take in ``env.last()`` at this agent's turn: it closes the pending step."""
        self.returned += reward
        self.final_info = info
        if self.pending is not None:
            action, tokens = self.pending
            self.pending = None
            self.steps.append(
                Step(
                    action=action,
                    observation=str(observation),
                    role=str(info.get("role", "user")),
                    reward=reward,
                    terminated=terminated,
                    truncated=truncated,
                    metrics={m: bool(info.get(m, False)) for m in METRIC_KEYS},
                    info=step_info(info),
                    **tokens,
                )
            )
        elif self.prompt is None:
            self.prompt, self.first_info = str(observation), info


@dataclass(slots=True)
class _Running:
    """A running episode on one env."""

    index: int
    seed: int
    started: float
    seats: dict[str, _Seat]
    transcript: list[TranscriptEntry] = field(default_factory=list)
    waiting: tuple[str, str, Mapping[str, Any]] | None = None
    """The agent that must act, its observation and its info."""


class MultiAgentCoordinator:
    """Plays a multi-agent AEC env with one policy per agent, many episodes in lockstep.

    See the module docstring for batching, slots, seeding, records and failures.

    Args:
        env: A registered multi-agent id (made with :func:`llm_trainer.make_multiagent`) or a
            callable that builds the env (e.g. the env class).
        policies: The policy of every agent in ``possible_agents`` (one object may play
            several agents), or a callable that builds that mapping from the coordinator's
            envs (for scripted policies bound to envs; entries carry ``info["env_index"]``).
        trainable: The agents whose trajectories are training data; the others are frozen.
        num_envs: Envs stepped in lockstep (the largest batch of one policy call).
        env_kwargs: Constructor arguments overlaid on the registry's (with an env id only).
        max_actions: Actions after which a running episode is ended with an error.

    Raises:
        ValueError: for policies that do not cover ``possible_agents`` exactly, unknown
            trainable agents, ``num_envs`` or ``max_actions`` below 1, or ``env_kwargs`` with
            a callable ``env``.
        TypeError: when the env is not a PettingZoo ``AECEnv`` or a policy is not a
            :class:`~llm_trainer.agents.policy.Policy`.

    The coordinator owns its envs: :meth:`close` them (or use it as a context manager). It
    may :meth:`play` many times (e.g. between training updates of its policies).
    """

    def __init__(
        self,
        env: EnvSource,
        policies: PolicySource,
        *,
        trainable: Iterable[str] = (),
        num_envs: int = 16,
        env_kwargs: Mapping[str, Any] | None = None,
        max_actions: int = DEFAULT_MAX_ACTIONS,
    ) -> None:
        _check_count("num_envs", num_envs)
        _check_count("max_actions", max_actions)
        if isinstance(trainable, str):
            raise TypeError(f"trainable must be a set of agent names, got {trainable!r}")
        if isinstance(env, str):
            env_id: str | None = env
            kwargs = dict(env_kwargs or {})

            def build() -> Any:
                return make_multiagent(env, **kwargs)
        elif callable(env):
            if env_kwargs:
                raise ValueError("env_kwargs go with a registered env id; bind them in env")
            env_id, build = None, env
        else:
            raise TypeError(f"env must be an env id or a callable, got {short_repr(env)}")
        self.max_actions = max_actions
        self.envs: tuple[MultiAgentEnv, ...] = ()
        try:
            for _ in range(num_envs):  # one at a time: close() gets those built on a failure
                self.envs += (_checked_env(build()),)
            first = self.envs[0]
            self.agents: tuple[str, ...] = tuple(first.possible_agents)
            for other in self.envs[1:]:
                if tuple(other.possible_agents) != self.agents:
                    raise ValueError(
                        f"the envs disagree on possible_agents: {list(self.agents)} and "
                        f"{list(other.possible_agents)}"
                    )
            self.env_id = env_id or _env_name(first)
            chosen = policies if isinstance(policies, Mapping) else policies(self.envs)
            self.policies: Mapping[str, Policy] = FrozenDict(_checked_policies(chosen, self.agents))
            marked = frozenset(trainable)
            unknown = sorted(marked - set(self.agents))
            if unknown:
                raise ValueError(
                    f"trainable names unknown agents {unknown}; agents: {list(self.agents)}"
                )
            self.trainable = marked
        except BaseException:
            self.close()
            raise
        self._takes_slot = {id(p): resets_slots(p) for p in self.policies.values()}

    # -- the public API ------------------------------------------------------------------------

    @property
    def frozen(self) -> frozenset[str]:
        """The agents whose policies are not trained."""
        return frozenset(self.agents) - self.trainable

    def slot(self, env_index: int, agent: str) -> int:
        """The policy slot of ``agent`` in env ``env_index``."""
        return env_index * len(self.agents) + self.agents.index(agent)

    def play(
        self,
        seeds: Sequence[int],
        *,
        options: Mapping[str, Any] | None = None,
        on_episode: Callable[[MultiAgentEpisode], None] | None = None,
    ) -> list[MultiAgentEpisode]:
        """Play one episode per seed, in lockstep on the envs; see the module docstring.

        Args:
            seeds: Reset seeds, one episode each, played in order as envs free up.
            options: Reset options of every episode (e.g. ``{"difficulty": 2}``).
            on_episode: Called with each finished episode (progress, streaming to a store).

        Returns:
            One :class:`MultiAgentEpisode` per seed, in the order of ``seeds``.

        Raises:
            UserError: when a policy or an env raises one (the run cannot go on).
            TypeError: for a seed that is not an int.
        """
        for seed in seeds:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise TypeError(f"seeds must be ints, got {short_repr(seed)}")
        if not self.envs:
            raise ValueError("this coordinator is closed")
        play = _Play(self, list(seeds), options, on_episode)
        return play.run()

    def close(self) -> None:
        """Close every env (the first error is re-raised after all are closed)."""
        envs, self.envs = self.envs, ()
        first: BaseException | None = None
        for env in envs:
            try:
                # AECEnv.close is unannotated (pettingzoo); our envs annotate theirs
                env.close()  # type: ignore[no-untyped-call]
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    def __enter__(self) -> MultiAgentCoordinator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _Play:
    """One :meth:`MultiAgentCoordinator.play` call: the lockstep loop and its bookkeeping."""

    def __init__(
        self,
        coordinator: MultiAgentCoordinator,
        seeds: list[int],
        options: Mapping[str, Any] | None,
        on_episode: Callable[[MultiAgentEpisode], None] | None,
    ) -> None:
        self.c = coordinator
        self.pending = list(enumerate(seeds))[::-1]  # popped from the end
        self.count = len(seeds)
        self.options = dict(options) if options else None
        self.on_episode = on_episode
        self.running: list[_Running | None] = [None] * len(coordinator.envs)
        self.results: dict[int, MultiAgentEpisode] = {}
        self.actions = [0] * len(coordinator.envs)

    def run(self) -> list[MultiAgentEpisode]:
        for k in range(len(self.running)):
            self.to_next_turn(k)
        while True:
            active = [k for k, r in enumerate(self.running) if r is not None]
            if not active:
                break
            for policy, entries in self.groups(active):
                self.act(policy, entries)
            for k in active:
                self.to_next_turn(k)
        return [self.results[i] for i in range(self.count)]

    def groups(self, active: list[int]) -> list[tuple[Policy, list[tuple[int, str]]]]:
        """The round's calls: the waiting entries of each policy object, in agent order."""
        by_policy: dict[int, tuple[Policy, list[tuple[int, str]]]] = {}
        waiting = {}
        for k in active:
            run = self.running[k]
            assert run is not None
            assert run.waiting is not None
            waiting[k] = run.waiting[0]
        for agent in self.c.agents:
            policy = self.c.policies[agent]
            for k in active:
                if waiting[k] == agent:
                    by_policy.setdefault(id(policy), (policy, []))[1].append((k, agent))
        return list(by_policy.values())

    def act(self, policy: Policy, entries: list[tuple[int, str]]) -> None:
        """One policy call for ``entries`` (env, agent), then one env step each."""
        observations: list[str] = []
        infos: list[dict[str, Any]] = []
        slots: list[int] = []
        for k, agent in entries:
            run = self.running[k]
            assert run is not None
            assert run.waiting is not None
            _, observation, info = run.waiting
            slot = run.seats[agent].slot
            observations.append(observation)
            infos.append({**info, "slot": slot, "agent": agent, "env_index": k})
            slots.append(slot)
        actions, failures = act_on_slots(policy, observations, infos, slots)
        for (k, agent), slot, action in zip(entries, slots, actions, strict=True):
            if action is None:
                reason = failures.get(slot, "the policy returned no action")
                self.finish(k, f"{agent}'s policy: {reason}")
                continue
            self.step(k, agent, action, _token_record(policy, slot))

    def step(self, k: int, agent: str, action: str, tokens: dict[str, tuple[Any, ...]]) -> None:
        run = self.running[k]
        assert run is not None
        env = self.c.envs[k]
        try:
            env.step(action)
            rewards = FrozenDict({str(a): float(r) for a, r in env.rewards.items()})
        except UserError:
            raise
        except Exception as exc:  # an env bug must not take the batch down either
            self.finish(k, f"env: {_describe(exc)}")
            return
        run.transcript.append(TranscriptEntry(agent, action, rewards.get(agent, 0.0), rewards))
        run.seats[agent].pending = (action, tokens)
        run.waiting = None
        self.actions[k] += 1

    def to_next_turn(self, k: int) -> None:
        """Advance env ``k`` to the next agent that must act, starting the next pending
        seeds as episodes end (or fail)."""
        while True:
            run = self.running[k]
            if run is None:
                if not self.pending:
                    return
                self.start(k)
                continue
            if run.waiting is not None:
                return
            env = self.c.envs[k]
            try:
                while env.agents:
                    agent = env.agent_selection
                    observation, reward, terminated, truncated, info = env.last()
                    seat = run.seats.get(agent)
                    if seat is None:
                        raise RuntimeError(f"agent_selection {agent!r} is not a possible agent")
                    seat.see(observation, float(reward), terminated, truncated, info)
                    if not (terminated or truncated):
                        run.waiting = (agent, str(observation), info)
                        break
                    env.step(None)  # a dead agent leaves, the AEC way
            except UserError:
                raise
            except Exception as exc:
                self.finish(k, f"env: {_describe(exc)}")
                continue
            if run.waiting is None:  # every agent has left: the episode is over
                self.finish(k)
            elif self.actions[k] >= self.c.max_actions:
                self.finish(k, f"the episode did not end within {self.c.max_actions} actions")

    def start(self, k: int) -> None:
        """Reset env ``k`` with the next pending seed, and every agent's policy slot."""
        index, seed = self.pending.pop()
        seats = {agent: _Seat(self.c.slot(k, agent)) for agent in self.c.agents}
        self.running[k] = _Running(index, seed, time.perf_counter(), seats)
        self.actions[k] = 0
        try:
            self.c.envs[k].reset(seed=seed, options=self.options)
        except UserError:
            raise
        except Exception as exc:  # recorded: one broken task never stops the others
            self.finish(k, f"env: {_describe(exc)}")
            return
        for agent, seat in seats.items():
            policy = self.c.policies[agent]
            policy_seed = derive_seed(seed, agent)
            try:
                if self.c._takes_slot[id(policy)]:
                    policy.reset(seed=policy_seed, slot=seat.slot)  # type: ignore[call-arg]
                else:
                    policy.reset(seed=policy_seed)
            except UserError:
                raise
            except Exception as exc:
                self.finish(k, f"{agent}'s policy: {_describe(exc)}")
                return

    def finish(self, k: int, error: str | None = None) -> None:
        run = self.running[k]
        assert run is not None
        self.running[k] = None
        usage: dict[str, TokenUsage | None] = {}
        for agent, seat in run.seats.items():
            generations = getattr(self.c.policies[agent], "episode_generations", None)
            usage[agent] = _usage(generations(seat.slot)) if callable(generations) else None
        if error is None:
            error = self.end_episode(run)
        env_id = self.c.env_id
        trajectories = {}
        for agent, seat in run.seats.items():
            info = seat.first_info
            trajectories[agent] = Trajectory(
                env_id=env_id,
                seed=run.seed,
                difficulty=int(info.get("difficulty", 0)),
                system_prompt=str(info.get("system_prompt", "")),
                tools=tuple(to_plain(info.get("tools", ()))),
                prompt=seat.prompt or "",
                steps=tuple(seat.steps),
                source=f"policy:{agent}",
                error=error,
            )
        episode = MultiAgentEpisode(
            env_id=env_id,
            seed=run.seed,
            trajectories=FrozenDict(trajectories),
            trainable=self.c.trainable,
            transcript=tuple(run.transcript),
            returns=FrozenDict({a: s.returned for a, s in run.seats.items()}),
            final_infos=FrozenDict({a: FrozenDict(s.final_info) for a, s in run.seats.items()}),
            usage=FrozenDict(usage),
            seconds=time.perf_counter() - run.started,
            error=error,
        )
        self.results[run.index] = episode
        if self.on_episode is not None:
            self.on_episode(episode)

    def end_episode(self, run: _Running) -> str | None:
        """Tell each agent's policy its episode is over; the first failure, if any."""
        for agent, seat in run.seats.items():
            end = getattr(self.c.policies[agent], "end_episode", None)
            if not callable(end):
                continue
            try:
                end(seat.final_info, reward=seat.returned, slot=seat.slot, env_id=self.c.env_id)
            except UserError:
                raise
            except Exception as exc:
                return f"{agent}'s policy: {_describe(exc)}"
        return None


def play_multiagent(
    env: EnvSource,
    policies: PolicySource,
    seeds: Sequence[int],
    *,
    trainable: Iterable[str] = (),
    num_envs: int = 16,
    env_kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    on_episode: Callable[[MultiAgentEpisode], None] | None = None,
    max_actions: int = DEFAULT_MAX_ACTIONS,
) -> list[MultiAgentEpisode]:
    """Play one episode per seed of ``env`` with a :class:`MultiAgentCoordinator` of
    ``min(num_envs, len(seeds))`` envs, closed on every path.

    >>> import llm_trainer
    >>> from llm_trainer.agents import MALTOracle
    >>> [episode] = play_multiagent(
    ...     "LLMTrainer/MALT-v0", lambda envs: MALTOracle.team(envs[0]), [0], num_envs=1
    ... )
    >>> [entry.agent for entry in episode.transcript], dict(episode.returns)
    (['generator', 'verifier', 'refiner'], {'generator': 1.0, 'verifier': 1.0, 'refiner': 1.0})
    """
    if not seeds:
        return []
    with MultiAgentCoordinator(
        env,
        policies,
        trainable=trainable,
        num_envs=max(1, min(num_envs, len(seeds))),
        env_kwargs=env_kwargs,
        max_actions=max_actions,
    ) as coordinator:
        return coordinator.play(seeds, options=options, on_episode=on_episode)


# -- helpers -----------------------------------------------------------------------------------


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {short_repr(value)}")


def _checked_env(env: Any) -> MultiAgentEnv:
    from pettingzoo import AECEnv

    if not isinstance(env, AECEnv):
        with contextlib.suppress(Exception):
            env.close()
        raise TypeError(
            f"the coordinator plays PettingZoo AEC envs, got a {type(env).__name__} (convert "
            "a Parallel env with pettingzoo.utils.parallel_to_aec)"
        )
    return env


def _checked_policies(policies: Mapping[str, Policy], agents: tuple[str, ...]) -> dict[str, Policy]:
    if not isinstance(policies, Mapping):
        raise TypeError(f"policies must map agent names to policies, got {short_repr(policies)}")
    missing = [a for a in agents if a not in policies]
    extra = sorted(str(a) for a in policies if a not in agents)
    if missing or extra:
        raise ValueError(
            f"policies must cover the agents {list(agents)} exactly; missing {missing}, "
            f"unknown {extra}"
        )
    for agent in agents:
        if not isinstance(policies[agent], Policy):
            raise TypeError(
                f"the policy of {agent!r} is not a Policy (reset, act, act_batch): "
                f"{type(policies[agent]).__name__}"
            )
    return {agent: policies[agent] for agent in agents}


def _env_name(env: Any) -> str:
    """The registered id of ``env`` (its class name when it has none or several)."""
    cls = type(env.unwrapped)
    ids = registered_ids(cls)
    return ids[0] if len(ids) == 1 else cls.__name__


def _usage(generations: Sequence[Any]) -> TokenUsage:
    return TokenUsage(
        sum(len(g.prompt_token_ids) for g in generations),
        sum(len(g.token_ids) for g in generations),
    )


def _token_record(policy: Any, slot: int) -> dict[str, tuple[Any, ...]]:
    """The tokens behind a policy's last action in ``slot``, when it records them
    (``last_generation(slot)``, as in :func:`~llm_trainer.algorithms.rollout.play_episodes`)."""
    getter = getattr(policy, "last_generation", None)
    generation = getter(slot) if callable(getter) else None
    if generation is None:
        return {}
    return {
        "prompt_token_ids": tuple(generation.prompt_token_ids),
        "completion_token_ids": tuple(generation.token_ids),
        "logprobs": tuple(generation.logprobs),
    }
