"""``LLMTrainer/ResearchSprint-v0``: the phases, the rewards per role, code judged from outside
(bad code, timeouts, hard-coded answers), free-text goals, memory across sprints, snapshots,
determinism and the goal family (the PettingZoo checkers also run over every multi-agent id in
``tests/envs/multiagent/test_conformance.py``).

Code runs in the real sandbox (bubblewrap, L3); the tests that run code are skipped, saying
why, on a machine that cannot reach it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pettingzoo.test import api_test

import llm_trainer
from llm_trainer.agents.research_team import scripted_research_team
from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.multiagent.research import (
    AGENTS,
    ResearchSprintEnv,
    SprintEpisode,
    read_code,
    read_conclusion,
    read_result,
)
from llm_trainer.envs.multiagent.research_experiments import run
from llm_trainer.envs.multiagent.research_goals import (
    FALLBACKS,
    GOAL_KINDS,
    draw_goal,
    experiment_source,
    family_goal,
    goal_from_text,
    match_kind,
    reference,
)
from llm_trainer.sandbox import Sandbox, SandboxConfig, SandboxUnavailable

ENV_ID = "LLMTrainer/ResearchSprint-v0"
DISCUSS = "Let us measure it carefully."


def _sandbox_reason() -> str | None:
    try:
        Sandbox(SandboxConfig(min_level="L3", wall_s=5.0))
    except SandboxUnavailable as exc:
        return str(exc)
    return None


_NO_SANDBOX = _sandbox_reason()
needs_sandbox = pytest.mark.skipif(_NO_SANDBOX is not None, reason=f"no L3 sandbox: {_NO_SANDBOX}")


def _make(**overrides: Any) -> ResearchSprintEnv:
    env = llm_trainer.make_multiagent(ENV_ID, **overrides)
    assert isinstance(env, ResearchSprintEnv)
    return env


def _code_block(code: str) -> str:
    return f"Here is experiment.py:\n```python\n{code}\n```"


def _to_implementation(env: ResearchSprintEnv, seed: int, **reset: Any) -> None:
    """Reset and play the discussion and the plan with plain texts."""
    env.reset(seed=seed, **reset)
    for _ in range(4 * env.discussion_rounds):
        env.step(f"HYPOTHESIS: {DISCUSS}" if env.agent_selection == "researcher" else DISCUSS)
    assert env.agent_selection == "architect"
    env.step("PLAN: implement the goal exactly and print one RESULT line.")
    assert env.agent_selection == "coder"


def _returns(env: ResearchSprintEnv) -> dict[str, float]:
    """Step the finished agents out; what ``last()`` reported to each."""
    pending = {}
    while env.agents:
        agent = env.agent_selection
        _, reward, terminated, _, _ = env.last()
        assert terminated
        pending[agent] = float(reward)
        env.step(None)
    return pending


def _play(
    env: ResearchSprintEnv,
    team: dict[str, Any],
    seed: int,
    finals: dict[str, Any] | None = None,
    **reset: Any,
) -> SprintEpisode:
    """One sprint with a policy per role; ``finals`` gets each agent's last info."""
    env.reset(seed=seed, **reset)
    for agent in env.agent_iter():
        observation, _, terminated, truncated, info = env.last()
        if finals is not None:
            finals[agent] = info
        env.step(None if terminated or truncated else team[agent].act(observation, info))
    return env.get_state()


def _hard_coded(answer: bool) -> str:
    return f'import json\nprint("RESULT " + json.dumps({{"answer": {answer!r}}}))'


def _wrong_code(goal: Any) -> str:
    """The reference experiment, with its answer flipped (it still measures, per seed)."""
    return experiment_source(goal).replace(
        "    main(PARAMS)\n",
        "    import contextlib, io\n"
        "    buffer = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buffer):\n"
        "        main(PARAMS)\n"
        "    result = json.loads(buffer.getvalue().split(' ', 1)[1])\n"
        "    result['answer'] = not result['answer']\n"
        "    print('RESULT ' + json.dumps(result))\n",
    )


# -- PettingZoo and the spec ------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pettingzoo_api_test_passes() -> None:
    api_test(_make(), num_cycles=30)


def test_every_role_observes_the_goal_and_its_task_and_the_phases_follow_the_seed() -> None:
    env = _make()
    env.reset(seed=0)
    goal = env.goal
    assert env.possible_agents == list(AGENTS)
    assert goal.checkable
    order = []
    for _ in range(5):
        agent = env.agent_selection
        info = env.infos[agent]
        order.append((agent, info["phase"]))
        observation = env.observe(agent)
        assert goal.question in observation
        assert "Your task:" in observation
        assert info["goal"]["question"] == goal.question
        env.step(f"HYPOTHESIS: {DISCUSS}")
    assert order == [
        ("researcher", "discussion"),
        ("architect", "discussion"),
        ("coder", "discussion"),
        ("validator", "discussion"),
        ("architect", "action_plan"),
    ]
    assert env.agent_selection == "coder"
    assert env.infos["coder"]["phase"] == "implementation"
    assert "python experiment.py --seed SEED" in env.observe("coder")
    assert "Waiting for the coder" in env.observe("validator")
    assert env.get_state().hypothesis == DISCUSS


def test_bad_arguments_and_options_are_config_errors_naming_the_env() -> None:
    for kwargs, message in (
        ({"goal_kinds": ["optimiser"]}, r"unknown goal kind 'optimiser' \(did you mean"),
        ({"discussion_rounds": 0}, "discussion_rounds must be an int in"),
        ({"timeout_s": -1}, "timeout_s must be in"),
        ({"min_isolation": "L9"}, "min_isolation must be one of"),
    ):
        with pytest.raises(ConfigError, match=f"^{ENV_ID}: {message}"):
            _make(**kwargs)
    env = _make()
    with pytest.raises(ConfigError, match="reset option goal must be a non-empty text"):
        env.reset(seed=0, options={"goal": "  "})
    with pytest.warns(UserWarning, match="reset option.*'colour' ignored"):
        env.reset(seed=0, options={"colour": "red"})


def test_invalid_texts_are_penalised_and_not_passed_on() -> None:
    env = _make()
    env.reset(seed=1)
    env.step("   ")  # an empty researcher message
    assert env.rewards["researcher"] == pytest.approx(-0.1)
    assert env.infos["researcher"]["invalid_reason"] == "empty text"
    assert "(invalid action)" in env.observe("architect")
    for _ in range(4):
        env.step(DISCUSS)
    env.step("I will write it later.")  # the coder: no ```python block
    assert env.infos["coder"]["invalid_action"]
    assert "no ```python block" in env.infos["coder"]["invalid_reason"]
    assert env.infos["coder"]["phase"] == "implementation"  # a second turn of the budget
    env.step("still no code")
    assert env.agent_selection == "validator"
    env.step("Looks fine to me.")  # no CONCLUSION line: invalid, and the sprint ends
    returns = _returns(env)
    assert returns == {
        "researcher": pytest.approx(-0.1),  # it never acted again: reported at the end
        "architect": 0.0,
        "coder": pytest.approx(-0.1),  # the second penalty; the first came at its second turn
        "validator": pytest.approx(-0.1),
    }
    state = env.get_state()
    assert state.n_invalid == (1, 0, 2, 1)
    assert state.outcome is not None
    assert not state.outcome.execution_ok
    assert state.outcome.role_rewards == dict.fromkeys(AGENTS, 0.0)


# -- the scripted team, rewards per role -------------------------------------------------------


@needs_sandbox
@pytest.mark.parametrize("kind", GOAL_KINDS)
def test_the_scripted_team_succeeds_and_every_role_earns_its_reward(kind: str) -> None:
    env = _make(goal_kinds=[kind], render_mode="ansi")
    finals: dict[str, Any] = {}
    state = _play(env, scripted_research_team(), seed=3, finals=finals)
    assert state.goal.kind == kind
    outcome = state.outcome
    assert outcome is not None
    assert outcome.success
    assert outcome.truth == reference(state.goal).answer
    assert outcome.conclusion == outcome.truth
    assert dict(outcome.role_rewards) == dict.fromkeys(AGENTS, 1.0)
    execution = state.execution
    assert execution is not None
    assert execution.level == "L3"
    assert execution.result is not None
    assert state.reproduction is not None
    assert len(state.reproduction.runs) == 3
    assert {r.seed for r in state.reproduction.runs}.isdisjoint({execution.seed})
    # the code that ran is the reference experiment: its RESULT is the reference's, per seed
    expected = run(state.goal.params, execution.seed)
    assert dict(execution.result) == pytest.approx(expected)
    info = finals["validator"]
    assert info["success"]
    assert info["answer_correct"]
    assert info["isolation_level"] == "L3"
    assert "[outcome]" in (env.render() or "")


@needs_sandbox
def test_code_that_fails_or_cheats_is_scored_without_crashing() -> None:
    env = _make(goal_kinds=["optimizer"], timeout_s=1.0)
    goal = None
    cases = {
        "raises": ("raise RuntimeError('boom')", "exited with status 1"),
        "no result": ("print('loss went down')", "printed no 'RESULT {json}' line"),
        "two results": (_hard_coded(True) + "\n" + _hard_coded(True), "printed 2 RESULT lines"),
        "no answer": ('print("RESULT {\\"loss\\": 1.0}")', 'the RESULT has no "answer"'),
        "busy loop": ("while True:\n    pass", "timed out after 1 s"),
    }
    for name, (code, error) in cases.items():
        _to_implementation(env, seed=5)
        goal = env.goal
        env.step(_code_block(code))
        run_ = env.get_state().attempts[-1]
        assert not run_.ok, name
        assert run_.error is not None
        assert run_.error.startswith(error), (name, run_.error)
        assert env.agent_selection == "coder", name  # a second try
        assert "Your previous code failed" in env.observe("coder")
        env.step(_code_block(code))
        env.step("The experiment failed.\nCONCLUSION: inconclusive")
        outcome = env.get_state().outcome
        assert outcome is not None
        assert (outcome.execution_ok, outcome.reproduced, outcome.success) == (False, False, False)
        # an honest validator is right: there is no evidence
        assert dict(outcome.role_rewards) == {
            "researcher": 0.0,
            "architect": 0.0,
            "coder": 0.0,
            "validator": 1.0,
        }, name
    assert goal is not None
    # a hard-coded answer runs, but no seed changes it: not reproduced
    _to_implementation(env, seed=5)
    truth = reference(env.goal).answer
    env.step(_code_block(_hard_coded(truth)))
    assert env.get_state().attempts[-1].ok
    env.step(f"CONCLUSION: {'yes' if truth else 'no'}")
    state = env.get_state()
    assert state.reproduction is not None
    assert (
        state.reproduction.reason
        == "the RESULT is the same for every seed: draw the data from SEED"
    )
    assert state.outcome is not None
    assert dict(state.outcome.role_rewards) == {
        "researcher": 0.0,
        "architect": 0.0,
        "coder": 0.5,  # it ran
        "validator": 0.0,  # no reproduced evidence: 'inconclusive' was right
    }


@needs_sandbox
def test_wrong_but_reproducible_code_and_the_validators_verdict() -> None:
    env = _make(goal_kinds=["weight_decay"], reproduction_seeds=1)
    _to_implementation(env, seed=11)
    truth = reference(env.goal).answer
    env.step(_code_block(_wrong_code(env.goal)))
    state = env.get_state()
    assert state.attempts[-1].ok
    assert state.attempts[-1].answer is (not truth)
    for stated in (truth, not truth):
        env.set_state(state)  # the validator's turn, once for each verdict
        env.step(f"Checked the code.\nCONCLUSION: {'yes' if stated else 'no'}")
        outcome = env.get_state().outcome
        assert outcome is not None
        assert outcome.reproduced  # the runs agree with each other...
        assert not outcome.correct_evidence  # ...but not with the reference
        assert not outcome.success
        assert dict(outcome.role_rewards) == {
            "researcher": 0.0,
            "architect": 0.0,
            "coder": 0.5,
            # correct only against the reference: a validator that caught the bug
            "validator": 1.0 if stated == truth else 0.0,
        }


@needs_sandbox
def test_requirements_outside_the_allow_list_fail_the_run_not_the_env() -> None:
    env = _make(goal_kinds=["optimizer"])
    _to_implementation(env, seed=2)
    code, requirements, error = read_code(
        "```python\nprint(1)\n```\n```requirements\nsurely-not-allowed==1.0\n```"
    )
    assert (code, requirements, error) == ("print(1)\n", "surely-not-allowed==1.0\n", None)
    env.step("```python\nprint(1)\n```\n```requirements\nsurely-not-allowed==1.0\n```")
    run_ = env.get_state().attempts[-1]
    assert not run_.ok
    assert run_.error is not None
    assert run_.error.startswith("requirements:")
    assert "surely-not-allowed" in run_.error
    # an allowed requirement (numpy, already installed) is resolved outside and the code runs
    code = "import sys, json, numpy\nprint('RESULT ' + json.dumps({'answer': True}))"
    env.step(f"```python\n{code}\n```\n```requirements\nnumpy\n```")
    run_ = env.get_state().attempts[-1]
    assert run_.ok, run_.error
    assert env.get_state().requirements == "numpy\n"


@needs_sandbox
def test_a_free_text_goal_is_checked_for_reproducibility_only_and_may_answer_a_number() -> None:
    env = _make(reproduction_seeds=1)
    goal = "Measure how many steps SGD needs to halve the loss on a toy problem."
    _to_implementation(env, seed=4, options={"goal": goal})
    assert env.goal.kind is None
    assert env.goal.checking == "reproducibility-only"
    assert "Goal (reproducibility-only)" in env.observe("coder")
    code = (
        "import json, sys\nimport numpy as np\n"
        "seed = int(sys.argv[sys.argv.index('--seed') + 1])\n"
        "x = np.random.default_rng(seed).standard_normal(4)\n"
        'print("RESULT " + json.dumps({"answer": 12, "noise": float(x[0])}))'
    )
    env.step(_code_block(code))
    env.step("It takes twelve steps.\nCONCLUSION: 12")
    outcome = env.get_state().outcome
    assert outcome is not None
    assert outcome.truth is None
    assert outcome.success
    assert dict(outcome.role_rewards) == dict.fromkeys(AGENTS, 1.0)
    # the scripted team on free text: its (unrelated) experiment reproduces
    state = _play(env, scripted_research_team(), seed=4, options={"goal": goal})
    assert state.outcome is not None
    assert state.outcome.reproduced


@needs_sandbox
def test_same_seed_gives_the_same_sprint_and_snapshots_continue_identically() -> None:
    team = scripted_research_team()

    def record(state: SprintEpisode) -> Any:
        runs = (*state.attempts, *(state.reproduction.runs if state.reproduction else ()))
        return (state.goal, state.seeds, state.messages, state.outcome,
                [(r.seed, r.ok, r.result, r.stdout) for r in runs])  # fmt: skip

    a, b = (_make(goal_kinds=["optimizer"], reproduction_seeds=1) for _ in range(2))
    assert record(_play(a, team, 7)) == record(_play(b, team, 7))
    b.reset(seed=8)
    assert b.get_state().seeds != a.get_state().seeds  # another seed, another sprint
    # a snapshot before the coder's turn continues identically, also after a pickle round trip
    _to_implementation(a, seed=7)
    snapshot = a.get_state()
    clone = pickle.loads(pickle.dumps(a))
    first = _play_on(a, team)
    a.reset(seed=99)
    a.set_state(snapshot)
    assert _play_on(a, team) == first
    assert _play_on(clone, team) == first


def _play_on(env: ResearchSprintEnv, team: dict[str, Any]) -> Any:
    for agent in env.agent_iter():
        observation, _, terminated, truncated, info = env.last()
        env.step(None if terminated or truncated else team[agent].act(observation, info))
    state = env.get_state()
    return (state.messages, state.outcome, [r.result for r in state.attempts])


@needs_sandbox
def test_memory_across_sprints_shows_past_sprints_and_not_the_sprint_itself(
    tmp_path: Path,
) -> None:
    path = tmp_path / "knowledge.sqlite"
    env = _make(knowledge_path=str(path), goal_kinds=["optimizer"], reproduction_seeds=1)
    team = scripted_research_team()
    first = _play(env, team, seed=1, options={"sprint_id": "001"})
    assert first.memory == ()
    second = _play(env, team, seed=2, options={"sprint_id": "002"})
    assert len(second.memory) == 1
    assert second.memory[0].startswith("sprint 001 on: ")
    assert "| reproduced: yes | conclusion:" in second.memory[0]
    env.reset(seed=2, options={"sprint_id": "002"})  # the same sprint redone (after a kill)
    assert "Relevant past sprints:\n- sprint 001 on:" in env.observe("researcher")
    assert env.get_state().memory == second.memory  # its own earlier record is left out
    from llm_trainer.core.knowledge import KnowledgeGraph

    graph = KnowledgeGraph(path)
    assert graph.counts().nodes["experiment"] == 2
    [hit] = graph.related_problems(first.goal.question, 1)
    assert hit.solutions  # a successful sprint is a solution of its question
    env.close()


# -- parsing agent texts -----------------------------------------------------------------------


def test_conclusions_results_and_code_blocks_are_read_strictly() -> None:
    assert read_conclusion("CONCLUSION: no") == (False, None)
    assert read_conclusion("conclusion:   Inconclusive.") == ("inconclusive", None)
    assert read_conclusion("CONCLUSION: 3.5", numeric=True) == (3.5, None)
    assert read_conclusion("CONCLUSION: 3.5")[0] is None
    assert read_conclusion("CONCLUSION: yes\nCONCLUSION: no") == (False, None)  # the last one
    assert read_result('RESULT {"answer": 2}', numeric=True)[1:] == (2.0, None)
    assert read_result('RESULT {"answer": NaN}', numeric=True)[2] is not None
    assert read_result("RESULT [1, 2]")[2] == (
        "the RESULT line is not 'RESULT ' followed by a JSON object"
    )
    assert read_code("```py\nx = 1\n```")[0] == "x = 1\n"
    assert read_code("```python\n\ud800\n```")[2] == (
        "the code is not valid UTF-8 text (it holds a lone surrogate)"
    )


@needs_sandbox
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    code=st.one_of(
        st.text(max_size=80),
        st.sampled_from(["import os\nos._exit(0)", "print('RESULT ' * 3)", "1/0", "exit(3)"]),
    ),
    conclusion=st.text(max_size=40),
)
def test_any_code_and_any_conclusion_are_judged_without_raising(code: str, conclusion: str) -> None:
    env = _make(goal_kinds=["weight_decay"], timeout_s=5.0, reproduction_seeds=1)
    _to_implementation(env, seed=0)
    env.step(_code_block(code))
    if env.agent_selection == "coder":
        env.step(_code_block(code))
    env.step(f"{conclusion}\nCONCLUSION: {conclusion}")
    state = env.get_state()
    assert state.done
    assert state.outcome is not None
    assert all(0.0 <= r <= 1.0 for r in state.outcome.role_rewards.values())
    execution = env.infos["coder"]["execution"]
    assert execution is None or execution["ok"] or execution["error"]


# -- the goal family ---------------------------------------------------------------------------


def test_drawn_goals_have_robust_reference_answers_of_both_kinds() -> None:
    answers: dict[str, set[bool]] = {kind: set() for kind in GOAL_KINDS}
    for seed in range(60):
        goal = draw_goal(np.random.default_rng(seed))
        answer = reference(goal)
        assert answer.robust, goal.params
        assert goal.kind is not None
        answers[goal.kind].add(answer.answer)
    assert answers == {kind: {True, False} for kind in GOAL_KINDS}
    for params in FALLBACKS.values():
        assert reference(family_goal(params)).robust


def test_a_users_goal_text_becomes_a_family_question_when_it_names_a_kind() -> None:
    rng = np.random.default_rng(0)
    adam_sgd = goal_from_text("Does Adam reach a lower loss than SGD within 50 steps?", rng)
    assert adam_sgd.kind == "optimizer"
    assert (adam_sgd.params["a"][0], adam_sgd.params["b"][0]) == ("adam", "sgd")
    assert adam_sgd.text.startswith("Does Adam")
    halving = goal_from_text("Test if reducing hidden dimension by 50% impacts final loss", rng)
    assert halving.kind == "hidden_size"
    assert match_kind("Does weight decay 0.1 raise the loss by more than 25%?") == (
        "weight_decay",
        {"threshold": 0.25},
    )
    free = goal_from_text("Compare AdamW vs. Lion optimizer on small transformer training", rng)
    assert (free.kind, free.checking) == (None, "reproducibility-only")
