"""The multi-agent conformance suite: every multi-agent id in registry.yaml against PettingZoo's
checkers and the env contract (DESIGN.md), whatever the env.

Actions are drawn from each agent's own action space, seeded per test, so the same seed plays
the same episode; an id registered later is picked up without an edit here.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
import pickle
import pkgutil
import random
import types
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.test import (
    api_test,
    max_cycles_test,
    parallel_api_test,
    parallel_seed_test,
    seed_test,
)
from pettingzoo.utils.conversions import aec_to_parallel

import llm_trainer
import llm_trainer.envs
from llm_trainer.core.errors import ConfigError, RegistryError, UnknownEnvError
from llm_trainer.core.records import METRIC_KEYS
from llm_trainer.envs.registration import multi_agent_ids, single_agent_ids
from llm_trainer.envs.spaces import TextObservation, UnicodeText
from tests.conftest import MULTIAGENT_ENV_IDS

#: What every agent's ``info`` carries, as in the single-agent envs (``difficulty`` too, where
#: the env takes one: see the test of it below).
INFO_KEYS = {
    "system_prompt",
    "tools",
    "role",
    "turn",
    "invalid_action",
    "invalid_reason",
    *METRIC_KEYS,
}
#: PettingZoo's checkers warn about what text envs are by design: observations that are not
#: numpy arrays, spaces that are not Box/Discrete, agents not named like ``player_0``.
pettingzoo_style_warnings = pytest.mark.filterwarnings("ignore::UserWarning")


def _make(env_id: str, **overrides: Any) -> Any:
    return llm_trainer.make_multiagent(env_id, **overrides)


def _is_parallel(env_id: str) -> bool:
    return llm_trainer.spec(env_id).capabilities.api == "pettingzoo-parallel"


def _takes(env_id: str, argument: str) -> bool:
    return argument in inspect.signature(llm_trainer.spec(env_id).load()).parameters


def _seed_spaces(env: Any, seed: int) -> None:
    for i, agent in enumerate(env.possible_agents):
        env.action_space(agent).seed(seed + i)


def _metrics(info: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(info[k] for k in METRIC_KEYS)


def _check_step(env: Any, agent: str, observation: Any, reward: Any, info: dict[str, Any]) -> None:
    assert isinstance(observation, TextObservation)
    assert env.observation_space(agent).contains(observation)
    assert math.isfinite(float(reward))
    assert set(info) >= INFO_KEYS, INFO_KEYS - set(info)
    for key in (*METRIC_KEYS, "invalid_action"):
        assert type(info[key]) is bool, (key, info[key])
    if info["invalid_action"]:
        assert isinstance(info["invalid_reason"], str)
        assert info["invalid_reason"]


def _play(env: Any, seed: int | None, actions_seed: int, *, max_steps: int = 500) -> list[Any]:
    """Play one episode from ``reset(seed=seed)`` with actions sampled from the agents' spaces
    (seeded with ``actions_seed``); the whole trajectory, as comparable tuples."""
    if isinstance(env, ParallelEnv):
        observations, infos = env.reset(seed=seed)
        _seed_spaces(env, actions_seed)
        record: list[Any] = [({a: str(o) for a, o in observations.items()}, _all(infos))]
        for _ in range(max_steps):
            if not env.agents:
                break
            actions = {a: env.action_space(a).sample() for a in env.agents}
            observations, rewards, terminations, truncations, infos = env.step(actions)
            for agent, observation in observations.items():
                _check_step(env, agent, observation, rewards[agent], infos[agent])
            record.append((actions, {a: str(o) for a, o in observations.items()}, dict(rewards)))
            record.append((terminations, truncations, _all(infos)))
        return record
    env.reset(seed=seed)
    _seed_spaces(env, actions_seed)
    record = []
    for agent in env.agent_iter(max_steps):
        observation, reward, terminated, truncated, info = env.last()
        _check_step(env, agent, observation, reward, info)
        action = None if terminated or truncated else env.action_space(agent).sample()
        record.append((agent, str(observation), reward, terminated, truncated, _metrics(info)))
        env.step(action)
    return record


def _all(infos: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {agent: _metrics(info) for agent, info in infos.items()}


# -- PettingZoo's own checkers ----------------------------------------------------------------


@pettingzoo_style_warnings
@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_pettingzoo_api_test_passes(env_id: str) -> None:
    if _is_parallel(env_id):
        parallel_api_test(_make(env_id), num_cycles=200)
    else:
        api_test(_make(env_id), num_cycles=200)


@pettingzoo_style_warnings
@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_pettingzoo_seed_test_passes(env_id: str) -> None:
    if _is_parallel(env_id):
        parallel_seed_test(lambda: _make(env_id), num_cycles=100)
    else:
        seed_test(lambda: _make(env_id), num_cycles=100)


def _parallel(env_id: str, **overrides: Any) -> ParallelEnv[Any, Any, Any]:
    """The env as a Parallel env. A turn-based env that does not claim to be parallelizable
    (its later roles read earlier roles' texts of the same cycle) is converted anyway, on an
    instance-level copy of its metadata: ``max_cycles_test`` only counts cycles in its
    parallel half, with random actions, which the wrapper plays in turn order correctly."""
    env = _make(env_id, **overrides)
    if isinstance(env, ParallelEnv):
        return env
    if not env.metadata.get("is_parallelizable", False):
        env.metadata = {**env.metadata, "is_parallelizable": True}
    return aec_to_parallel(env)


@pettingzoo_style_warnings
@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_pettingzoo_max_cycles_test_passes(env_id: str) -> None:
    if not _takes(env_id, "max_cycles"):
        pytest.skip(f"{env_id} takes no max_cycles (a game that ends by its own rules)")
    module = types.SimpleNamespace(
        env=lambda max_cycles: _make(env_id, max_cycles=max_cycles),
        parallel_env=lambda max_cycles: _parallel(env_id, max_cycles=max_cycles),
    )
    max_cycles_test(module)


# -- the env contract, per agent --------------------------------------------------------------


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_every_agent_gets_text_observations_and_the_metrics_at_every_step(env_id: str) -> None:
    env = _make(env_id)
    for seed in range(20):
        trajectory = _play(env, seed, actions_seed=seed)
        assert trajectory
    spec = llm_trainer.spec(env_id)
    assert spec.capabilities.multi_agent
    for agent in env.possible_agents:
        assert isinstance(env.action_space(agent), UnicodeText)
        assert isinstance(env.observation_space(agent), UnicodeText)


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_difficulty_is_an_argument_a_reset_option_and_in_every_info(env_id: str) -> None:
    if not _takes(env_id, "difficulty"):
        pytest.skip(f"{env_id} takes no difficulty")
    other = _make(env_id)
    for difficulty in llm_trainer.spec(env_id).capabilities.difficulties:
        infos = _reset_infos(_make(env_id, difficulty=difficulty), seed=0)
        assert {info["difficulty"] for info in infos.values()} == {difficulty}
        infos = _reset_infos(other, seed=0, options={"difficulty": difficulty})
        assert {info["difficulty"] for info in infos.values()} == {difficulty}
    with pytest.raises(ConfigError, match=f"^{env_id}: difficulty 99 is not supported"):
        _make(env_id, difficulty=99)


def _reset_infos(env: Any, **reset: Any) -> dict[str, dict[str, Any]]:
    result = env.reset(**reset)
    infos: dict[str, dict[str, Any]] = result[1] if isinstance(env, ParallelEnv) else env.infos
    return infos


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_same_seed_gives_same_episode_in_two_instances(env_id: str) -> None:
    a, b = _make(env_id), _make(env_id)
    for seed in range(10):
        assert _play(a, seed, actions_seed=seed) == _play(b, seed, actions_seed=seed)
    # and the seed stream after a seeded reset is the same
    assert _play(a, None, actions_seed=0) == _play(b, None, actions_seed=0)


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_interleaving_two_instances_does_not_change_either_stream(env_id: str) -> None:
    alone = _make(env_id)
    expected = [_play(alone, 1, 0)] + [_play(alone, None, i) for i in range(1, 10)]
    a, b = _make(env_id), _make(env_id)
    got = [_play(a, 1, 0)]
    _play(b, 2, 0)
    for i in range(1, 10):
        _play(b, None, 100 + i)
        got.append(_play(a, None, i))
    assert got == expected


def test_global_rngs_are_untouched() -> None:
    py_state, np_state = random.getstate(), np.random.get_state()
    for env_id in MULTIAGENT_ENV_IDS:
        env = _make(env_id)
        for seed in range(5):
            _play(env, seed, actions_seed=seed)
    assert random.getstate() == py_state
    assert all(
        np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
        for x, y in zip(np.random.get_state(), np_state, strict=True)
    )


def _continue(env: Any, actions_seed: int) -> list[Any]:
    """Play the rest of the current AEC episode with seeded actions (no reset)."""
    _seed_spaces(env, actions_seed)
    record = []
    for agent in env.agent_iter(500):
        observation, reward, terminated, truncated, info = env.last()
        action = None if terminated or truncated else env.action_space(agent).sample()
        record.append((agent, str(observation), reward, terminated, truncated, _metrics(info)))
        env.step(action)
    return record


def _first_step(env: Any, seed: int) -> bool:
    """Reset to ``seed`` and play one action; whether the episode goes on."""
    env.reset(seed=seed)
    _seed_spaces(env, seed)
    agent = env.agent_selection
    env.step(env.action_space(agent).sample())
    return not all(env.terminations.values())


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_get_state_set_state_continue_identically(env_id: str) -> None:
    if not llm_trainer.spec(env_id).capabilities.snapshot:
        pytest.skip(f"{env_id} declares no snapshots")
    if _is_parallel(env_id):
        pytest.skip("the snapshot check plays AEC envs")  # no parallel id is registered yet
    env = _make(env_id)
    base = env.unwrapped
    for seed in range(10):
        if not _first_step(env, seed):
            continue
        snapshot = base.get_state()
        kept = copy.deepcopy(snapshot)
        first = _continue(env, actions_seed=seed)
        assert snapshot == kept  # an immutable value: playing on did not change it
        base.set_state(snapshot)
        assert base.get_state() == snapshot
        assert _continue(env, actions_seed=seed) == first
        # restoring across episodes brings back the old one
        env.reset(seed=seed + 1000)
        base.set_state(snapshot)
        assert _continue(env, actions_seed=seed) == first
    with pytest.raises(TypeError):
        base.set_state({"not": "a state"})


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_pickle_round_trip_mid_episode_continues_identically(env_id: str) -> None:
    if _is_parallel(env_id):
        pytest.skip("the pickle check plays AEC envs")  # no parallel id is registered yet
    env = _make(env_id)
    for seed in range(5):
        if not _first_step(env, seed):
            continue
        clone = pickle.loads(pickle.dumps(env))
        assert _continue(clone, actions_seed=seed) == _continue(env, actions_seed=seed)
        assert _play(clone, None, 0) == _play(env, None, 0)  # the same seed stream after it


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
@given(
    seed=st.integers(0, 2**32 - 1),
    actions=st.lists(
        st.one_of(st.text(max_size=300), st.sampled_from(("", " ", "x" * 9000, "\x00\udcff"))),
        min_size=1,
        max_size=12,
    ),
)
def test_any_text_from_any_agent_never_raises(env_id: str, seed: int, actions: list[str]) -> None:
    env = _make(env_id)
    if _is_parallel(env_id):
        env.reset(seed=seed)
        for action in actions:
            if not env.agents:
                env.reset()
            observations, rewards, _, _, infos = env.step(dict.fromkeys(env.agents, action))
            for agent, observation in observations.items():
                _check_step(env, agent, observation, rewards[agent], infos[agent])
        return
    env.reset(seed=seed)
    for action in actions:
        while env.agents and (
            env.terminations[env.agent_selection] or env.truncations[env.agent_selection]
        ):
            env.step(None)  # the finished agents leave
        if not env.agents:
            env.reset()
        agent = env.agent_selection
        env.step(action)
        _check_step(env, agent, env.observe(agent), env.rewards[agent], env.infos[agent])


# -- making them ------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_make_multiagent_builds_the_declared_api_and_make_refuses_it(env_id: str) -> None:
    env = _make(env_id)
    assert isinstance(env, ParallelEnv if _is_parallel(env_id) else AECEnv)
    with pytest.raises(RegistryError, match=r"use llm_trainer\.make_multiagent\(\)"):
        llm_trainer.make(env_id)
    with pytest.raises(ConfigError, match=f"^{env_id}: unknown argument 'no_such_argument'"):
        _make(env_id, no_such_argument=1)


def test_make_multiagent_refuses_unknown_and_single_agent_ids_in_one_line() -> None:
    with pytest.raises(UnknownEnvError, match=r"Did you mean 'LLMTrainer/MALT-v0'"):
        llm_trainer.make_multiagent("LLMTrainer/MALT-v1")
    for env_id in single_agent_ids():
        with pytest.raises(RegistryError, match=r"gymnasium env; use llm_trainer\.make\(\)$"):
            llm_trainer.make_multiagent(env_id)


def test_every_concrete_pettingzoo_env_class_under_envs_is_registered() -> None:
    registered = {llm_trainer.spec(i).entry_point for i in multi_agent_ids()}
    found = set()
    for module_info in pkgutil.walk_packages(llm_trainer.envs.__path__, "llm_trainer.envs."):
        module = importlib.import_module(module_info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, AECEnv | ParallelEnv)
                and cls.__module__ == module.__name__
                and not inspect.isabstract(cls)
                and not name.startswith("_")
            ):
                found.add(f"{cls.__module__}:{name}")
    assert found, "no PettingZoo env classes found under envs/"
    assert found <= registered, f"env classes missing from registry.yaml: {found - registered}"


@pytest.mark.parametrize("env_id", MULTIAGENT_ENV_IDS)
def test_the_class_docstring_is_the_spec(env_id: str) -> None:
    doc = inspect.getdoc(llm_trainer.spec(env_id).load()) or ""
    for section in (
        "## Agents",
        "## Action Space",
        "## Observation Space",
        "## Rewards",
        "## Episode End",
        "## Arguments",
        "## Version History",
    ):
        assert section in doc, f"{env_id}: class docstring lacks {section!r}"
