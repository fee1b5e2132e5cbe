"""``CurriculumManager``: an env whose difficulty follows the agent's recent success.

A :class:`Curriculum` is a ladder of *levels*, easiest first; each level is a set of reset
options (``{"difficulty": 2}``, or ``{"difficulty": 2, "size": 5}`` for a family with several
difficulty attributes). It keeps a rolling window of episode outcomes at the current level and
moves (reasoning-gym's rule, its thresholds as defaults):

* **up** one level when the window's success rate is above ``promote_above`` (0.7),
* **down** one level when it is below ``demote_below`` (0.1),

once at least ``min_episodes`` episodes were played at the level since it was entered. A move
clears the window: the new level is measured afresh. An episode counts for the level it was
*played* at: in lockstep rollouts, episodes that started before a move end after it, and their
outcomes say nothing about the new level (they are tallied, not put in its window).

:class:`CurriculumManager` is the wrapper: at every ``reset`` it fills in the current level's
reset options (unless the caller set one of them itself: such an episode is not part of the
curriculum), puts the level in ``info["curriculum_level"]`` (``None`` for an episode outside
the curriculum) and, when the episode ends, records ``info["success"]``. An episode reset
before it ended (cut by the episode engine's ``max_turns``) counts as a failure: it could not
succeed without ending.

**One curriculum per run, shared by every slot.** In lockstep rollouts each slot has its own
env; give every slot's wrapper the *same* :class:`Curriculum` object, or each slot would learn
its own level from an eighth of the episodes::

    curriculum = Curriculum.for_env(CurriculumConfig(), "LLMTrainer/Calculator-v0")
    envs = [CurriculumManager(llm_trainer.make(env_id), curriculum) for _ in range(8)]

(shared within one process: ``AsyncVectorEnv`` workers would each get a copy).
:meth:`Curriculum.hold` defers moves to the end of a block, so that a batch of episodes (a
PPO iteration, a GRPO generation batch, whose groups must all see the same task) is played at
one level whatever order its slots finish in.

**Levels from several attributes.** ``CurriculumConfig.attributes`` gives each reset option its
own ladder of values, and ``schedule`` combines them into one ladder of levels:
``round_robin`` moves one attribute at a time, in turn (``{d: 1, size: 3}`` -> ``{d: 2, size:
3}`` -> ``{d: 2, size: 5}`` -> ...; a demotion undoes the latest promotion), ``together`` moves
every attribute at once (an attribute whose ladder is shorter stays at its last value). With no
attributes the ladder is the env's difficulties (``registry.yaml``'s capabilities, or the env's
``difficulties`` attribute).

**State.** :meth:`Curriculum.get_state` is a JSON-ready dict (level, window, counters) and
:meth:`Curriculum.set_state` restores it; PPO stores it in its checkpoints and GRPO in TRL's
trainer state, so a resumed run continues at the same level. :meth:`Curriculum.as_metrics`
gives the ``curriculum/*`` metrics the trainers log (TensorBoard and ``metrics.jsonl``). There
is no randomness: the level is a function of the outcomes recorded, in order.

**Not for SFT data.** A ``data.curriculum`` was left out on purpose: oracle demonstrations
always succeed, so a success-driven curriculum degenerates into a fixed schedule
(``min_episodes`` episodes at each level, then the top level for the rest), and SFT shuffles
its dataset, so the order, the only thing a schedule adds, is lost.

>>> import llm_trainer
>>> curriculum = Curriculum.for_env(CurriculumConfig(min_episodes=2, window=2),
...                                 "LLMTrainer/Calculator-v0")
>>> env = CurriculumManager(llm_trainer.make("LLMTrainer/Calculator-v0"), curriculum)
>>> _, info = env.reset(seed=0)
>>> info["curriculum_level"], info["difficulty"]
(0, 1)
>>> curriculum.record(True), curriculum.record(True)  # two successes at level 0: promoted
(0, 1)
>>> _, info = env.reset(seed=0)
>>> info["curriculum_level"], info["difficulty"], curriculum.as_metrics()["curriculum/level"]
(1, 2, 1.0)
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, SupportsFloat, TypeVar

import gymnasium as gym

from llm_trainer.core.config import NON_NEGATIVE, PROBABILITY, Range, check_ranges
from llm_trainer.core.errors import ConfigError, UnknownEnvError
from llm_trainer.core.records import FrozenDict

ObsT = TypeVar("ObsT")
ActT = TypeVar("ActT")

#: ``get_state()["format"]``: what a stored curriculum state is.
STATE_FORMAT = "llm-trainer/curriculum"
STATE_VERSION = 1
#: The key of the level in ``info``.
INFO_KEY = "curriculum_level"


@dataclass(frozen=True)
class CurriculumConfig:
    """A success-driven curriculum (``ppo.curriculum``, ``grpo.curriculum``)."""

    attributes: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: FrozenDict({}))
    """Reset options the curriculum moves, each with its values easiest first, e.g.
    ``{difficulty: [1, 2, 3]}``; empty: the env's difficulties."""
    schedule: Literal["round_robin", "together"] = "round_robin"
    """How several attributes make one ladder: ``round_robin`` promotes one attribute at a
    time, in turn; ``together`` moves all of them at once."""
    start_level: Annotated[int, NON_NEGATIVE] = 0
    """The level the run starts at (0: the easiest)."""
    window: Annotated[int, Range(ge=1)] = 64
    """Episodes in the rolling success window of the current level."""
    promote_above: Annotated[float, PROBABILITY] = 0.7
    """Promote when the window's success rate is above this (1: never)."""
    demote_below: Annotated[float, PROBABILITY] = 0.1
    """Demote when the window's success rate is below this (0: never)."""
    min_episodes: Annotated[int, Range(ge=1)] = 32
    """Episodes played at a level (since it was entered) before it may move."""

    def __post_init__(self) -> None:
        check_ranges(self, "curriculum")
        if self.demote_below >= self.promote_above:
            raise ConfigError(
                f"curriculum.demote_below ({self.demote_below}) must be below "
                f"curriculum.promote_above ({self.promote_above})"
            )
        if not isinstance(self.attributes, Mapping):
            raise ConfigError(
                f"curriculum.attributes must map reset options to lists of values, "
                f"got {self.attributes!r}"
            )
        ladders: dict[str, tuple[int, ...]] = {}
        for name, values in self.attributes.items():
            where = f"curriculum.attributes.{name}"
            if not isinstance(name, str) or not name:
                raise ConfigError(f"curriculum.attributes: {name!r} is not a reset option name")
            if (
                not isinstance(values, list | tuple)
                or not values
                or any(isinstance(v, bool) or not isinstance(v, int) for v in values)
            ):
                raise ConfigError(f"{where} must be a non-empty list of integers, got {values!r}")
            if len(set(values)) != len(values):
                raise ConfigError(f"{where} has duplicates: {list(values)}")
            ladders[name] = tuple(int(v) for v in values)
        object.__setattr__(self, "attributes", FrozenDict(ladders))


def build_ladder(
    config: CurriculumConfig, difficulties: Sequence[int] = (), section: str = "curriculum"
) -> tuple[FrozenDict, ...]:
    """The levels of ``config``, easiest first: one mapping of reset options each.

    ``difficulties`` are the env's (the ladder when ``config.attributes`` is empty; the allowed
    values of a ``difficulty`` attribute otherwise; unchecked when empty). Errors name
    ``section`` (``ppo.curriculum``).

    >>> [dict(level) for level in build_ladder(CurriculumConfig(), (1, 2, 3))]
    [{'difficulty': 1}, {'difficulty': 2}, {'difficulty': 3}]
    >>> two = CurriculumConfig(attributes={"difficulty": [1, 2], "size": [3, 5, 8]})
    >>> [tuple(level.values()) for level in build_ladder(two)]
    [(1, 3), (2, 3), (2, 5), (2, 8)]

    Raises:
        ConfigError: for no difficulties to climb, a ``difficulty`` value the env does not
            have, or a ``start_level`` beyond the top.
    """
    ladders = dict(config.attributes)
    if not ladders:
        if not difficulties:
            raise ConfigError(
                f"{section}.attributes: the env declares no difficulties; name the reset "
                "options to move and their values"
            )
        ladders = {"difficulty": tuple(sorted(int(d) for d in difficulties))}
    elif difficulties and "difficulty" in ladders:
        unknown = [d for d in ladders["difficulty"] if d not in difficulties]
        if unknown:
            raise ConfigError(
                f"{section}.attributes.difficulty: {unknown} not among the env's difficulties "
                f"{sorted(difficulties)}"
            )
    names = list(ladders)
    index = dict.fromkeys(names, 0)
    levels = [dict(index)]
    if config.schedule == "together":
        for step in range(1, max(len(v) for v in ladders.values())):
            levels.append({n: min(step, len(ladders[n]) - 1) for n in names})
    else:  # round_robin: one attribute per level, in turn, skipping those at their top
        while any(index[n] < len(ladders[n]) - 1 for n in names):
            for n in names:
                if index[n] < len(ladders[n]) - 1:
                    index[n] += 1
                    levels.append(dict(index))
    ladder = tuple(FrozenDict({n: ladders[n][i] for n, i in lv.items()}) for lv in levels)
    if config.start_level >= len(ladder):
        raise ConfigError(
            f"{section}.start_level: {config.start_level} is beyond the top level "
            f"{len(ladder) - 1} ({len(ladder)} levels)"
        )
    return ladder


def check_curriculum(config: CurriculumConfig | None, env_id: str, section: str) -> None:
    """Raise :class:`ConfigError` naming ``section`` when ``config``'s ladder does not fit the
    registered env ``env_id`` (an unknown id is left to the env check)."""
    from llm_trainer.envs.registration import spec

    if config is None:
        return
    try:
        difficulties = spec(env_id).capabilities.difficulties
    except UnknownEnvError:
        return
    build_ladder(config, difficulties, section)


def env_difficulties(env: gym.Env[Any, Any]) -> tuple[int, ...]:
    """The difficulties ``env`` declares: its registry entry's capabilities, else the
    ``difficulties`` attribute of the unwrapped env; ``()`` when neither says."""
    from llm_trainer.envs.registration import spec

    if env.spec is not None:
        try:
            return tuple(spec(env.spec.id).capabilities.difficulties)
        except UnknownEnvError:
            pass
    declared = getattr(env.unwrapped, "difficulties", None)
    return tuple(int(d) for d in declared) if declared else ()


class Curriculum:
    """The state of one curriculum: the ladder, the current level, its rolling window.

    One object per training run, shared by the :class:`CurriculumManager` of every slot.

    Args:
        config: The rule (defaults: reasoning-gym's thresholds).
        difficulties: The env's difficulties (see :func:`build_ladder`).

    Raises:
        ConfigError: for a ladder the env cannot play (see :func:`build_ladder`).
    """

    def __init__(
        self, config: CurriculumConfig | None = None, difficulties: Sequence[int] = ()
    ) -> None:
        self.config = config if config is not None else CurriculumConfig()
        self.difficulties = tuple(int(d) for d in difficulties)
        self.levels = build_ladder(self.config, self.difficulties)
        self._level = self.config.start_level
        self._window: deque[bool] = deque(maxlen=self.config.window)
        self._at_level = 0
        self._promotions = 0
        self._demotions = 0
        self._tally = [[0, 0] for _ in self.levels]  # per level: episodes, successes
        self._held: list[tuple[bool, int]] | None = None

    @classmethod
    def for_env(cls, config: CurriculumConfig | None, env_id: str) -> Curriculum:
        """A curriculum over the registered env ``env_id`` (its difficulties from the registry).

        Raises:
            UnknownEnvError: for an unregistered id.
            ConfigError: for a ladder the env cannot play.
        """
        from llm_trainer.envs.registration import spec

        return cls(config, spec(env_id).capabilities.difficulties)

    # -- reading -------------------------------------------------------------------------------

    @property
    def level(self) -> int:
        """The current level (0: the easiest)."""
        return self._level

    @property
    def top(self) -> int:
        """The highest level."""
        return len(self.levels) - 1

    @property
    def attributes(self) -> tuple[str, ...]:
        """The reset options the curriculum sets."""
        return tuple(self.levels[0])

    def options(self, level: int | None = None) -> dict[str, int]:
        """The reset options of ``level`` (the current one by default)."""
        return dict(self.levels[self._level if level is None else level])

    @property
    def window_success(self) -> float | None:
        """The success rate in the current level's window (``None`` while it is empty)."""
        return sum(self._window) / len(self._window) if self._window else None

    def as_metrics(self) -> dict[str, float]:
        """``curriculum/*`` scalars for TensorBoard and ``metrics.jsonl``: the level, each
        attribute's value at it, the window's success rate, episodes at the level, moves."""
        return {
            "curriculum/level": float(self._level),
            **{f"curriculum/{k}": float(v) for k, v in self.levels[self._level].items()},
            "curriculum/window_success": self.window_success or 0.0,
            "curriculum/episodes_at_level": float(self._at_level),
            "curriculum/promotions": float(self._promotions),
            "curriculum/demotions": float(self._demotions),
        }

    # -- recording -----------------------------------------------------------------------------

    def record(self, success: bool, level: int | None = None) -> int:
        """Record an episode's outcome, played at ``level`` (the current one by default).

        Returns:
            The move it caused: +1 (promoted), -1 (demoted) or 0 (none, or deferred by
            :meth:`hold`).
        """
        level = self._level if level is None else int(level)
        if not 0 <= level <= self.top:
            raise ValueError(f"level must be in [0, {self.top}], got {level}")
        if self._held is not None:
            self._held.append((bool(success), level))
            return 0
        return self._apply(bool(success), level)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Defer every move to the end of the block: outcomes recorded inside it are applied,
        in order, when it exits (a batch of episodes is played at one level). Nested blocks
        apply at the outermost exit."""
        if self._held is not None:
            yield
            return
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            for success, level in held:
                self._apply(success, level)

    def _apply(self, success: bool, level: int) -> int:
        tally = self._tally[level]
        tally[0] += 1
        tally[1] += success
        if level != self._level:
            return 0  # played at a level the curriculum has since left
        self._window.append(success)
        self._at_level += 1
        if self._at_level < self.config.min_episodes:
            return 0
        rate = sum(self._window) / len(self._window)
        if rate > self.config.promote_above and self._level < self.top:
            self._promotions += 1
            return self._move(+1)
        if rate < self.config.demote_below and self._level > 0:
            self._demotions += 1
            return self._move(-1)
        return 0

    def _move(self, step: int) -> int:
        self._level += step
        self._window.clear()
        self._at_level = 0
        return step

    # -- state ---------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """The curriculum's state as JSON-ready data (what checkpoints store)."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "levels": [dict(level) for level in self.levels],
            "level": self._level,
            "window": [int(s) for s in self._window],
            "episodes_at_level": self._at_level,
            "promotions": self._promotions,
            "demotions": self._demotions,
            "tally": [{"episodes": e, "successes": s} for e, s in self._tally],
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`get_state` (of a curriculum with the same ladder).

        Raises:
            ValueError: for something else, another version or another ladder.
        """
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise ValueError("not a curriculum state (from Curriculum.get_state())")
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"curriculum state version {state.get('version')!r} is not supported "
                f"(this llm-trainer reads version {STATE_VERSION})"
            )
        levels = [dict(level) for level in self.levels]
        if state.get("levels") != levels:
            raise ValueError(
                f"the stored curriculum has the levels {state.get('levels')!r}, this one "
                f"{levels!r}: a resumed run needs the same curriculum"
            )
        try:
            level = _count(state["level"], self.top)
            window = [bool(_count(s, 1)) for s in state["window"]]
            at_level = _count(state["episodes_at_level"])
            promotions, demotions = _count(state["promotions"]), _count(state["demotions"])
            tally = [[_count(t["episodes"]), _count(t["successes"])] for t in state["tally"]]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed curriculum state ({exc!r})") from None
        if len(tally) != len(self.levels):
            raise ValueError("malformed curriculum state (one tally per level expected)")
        self._level, self._at_level = level, at_level
        self._window = deque(window, maxlen=self.config.window)
        self._promotions, self._demotions, self._tally = promotions, demotions, tally
        self._held = None


def _count(value: Any, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"expected a non-negative integer, got {value!r}")
    if high is not None and value > high:
        raise TypeError(f"expected at most {high}, got {value!r}")
    return value


class CurriculumManager(gym.Wrapper[ObsT, ActT, ObsT, ActT], gym.utils.RecordConstructorArgs):
    """Resets ``env`` at the level of a (shared) :class:`Curriculum` and reports outcomes.

    See the module docstring. Observations, actions, rewards and termination are the wrapped
    env's; ``info`` gains ``curriculum_level``. An env recreated from this one's spec
    (``gymnasium.make(env.spec)``) gets a fresh curriculum of the same config, not this state.

    Args:
        env: An env whose ``reset`` takes the curriculum's attributes as options (every
            llm-trainer env takes ``difficulty``) and whose final ``info`` has ``success``.
        curriculum: The run's shared curriculum; a :class:`CurriculumConfig` (or ``None``, the
            defaults) builds one for this env alone.

    Raises:
        ConfigError: for a curriculum whose difficulties the env does not have.
    """

    def __init__(
        self, env: gym.Env[ObsT, ActT], curriculum: Curriculum | CurriculumConfig | None = None
    ) -> None:
        config = curriculum.config if isinstance(curriculum, Curriculum) else curriculum
        gym.utils.RecordConstructorArgs.__init__(self, curriculum=config)
        super().__init__(env)
        difficulties = env_difficulties(env)
        if isinstance(curriculum, Curriculum):
            if "difficulty" in curriculum.attributes and difficulties:
                unknown = sorted({lv["difficulty"] for lv in curriculum.levels} - set(difficulties))
                if unknown:
                    raise ConfigError(
                        f"{_name(env)}: the curriculum plays difficulties {unknown} this env "
                        f"does not have (it has {list(difficulties)})"
                    )
        else:
            curriculum = Curriculum(curriculum, difficulties)
        self.curriculum = curriculum
        self._level: int | None = None
        self._open = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsT, dict[str, Any]]:
        self.end_episode()
        if options and any(name in options for name in self.curriculum.attributes):
            self._level = None  # the caller chose the task's level: not a curriculum episode
        else:
            self._level = self.curriculum.level
            options = {**(options or {}), **self.curriculum.options(self._level)}
        observation, info = self.env.reset(seed=seed, options=options)
        self._open = self._level is not None
        return observation, {**info, INFO_KEY: self._level}

    def step(self, action: ActT) -> tuple[ObsT, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        if self._open and (terminated or truncated):
            self._open = False
            if "success" not in info:
                raise ConfigError(
                    f"{_name(self.env)}: no info['success'] at the end of an episode; "
                    "CurriculumManager moves on it"
                )
            self.curriculum.record(bool(info["success"]), self._level)
        return observation, reward, terminated, truncated, {**info, INFO_KEY: self._level}

    def end_episode(self) -> None:
        """End the episode being played, for the curriculum: one that did not end by itself
        (cut before its end) counts as a failure. ``reset`` calls it; call it when a batch is
        over, so that its cut episodes count now, not at the next reset."""
        if self._open:
            self._open = False
            assert self._level is not None
            self.curriculum.record(False, self._level)


def _name(env: gym.Env[Any, Any]) -> str:
    return env.spec.id if env.spec is not None else type(env.unwrapped).__name__


__all__ = [
    "Curriculum",
    "CurriculumConfig",
    "CurriculumManager",
    "build_ladder",
    "check_curriculum",
    "env_difficulties",
]
