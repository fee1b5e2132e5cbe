"""CurriculumManager: promotion and demotion on success streams, one curriculum shared by every
slot of a lockstep rollout, several attributes, state round trips, and the gymnasium checker."""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import llm_trainer
from llm_trainer.agents import OracleAgent, RandomAgent
from llm_trainer.algorithms.rollout import EpisodeTask, collect, play_episodes
from llm_trainer.core.config import build
from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.spaces import UnicodeText
from llm_trainer.envs.wrappers import Curriculum, CurriculumConfig, CurriculumManager
from llm_trainer.envs.wrappers.curriculum import build_ladder

CALC = "LLMTrainer/Calculator-v0"


def _curriculum(**config: Any) -> Curriculum:
    return Curriculum.for_env(CurriculumConfig(**config), CALC)


def _feed(curriculum: Curriculum, outcomes: str) -> list[int]:
    """Record ``outcomes`` ('1' success, '0' failure) at the current level; the levels after
    each one."""
    levels = []
    for outcome in outcomes:
        curriculum.record(outcome == "1")
        levels.append(curriculum.level)
    return levels


def test_success_streaks_promote_and_failure_streaks_demote_one_level_at_a_time() -> None:
    curriculum = _curriculum(window=4, min_episodes=4)
    assert [dict(level) for level in curriculum.levels] == [
        {"difficulty": 1}, {"difficulty": 2}, {"difficulty": 3},
    ]  # fmt: skip
    assert _feed(curriculum, "1111") == [0, 0, 0, 1]
    assert _feed(curriculum, "1111") == [1, 1, 1, 2]
    assert _feed(curriculum, "11111111") == [2] * 8  # the top level stays the top
    assert _feed(curriculum, "0000") == [2, 2, 2, 1]
    assert _feed(curriculum, "0000") == [1, 1, 1, 0]
    assert _feed(curriculum, "0000") == [0] * 4  # and the bottom the bottom
    metrics = curriculum.as_metrics()
    assert metrics["curriculum/promotions"] == 2.0
    assert metrics["curriculum/demotions"] == 2.0
    assert metrics["curriculum/difficulty"] == 1.0


def test_a_level_moves_only_after_min_episodes_and_on_a_fresh_window() -> None:
    curriculum = _curriculum(window=4, min_episodes=6, promote_above=0.7, demote_below=0.1)
    # four successes fill the window (rate 1.0), but six episodes must be played first
    assert _feed(curriculum, "111111") == [0, 0, 0, 0, 0, 1]
    # the window was cleared at the move: level 1 is judged on its own six episodes (its
    # window holds the last four: rate 0.75 > 0.7 after the sixth)
    assert _feed(curriculum, "001111") == [1, 1, 1, 1, 1, 2]


def test_thresholds_are_strict_as_their_names_say() -> None:
    # window 10: exactly 7 successes is a rate of 0.7, not above 0.7
    curriculum = _curriculum(window=10, min_episodes=10)
    assert _feed(curriculum, "0111011101")[-1] == 0
    assert _feed(curriculum, "1")[-1] == 1  # 8 of the last 10
    # exactly 1 of 10 is a rate of 0.1, not below 0.1; none of the last 10 is
    assert _feed(curriculum, "1000000000")[-1] == 1
    assert _feed(curriculum, "0")[-1] == 0


def test_outcomes_of_episodes_played_at_a_left_level_do_not_count() -> None:
    curriculum = _curriculum(window=2, min_episodes=2)
    assert _feed(curriculum, "11") == [0, 1]
    # episodes that started at level 0 end after the move: tallied, not judged
    for _ in range(5):
        assert curriculum.record(False, level=0) == 0
    assert curriculum.level == 1
    assert curriculum.as_metrics()["curriculum/episodes_at_level"] == 0.0
    assert curriculum.get_state()["tally"][0] == {"episodes": 7, "successes": 2}


def test_hold_defers_every_move_to_the_end_of_the_block() -> None:
    curriculum = _curriculum(window=2, min_episodes=2)
    with curriculum.hold():
        for _ in range(6):
            assert curriculum.record(True) == 0
        assert curriculum.level == 0
    # applied in order at the end: two promotions (the later outcomes were played at level 0)
    assert curriculum.level == 1
    assert curriculum.get_state()["tally"][0]["episodes"] == 6


def test_state_round_trips_through_json_and_the_run_goes_on_identically() -> None:
    stream = "1101110111011100010001011111111100000000001111"
    whole = _curriculum(window=8, min_episodes=5)
    _feed(whole, stream)

    first = _curriculum(window=8, min_episodes=5)
    _feed(first, stream[:23])
    saved = json.loads(json.dumps(first.get_state()))
    resumed = _curriculum(window=8, min_episodes=5)
    resumed.set_state(saved)
    assert resumed.level == first.level
    assert resumed.get_state() == first.get_state()
    _feed(resumed, stream[23:])
    assert resumed.get_state() == whole.get_state()


def test_set_state_refuses_another_ladder_or_a_malformed_state() -> None:
    state = _curriculum().get_state()
    two_levels = Curriculum.for_env(CurriculumConfig(attributes={"difficulty": [1, 2]}), CALC)
    with pytest.raises(ValueError, match="same curriculum"):
        two_levels.set_state(state)
    with pytest.raises(ValueError, match="not a curriculum state"):
        _curriculum().set_state({"level": 1})
    with pytest.raises(ValueError, match="malformed"):
        _curriculum().set_state({**state, "level": 7})
    with pytest.raises(ValueError, match="version"):
        _curriculum().set_state({**state, "version": 99})


def test_the_wrapper_resets_at_the_level_and_reports_it_in_info() -> None:
    curriculum = _curriculum(window=3, min_episodes=3, start_level=1)
    env = CurriculumManager(llm_trainer.make(CALC), curriculum)
    oracle = OracleAgent(env)
    levels, difficulties = [], []
    for seed in range(9):
        observation, info = env.reset(seed=seed)
        levels.append(info["curriculum_level"])
        difficulties.append(info["difficulty"])
        done = False
        while not done:
            observation, _, terminated, truncated, info = env.step(oracle.act(observation, info))
            done = terminated or truncated
            assert info["curriculum_level"] == levels[-1]
        assert info["success"]
    assert levels == [1, 1, 1, 2, 2, 2, 2, 2, 2]
    assert difficulties == [2, 2, 2, 3, 3, 3, 3, 3, 3]
    # the same seed at the new level is the task of that difficulty
    direct = llm_trainer.make(CALC, difficulty=3)
    assert env.reset(seed=0)[0] == direct.reset(seed=0)[0]


def test_slots_of_a_lockstep_rollout_share_one_curriculum() -> None:
    config = CurriculumConfig(window=8, min_episodes=8)
    shared = Curriculum.for_env(config, CALC)
    trajectories = collect(
        CALC,
        OracleAgent,
        range(40),
        num_envs=4,
        wrap=lambda env: CurriculumManager(env, shared),
    )
    # 40 successes through one curriculum: promoted twice (8 episodes at level 0, 8 at 1),
    # and the episodes that started after a move were played at the new level
    assert shared.level == 2
    assert shared.as_metrics()["curriculum/promotions"] == 2.0
    played = [t.difficulty for t in trajectories]
    assert played[:8] == [1] * 8
    assert played[-8:] == [3] * 8
    assert played == sorted(played)

    # a curriculum per slot sees a quarter of the episodes: 10 each, one promotion
    wrappers: list[CurriculumManager[str, str]] = []

    def own(env: gym.Env[str, str]) -> CurriculumManager[str, str]:
        wrappers.append(CurriculumManager(env, config))
        return wrappers[-1]

    collect(CALC, OracleAgent, range(40), num_envs=4, wrap=own)
    assert [w.curriculum.level for w in wrappers] == [1, 1, 1, 1]


def test_a_lockstep_batch_under_hold_is_played_at_one_level() -> None:
    shared = _curriculum(window=2, min_episodes=2)
    envs = [CurriculumManager(llm_trainer.make(CALC), shared) for _ in range(2)]
    with shared.hold():
        played = play_episodes(envs, OracleAgent(envs), list(range(6)))
    assert [e.trajectory.difficulty for e in played] == [1] * 6
    assert shared.level == 1  # moved once the batch was over
    assert [e.final_info["curriculum_level"] for e in played] == [0] * 6


def test_an_explicit_difficulty_is_not_a_curriculum_episode() -> None:
    curriculum = _curriculum(window=1, min_episodes=1)
    env = CurriculumManager(llm_trainer.make(CALC), curriculum)
    [episode] = play_episodes([env], OracleAgent(env), [EpisodeTask(0, {"difficulty": 3})])
    assert episode.trajectory.difficulty == 3
    assert episode.final_info["curriculum_level"] is None
    assert curriculum.level == 0
    assert curriculum.get_state()["tally"] == [{"episodes": 0, "successes": 0}] * 3


def test_an_episode_cut_before_its_end_counts_as_a_failure() -> None:
    curriculum = _curriculum(window=2, min_episodes=2, start_level=1)
    env = CurriculumManager(llm_trainer.make(CALC), curriculum)
    # the engine cuts every episode after one action (a tool call: no answer yet)
    played = play_episodes([env], OracleAgent(env), [0, 1], max_turns=1)
    assert all(not e.trajectory.success for e in played)
    assert curriculum.get_state()["tally"][1]["episodes"] == 1  # the second is still open
    env.end_episode()
    assert curriculum.level == 0  # two failures at level 1
    env.end_episode()  # nothing open: nothing recorded
    assert sum(t["episodes"] for t in curriculum.get_state()["tally"]) == 2


def test_gymnasium_check_env_passes_on_a_wrapped_env() -> None:
    env = CurriculumManager(llm_trainer.make(CALC), CurriculumConfig(start_level=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker's note that the env is wrapped
        check_env(env, skip_render_check=True)
    _, info = env.reset(seed=0)
    assert info["difficulty"] == 2


def test_the_curriculum_draws_no_randomness_and_touches_no_global_rng() -> None:
    def run() -> dict[str, Any]:
        shared = _curriculum(window=4, min_episodes=4)
        collect(
            CALC,
            lambda envs: RandomAgent(seed=3),
            range(24),
            num_envs=3,
            wrap=lambda env: CurriculumManager(env, shared),
        )
        collect(CALC, OracleAgent, range(24), num_envs=3,
                wrap=lambda env: CurriculumManager(env, shared))  # fmt: skip
        return shared.get_state()

    python_state, numpy_state = random.getstate(), np.random.get_state()
    first = run()
    assert run() == first
    assert first["promotions"] >= 1
    assert random.getstate() == python_state
    assert all(
        np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True)
    )


# -- several attributes ------------------------------------------------------------------------


class SizedEnv(gym.Env[str, str]):
    """A one-step env with two difficulty attributes (reset options ``difficulty`` and
    ``size``): the answer must be ``difficulty * size``."""

    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium's API
    difficulties = (1, 2)

    def __init__(self) -> None:
        self.observation_space = UnicodeText(64)
        self.action_space = UnicodeText(64)
        self.options = {"difficulty": 1, "size": 1}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.options = {"difficulty": 1, "size": 1, **(options or {})}
        return f"{self.options['difficulty']} x {self.options['size']}", dict(self.options)

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        success = action == str(self.options["difficulty"] * self.options["size"])
        return "", float(success), True, False, {**self.options, "success": success}


def _solve(env: CurriculumManager[str, str], episodes: int, right: bool) -> list[tuple[int, int]]:
    seen = []
    for _ in range(episodes):
        observation, info = env.reset()
        seen.append((info["difficulty"], info["size"]))
        a, b = observation.split(" x ")
        env.step(str(int(a) * int(b)) if right else "wrong")
    return seen


def test_several_attributes_move_one_at_a_time_in_turn() -> None:
    config = CurriculumConfig(
        attributes={"difficulty": [1, 2], "size": [3, 5, 8]}, window=2, min_episodes=2
    )
    env = CurriculumManager(SizedEnv(), config)
    seen = _solve(env, 10, right=True)
    assert seen == [(1, 3), (1, 3), (2, 3), (2, 3), (2, 5), (2, 5)] + [(2, 8)] * 4
    assert env.curriculum.as_metrics()["curriculum/size"] == 8.0
    # a demotion undoes the latest promotion
    assert _solve(env, 3, right=False) == [(2, 8), (2, 8), (2, 5)]


def test_several_attributes_can_move_together() -> None:
    config = CurriculumConfig(
        attributes={"difficulty": [1, 2], "size": [3, 5, 8]},
        schedule="together",
        window=1,
        min_episodes=1,
    )
    assert [tuple(level.values()) for level in build_ladder(config)] == [(1, 3), (2, 5), (2, 8)]
    env = CurriculumManager(SizedEnv(), config)
    assert _solve(env, 4, right=True) == [(1, 3), (2, 5), (2, 8), (2, 8)]


def test_an_env_without_success_in_its_final_info_is_a_clear_error() -> None:
    class NoSuccess(SizedEnv):
        def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
            observation, reward, terminated, truncated, info = super().step(action)
            del info["success"]
            return observation, reward, terminated, truncated, info

    env = CurriculumManager(NoSuccess(), CurriculumConfig(attributes={"size": [1, 2]}))
    env.reset()
    with pytest.raises(ConfigError, match=r"no info\['success'\]"):
        env.step("1")


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"promote_above": 0.1, "demote_below": 0.5}, "demote_below .* must be below"),
        ({"window": 0}, r"curriculum\.window must be >= 1"),
        ({"promote_above": 1.5}, r"curriculum\.promote_above must be >= 0 and <= 1"),
        ({"attributes": {"difficulty": []}}, "non-empty list of integers"),
        ({"attributes": {"difficulty": [1, 1]}}, "duplicates"),
        ({"attributes": {"difficulty": [1, True]}}, "non-empty list of integers"),
    ],
)
def test_bad_settings_are_errors_naming_the_field(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(CurriculumConfig, config)


def test_a_ladder_the_env_cannot_play_is_an_error_when_the_config_loads() -> None:
    from llm_trainer.algorithms.grpo import GRPOSettings
    from llm_trainer.algorithms.ppo import PPOSettings

    with pytest.raises(ConfigError, match=r"ppo\.curriculum\.start_level: 3 is beyond"):
        build(PPOSettings, {"curriculum": {"start_level": 3}})
    with pytest.raises(ConfigError, match=r"grpo\.curriculum\.attributes\.difficulty: \[4\]"):
        build(GRPOSettings, {"curriculum": {"attributes": {"difficulty": [1, 4]}}})
    settings = build(PPOSettings, {"curriculum": {"window": 16, "min_episodes": 8}})
    assert settings.curriculum == CurriculumConfig(window=16, min_episodes=8)
    assert build(PPOSettings, {}).curriculum is None
    shared = Curriculum(CurriculumConfig(attributes={"difficulty": [2, 5]}))
    with pytest.raises(ConfigError, match=r"difficulties \[5\]"):
        CurriculumManager(llm_trainer.make(CALC), shared)


def test_the_default_ladder_is_the_registered_difficulties() -> None:
    levels: Sequence[Any] = Curriculum.for_env(None, "LLMTrainer/Search-v0").levels
    assert [level["difficulty"] for level in levels] == list(
        llm_trainer.spec("LLMTrainer/Search-v0").capabilities.difficulties
    )
    env = CurriculumManager(SizedEnv())  # no registry entry: the env's own difficulties
    assert [level["difficulty"] for level in env.curriculum.levels] == [1, 2]
