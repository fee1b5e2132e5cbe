"""``LLMTrainer/MALT-v0``: the protocol, the team reward from the refiner, per-role credit,
invalid text, rounds, snapshots and seeding (the PettingZoo checkers run in
``test_conformance.py``)."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import pytest
from gymnasium.error import ResetNeeded
from hypothesis import given
from hypothesis import strategies as st

import llm_trainer
from llm_trainer.agents import MALTOracle
from llm_trainer.core.errors import ConfigError, RegistryError
from llm_trainer.core.records import METRIC_KEYS
from llm_trainer.envs.multiagent import AGENTS, MALT_FAMILIES, PROTOCOL, MALTEnv, MALTEpisode
from llm_trainer.envs.spaces import TextObservation

ENV_ID = "LLMTrainer/MALT-v0"
WRONG = "<answer>no such answer</answer>"


def _make(**overrides: Any) -> MALTEnv:
    env = llm_trainer.make_multiagent(ENV_ID, **overrides)
    assert isinstance(env, MALTEnv)
    return env


def _round(env: MALTEnv, generator: str, verifier: str, refiner: str) -> None:
    for agent, action in zip(AGENTS, (generator, verifier, refiner), strict=True):
        assert env.agent_selection == agent
        env.step(action)


def _finish(env: MALTEnv) -> dict[str, float]:
    """Step the finished agents out; what ``last()`` reported to each (its pending reward)."""
    pending = {}
    while env.agents:
        agent = env.agent_selection
        _, reward, terminated, truncated, _ = env.last()
        assert terminated
        assert not truncated
        pending[agent] = float(reward)
        env.step(None)
    return pending


def _right(env: MALTEnv) -> str:
    return f"<answer>{env.task.answer}</answer>"


def _play_team(env: MALTEnv, seed: int, team: dict[str, Any]) -> dict[str, float]:
    """One episode with a policy per agent; each agent's return (the sum of ``last()``)."""
    env.reset(seed=seed)
    returns = dict.fromkeys(env.possible_agents, 0.0)
    for agent in env.agent_iter():
        observation, reward, terminated, truncated, info = env.last()
        returns[agent] += reward
        env.step(None if terminated or truncated else team[agent].act(observation, info))
    return returns


# -- the protocol -----------------------------------------------------------------------------


def test_each_role_observes_what_the_protocol_declares() -> None:
    env = _make()
    env.reset(seed=3)
    question = f"Question:\n{env.task.statement}"
    assert env.protocol == PROTOCOL
    assert list(PROTOCOL) == env.possible_agents == list(AGENTS)
    assert env.observe("generator") == question
    assert env.observe("verifier") == question  # nothing else written yet
    env.step("SOLUTION: 2 + 2 = 4. <answer>4</answer>")
    solution = "Proposed solution:\nSOLUTION: 2 + 2 = 4. <answer>4</answer>"
    assert env.observe("verifier") == f"{question}\n\n{solution}"
    env.step("CRITIQUE: the question asks something else.")
    critique = "Critique:\nCRITIQUE: the question asks something else."
    assert env.observe("refiner") == f"{question}\n\n{solution}\n\n{critique}"
    assert env.observe("verifier") == f"{question}\n\n{solution}"  # never the critique
    assert env.observe("generator") == question  # later roles' texts of its round: not shown
    observation, *_ = env.last()
    assert isinstance(observation, TextObservation)
    assert env.observation_space("refiner").contains(observation)


def test_the_system_prompt_names_each_role_and_the_answer_format() -> None:
    env = _make()
    env.reset(seed=0)
    for agent in AGENTS:
        info = env.infos[agent]
        assert agent in info["system_prompt"]
        assert info["agent"] == agent
        assert info["role"] == "user"
        assert info["tools"] == ()
    assert "<answer>" in env.infos["refiner"]["system_prompt"]


# -- rewards and per-role credit --------------------------------------------------------------


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_the_scripted_team_reaches_the_maximum_reward_on_100_seeds(difficulty: int) -> None:
    threshold = llm_trainer.spec(ENV_ID).reward_threshold
    env = _make(difficulty=difficulty)
    team = MALTOracle.team(env)
    for seed in range(100):
        returns = _play_team(env, seed, team)
        assert returns == dict.fromkeys(AGENTS, threshold), (seed, returns)


@pytest.mark.parametrize("family", sorted(MALT_FAMILIES))
def test_the_scripted_team_solves_every_family(family: str) -> None:
    env = _make(family=family)
    team = MALTOracle.team(env)
    for seed in range(10):
        env.reset(seed=seed)
        for agent in AGENTS:
            observation, _, _, _, info = env.last()
            env.step(team[agent].act(observation, info))
        for agent in AGENTS:
            info = env.infos[agent]
            assert all(info[k] for k in METRIC_KEYS), (family, seed, agent, info)
            assert info["generator_correct"]
            assert info["refiner_correct"]
        assert env.rewards == dict.fromkeys(AGENTS, 1.0)


def test_the_reward_is_the_refiners_answer_not_the_generators() -> None:
    env = _make()
    env.reset(seed=1)
    _round(env, f"Easy. {_right(env)}", "Looks right.", WRONG)
    assert env.rewards == dict.fromkeys(AGENTS, 0.0)
    info = env.infos["generator"]
    assert info["generator_correct"]
    assert info["generator_score"] == 1.0
    assert not info["refiner_correct"]
    assert not info["answer_correct"]
    assert not info["success"]
    assert info["role_rewards"] == {"generator": 1.0, "verifier": 0.0, "refiner": 0.0}
    assert info["failures"]  # why the final answer failed
    env.reset(seed=1)
    _round(env, f"Hmm. {WRONG}", "Step 1 is wrong.", f"So: {_right(env)}")
    assert env.rewards == dict.fromkeys(AGENTS, 1.0)
    info = env.infos["verifier"]
    assert (info["generator_correct"], info["refiner_correct"], info["answer_correct"]) == (
        False,
        True,
        True,
    )
    assert info["role_rewards"] == {"generator": 0.0, "verifier": 1.0, "refiner": 1.0}
    assert info["score"] == 1.0
    assert info["criteria"] == {"correct": 1.0}


def test_a_generator_without_an_answer_gets_no_credit_and_no_penalty() -> None:
    env = _make()
    env.reset(seed=2)
    env.step("I only have a plan, no answer yet.")
    info = env.infos["generator"]
    assert not info["invalid_action"]
    assert info["format_ok"]
    assert not info["generator_correct"]
    assert env.rewards["generator"] == 0.0


def test_a_knapsack_team_is_rewarded_with_the_score_of_its_answer() -> None:
    env = _make(family="knapsack")
    for seed in range(20):
        env.reset(seed=seed)
        _round(env, "x", "y", "<answer>1</answer>")
        score = env.infos["refiner"]["score"]
        assert 0.0 <= score <= 1.0
        assert env.rewards == dict.fromkeys(AGENTS, score)


def test_each_agents_return_is_the_team_score_less_its_own_penalties() -> None:
    env = _make()
    env.reset(seed=4)
    _round(env, "", "fine", _right(env))
    assert _finish(env) == {"generator": 0.9, "verifier": 1.0, "refiner": 1.0}


# -- invalid and oversized actions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("", "empty text"),
        (" \n\t", "empty text"),
        ("x" * 8193, "action longer than 8192 characters"),
    ],
)
def test_empty_or_oversized_text_is_invalid_and_not_passed_on(action: str, reason: str) -> None:
    env = _make()
    env.reset(seed=5)
    env.step(action)
    info = env.infos["generator"]
    assert info["invalid_action"]
    assert info["invalid_reason"] == reason
    assert not info["format_ok"]
    assert env.rewards == {"generator": -0.1, "verifier": 0.0, "refiner": 0.0}
    assert env.observe("verifier").endswith("Proposed solution:\n(none)")
    env.step(action)
    assert env.infos["verifier"]["invalid_reason"] == reason
    assert env.observe("refiner").endswith("Critique:\n(none)")
    env.step(action)  # the refiner's invalid action still ends the episode, with score 0
    assert all(env.terminations.values())
    assert env.rewards == {"generator": 0.0, "verifier": 0.0, "refiner": -0.1}  # this step's
    assert _finish(env) == dict.fromkeys(AGENTS, -0.1)  # each penalised once, at its own step


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("The answer is 5.", "the refiner must give its answer as <answer>...</answer>"),
        ("<answer>1</answer> or <answer>2</answer>", "more than one <answer> block"),
        ("</answer>5<answer>", "unclosed tag"),
        ("<answer>5", "unclosed tag"),
    ],
)
def test_a_refiner_without_exactly_one_answer_block_is_invalid(action: str, reason: str) -> None:
    env = _make()
    env.reset(seed=6)
    _round(env, _right(env), "Correct.", action)
    info = env.infos["refiner"]
    assert info["invalid_action"]
    assert info["invalid_reason"].startswith(reason)
    assert not info["answer_correct"]
    assert env.rewards == {"generator": 0.0, "verifier": 0.0, "refiner": -0.1}


def test_a_refiner_may_reason_before_its_answer() -> None:
    env = _make()
    env.reset(seed=6)
    _round(env, "?", "?", f"The critique is right; checking again gives\n{_right(env)}\nDone.")
    assert not env.infos["refiner"]["invalid_action"]
    assert env.rewards == dict.fromkeys(AGENTS, 1.0)


def test_non_text_actions_raise_type_error_and_finished_agents_step_none() -> None:
    env = _make()
    with pytest.raises(ResetNeeded):
        env.step("too early")
    env.reset(seed=0)
    for action in (None, 42, b"bytes", ["list"]):
        with pytest.raises(TypeError, match="action must be a str"):
            env.step(action)  # type: ignore[arg-type]
    _round(env, "a", "b", WRONG)
    with pytest.raises(ValueError, match="only valid action is None"):
        env.step("more text")
    _finish(env)
    assert env.agents == []


# -- rounds (max_cycles) ----------------------------------------------------------------------


def test_later_rounds_show_the_generator_the_previous_round_and_only_the_last_answer_counts() -> (
    None
):
    env = _make(max_cycles=2)
    env.reset(seed=7)
    _round(env, f"first try {WRONG}", "first critique", _right(env))
    assert not any(env.terminations.values())
    assert env.rewards == dict.fromkeys(AGENTS, 0.0)  # a right answer, but not the last one
    assert env.infos["refiner"]["round"] == 2
    assert env.infos["refiner"]["answer_correct"]  # the latest final answer, so far
    observation = env.observe("generator")
    assert "Your previous solution:\nfirst try" in observation
    assert "The verifier's critique of it:\nfirst critique" in observation
    assert f"The refiner's answer then:\n{_right(env)}" in observation
    assert "first try" not in env.observe("verifier")  # a new round: the solution is not written
    _round(env, "second try", "second critique", WRONG)
    assert all(env.terminations.values())
    assert env.rewards == dict.fromkeys(AGENTS, 0.0)
    assert not env.infos["generator"]["answer_correct"]
    assert env.get_state().turn == 6


def test_render_ansi_is_the_transcript_and_does_not_grow_across_episodes() -> None:
    env = _make(render_mode="ansi")
    assert _make().render() is None
    lengths = []
    for seed in range(100):
        env.reset(seed=seed)
        _round(env, "solution", "", WRONG)
        transcript = env.render()
        assert transcript is not None
        assert transcript.splitlines()[0] == f"[question] {env.task.statement}"
        assert "[round 1: verifier] (none)" in transcript
        lengths.append(len(transcript))
    assert max(lengths[-20:]) <= 2 * max(lengths[:20])


# -- snapshots and seeding --------------------------------------------------------------------


def test_snapshots_continue_identically_and_are_immutable_values() -> None:
    env = _make(max_cycles=2)
    env.reset(seed=8)
    env.step(f"draft {WRONG}")
    snapshot = env.get_state()
    assert isinstance(snapshot, MALTEpisode)
    hash(snapshot)  # immutable all the way down: cheap to keep many (MCTS, MALT trees)
    actions = ["critique", _right(env), "again", "critique 2", WRONG]

    def rest() -> list[Any]:
        out = []
        for action in actions:
            env.step(action)
            out.append((env.observe(env.agent_selection), dict(env.rewards), dict(env.infos)))
        return out

    first = rest()
    env.set_state(snapshot)
    assert env.get_state() == snapshot
    assert env.agent_selection == "verifier"
    assert rest() == first
    # a branch: the same snapshot, another refinement
    env.set_state(snapshot)
    env.step("critique")
    env.step(_right(env))
    branch = env.get_state()
    assert branch.rounds[0].final == _right(env)
    assert snapshot.rounds == (snapshot.rounds[0],)  # the snapshot did not move


def test_a_finished_episode_restores_with_its_agents_still_to_leave() -> None:
    env = _make()
    env.reset(seed=9)
    _round(env, "a", "b", _right(env))
    done = env.get_state()
    assert _finish(env) == dict.fromkeys(AGENTS, 1.0)
    env.set_state(done)
    assert env.agents == list(AGENTS)
    assert _finish(env) == dict.fromkeys(AGENTS, 1.0)


def test_same_seed_gives_the_same_problem_and_seeds_give_different_problems() -> None:
    a, b = _make(), _make()
    statements = set()
    for seed in range(50):
        a.reset(seed=seed)
        b.reset(seed=seed)
        assert a.task == b.task
        assert a.observe("generator") == b.observe("generator")
        statements.add(a.task.statement)
    assert len(statements) >= 40


def test_the_problem_comes_from_the_family_like_the_single_agent_env() -> None:
    # MALT-v0 and Reasoning-v0 draw from the same family with the same seeding.
    single = llm_trainer.make("LLMTrainer/Reasoning-v0")
    env = _make()
    for seed in range(10):
        prompt, _ = single.reset(seed=seed)
        env.reset(seed=seed)
        assert env.task.statement == prompt


# -- arguments --------------------------------------------------------------------------------


def test_bad_arguments_are_one_line_config_errors_naming_the_env() -> None:
    cases = [
        ({"family": "reasonin"}, "unknown family 'reasonin' (did you mean 'reasoning'?)"),
        ({"difficulty": 4}, "allowed difficulties: 1, 2, 3"),
        ({"max_cycles": 0}, "max_cycles must be an int in [1, 10]"),
        ({"max_cycles": True}, "max_cycles must be an int"),
        ({"max_text_length": 10}, "max_text_length"),
        ({"render_mode": "human"}, "render_mode"),
        ({"config": {"kind": ["arithmetic"]}}, "unknown key 'kind' (did you mean 'kinds'?)"),
        ({"dificulty": 2}, "unknown argument 'dificulty' (did you mean 'difficulty'?)"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError) as caught:
            llm_trainer.make_multiagent(ENV_ID, **overrides)
        text = str(caught.value)
        assert text.startswith(f"{ENV_ID}: "), text
        assert message in text, text
        assert "\n" not in text


def test_difficulty_is_a_reset_option_and_unknown_options_are_ignored_with_a_warning() -> None:
    env = _make()
    for difficulty in (1, 2, 3):
        env.reset(seed=0, options={"difficulty": difficulty})
        assert env.infos["generator"]["difficulty"] == difficulty
        assert env.task.difficulty == difficulty
    with pytest.raises(ConfigError, match="allowed difficulties"):
        env.reset(seed=0, options={"difficulty": 9})
    with pytest.warns(UserWarning, match="reset option"):
        env.reset(seed=0, options={"options": 1})


def test_llm_trainer_make_and_gymnasium_refuse_the_multi_agent_id() -> None:
    with pytest.raises(RegistryError, match="make_multiagent"):
        llm_trainer.make(ENV_ID)
    with pytest.raises(gym.error.Error):
        gym.make(ENV_ID)


# -- any text, from any role ------------------------------------------------------------------


@st.composite
def role_texts(draw: st.DrawFn) -> str:
    answer = draw(st.one_of(st.text(max_size=40), st.sampled_from(("RIGHT", "0", ""))))
    block = f"<answer>{answer}</answer>"
    return draw(
        st.one_of(
            st.text(max_size=200),
            st.just(block),
            st.builds(lambda a, b: f"{a}{block}{b}", st.text(max_size=50), st.text(max_size=50)),
            st.builds(lambda n: block * n, st.integers(2, 4)),
            st.sampled_from(("<answer>", "</answer>", "", " ", "x" * 8193, "\udcff")),
        )
    )


@given(seed=st.integers(0, 2**32 - 1), texts=st.lists(role_texts(), min_size=3, max_size=9))
def test_any_text_from_any_role_never_raises_and_rewards_follow_the_table(
    seed: int, texts: list[str]
) -> None:
    env = _make(max_cycles=3)
    env.reset(seed=seed)
    for text in texts:
        agent = env.agent_selection
        env.step(text.replace("RIGHT", env.task.answer))
        info = env.infos[agent]
        assert set(info) >= set(METRIC_KEYS)
        penalty = -0.1 if info["invalid_action"] else 0.0
        assert (info["invalid_reason"] is not None) == info["invalid_action"]
        done = all(env.terminations.values())
        team = info["score"] if done else 0.0
        assert math.isclose(env.rewards[agent], penalty + team, abs_tol=1e-12)
        for other in env.agents:
            assert env.observation_space(other).contains(env.observe(other))
        if done:
            assert env.get_state().turn == 9
            _finish(env)
            env.reset()
