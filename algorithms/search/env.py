"""The env as a search sees it: a snapshot, one step from any snapshot, and whose move it is.

Search never reaches into an env's internals: it uses the snapshot contract every env keeps
(``env.unwrapped.get_state()`` / ``set_state(state)``, DESIGN.md "The env contract"). A
:class:`SearchEnv` turns that into one operation, :meth:`SearchEnv.step`: restore a snapshot,
take one action, snapshot again. Snapshots are immutable values, so a tree can keep one per
node and step from any of them in any order.

Two adapters:

* :class:`GymSearchEnv`: a Gymnasium env (one player). It steps ``env.unwrapped``, so the
  wrappers of the episode being played (its ``TimeLimit``, a curriculum) never see the
  simulated steps; the time limit becomes the search's horizon instead.
* :class:`AECSearchEnv`: a two-player, zero-sum PettingZoo AEC game (Kuhn poker). Each step
  is the move of ``agent_selection``; rewards are kept per player, so the search can negate
  them at the opponent's nodes.

The live env is left as the search found it: :meth:`SearchEnv.restore` puts the root snapshot
back when a search ends (:class:`~llm_trainer.algorithms.search.mcts.MCTS` does it in a
``finally``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from llm_trainer.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Transition:
    """Where one step (or the root) leaves the game.

    Attributes:
        state: The env's snapshot after the step (what :meth:`SearchEnv.step` starts from).
        observation: What the player to move now sees (the last observation when terminal).
        info: The env's ``info`` for that player.
        rewards: The step's reward for each player, in :attr:`SearchEnv.players` order.
        terminal: Whether the episode ended (terminated or truncated by the env).
        to_move: The index of the player to move now (0 for a one-player env).
    """

    state: Any
    observation: str
    info: Mapping[str, Any]
    rewards: tuple[float, ...]
    terminal: bool
    to_move: int


@runtime_checkable
class SearchEnv(Protocol):
    """Snapshots and steps for a tree search (see the module docstring)."""

    players: tuple[str, ...]
    """The players, by index (one entry for a Gymnasium env)."""
    horizon: int | None
    """Steps left in the episode from the live state (the env's time limit), if known."""

    def root(self, observation: str, info: Mapping[str, Any]) -> Transition:
        """The live state, as a transition without a step (its rewards are zero)."""
        ...

    def step(self, state: Any, action: str) -> Transition:
        """Restore ``state``, take ``action``, and snapshot the result."""
        ...

    def restore(self, state: Any) -> None:
        """Put ``state`` back into the live env."""
        ...


def _check_snapshots(base: Any) -> None:
    if not (
        callable(getattr(base, "get_state", None)) and callable(getattr(base, "set_state", None))
    ):
        raise ConfigError(
            f"tree search needs env snapshots, and {type(base).__name__} has no "
            "get_state()/set_state() (DESIGN.md, 'The env contract')"
        )


class GymSearchEnv:
    """A Gymnasium env for search (one player); steps go to ``env.unwrapped``.

    Args:
        env: The env (wrapped or not) whose live episode the search starts from.

    Raises:
        ConfigError: when the env has no snapshots.
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        self.base = env.unwrapped
        _check_snapshots(self.base)
        self.players: tuple[str, ...] = ("player",)
        spec = getattr(env, "spec", None)
        self._limit: int | None = getattr(spec, "max_episode_steps", None)
        self.horizon: int | None = self._limit

    def root(self, observation: str, info: Mapping[str, Any]) -> Transition:
        turn = info.get("turn")
        # the env's own turn counter (every text env reports one) says how much of the time
        # limit the played episode has used
        if self._limit is not None and isinstance(turn, int):
            self.horizon = max(0, self._limit - turn)
        return Transition(self.base.get_state(), str(observation), info, (0.0,), False, 0)

    def step(self, state: Any, action: str) -> Transition:
        self.base.set_state(state)
        observation, reward, terminated, truncated, info = self.base.step(action)
        return Transition(
            self.base.get_state(),
            str(observation),
            info,
            (float(reward),),
            bool(terminated or truncated),
            0,
        )

    def restore(self, state: Any) -> None:
        self.base.set_state(state)


class AECSearchEnv:
    """A two-player zero-sum PettingZoo AEC env for search (each step is the move of the agent
    to act).

    Args:
        env: The AEC env (wrapped or not) whose live hand the search starts from.

    Raises:
        ConfigError: when the env has no snapshots or does not have exactly two players.
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        self.base = env.unwrapped
        _check_snapshots(self.base)
        players = tuple(self.base.possible_agents)
        if len(players) != 2:
            raise ConfigError(
                f"tree search plays two-player zero-sum PettingZoo games; "
                f"{type(self.base).__name__} has {len(players)} players"
            )
        self.players: tuple[str, ...] = players
        self.horizon: int | None = None

    def root(self, observation: str, info: Mapping[str, Any]) -> Transition:
        base = self.base
        return Transition(
            base.get_state(), str(observation), info, (0.0, 0.0), False, self._to_move()
        )

    def step(self, state: Any, action: str) -> Transition:
        base = self.base
        base.set_state(state)
        base.step(action)
        rewards = tuple(float(base.rewards.get(p, 0.0)) for p in self.players)
        agent = base.agent_selection
        terminal = bool(base.terminations.get(agent, False) or base.truncations.get(agent, False))
        observation = str(base.observe(agent))
        info = dict(base.infos.get(agent, {}))
        return Transition(base.get_state(), observation, info, rewards, terminal, self._to_move())

    def restore(self, state: Any) -> None:
        self.base.set_state(state)

    def _to_move(self) -> int:
        return self.players.index(self.base.agent_selection)


def search_env(env: Any) -> GymSearchEnv | AECSearchEnv:
    """The adapter for ``env``: :class:`AECSearchEnv` for a PettingZoo AEC env (one with
    ``possible_agents`` and ``agent_iter``), else :class:`GymSearchEnv`."""
    base = env.unwrapped
    if hasattr(base, "possible_agents") and callable(getattr(base, "agent_iter", None)):
        return AECSearchEnv(env)
    return GymSearchEnv(env)
