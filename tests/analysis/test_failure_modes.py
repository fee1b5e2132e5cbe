"""Failure-mode mining: every mode from real envs' own info (scripted actions played through the
episode engine and the multi-agent coordinator), hand-made and old-format records, the
report, the chart, and ``llm-trainer analyze`` on a real run directory and real results."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import llm_trainer
from llm_trainer.agents.coordinator import MultiAgentCoordinator
from llm_trainer.algorithms.rollout import EpisodeTask, play_episodes
from llm_trainer.analysis.failure_modes import (
    LOOP_REPEATS,
    FailureMode,
    FailureReport,
    classify,
    classify_metrics,
    comparison_table,
    diagnose,
    mine,
    plot_failure_modes,
    reports_to_json,
)
from llm_trainer.benchmarks.leaderboard import load_all
from llm_trainer.benchmarks.runner import BenchConfig, run_bench
from llm_trainer.cli import app
from llm_trainer.core.records import METRIC_KEYS
from llm_trainer.core.store import Provenance, TrajectoryStore
from llm_trainer.core.trajectory import STEP_INFO_KEYS, Step, Trajectory, step_info

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMOKE = "tooluse-smoke-v0"


# -- scripted players ---------------------------------------------------------------------------


class Script:
    """Plays a fixed list of actions, built at reset from the env's task (what an oracle reads;
    here it lets a script fail in exactly one way)."""

    def __init__(self, env: Any, actions: Callable[[Any], Sequence[str]]) -> None:
        self.env, self.actions = env, actions
        self._queue: list[str] = []

    def reset(self, *, seed: int | None = None) -> None:
        self._queue = list(self.actions(self.env.unwrapped.task))

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        if not self._queue:
            raise RuntimeError("the script ran out of actions")
        return self._queue.pop(0)

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        return [self.act(o, i) for o, i in zip(observations, infos, strict=True)]


def play(
    env_id: str,
    actions: Callable[[Any], Sequence[str]],
    *,
    seed: int = 0,
    difficulty: int | None = None,
    max_turns: int | None = None,
) -> Trajectory:
    env = llm_trainer.make(env_id)
    try:
        options = {"difficulty": difficulty} if difficulty is not None else None
        [episode] = play_episodes(
            [env], Script(env, actions), [EpisodeTask(seed, options)], max_turns=max_turns
        )
    finally:
        env.close()
    return episode.trajectory


def call(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def plan(task: Any) -> list[str]:
    return [c.to_text() for c in task.plan]


def answer(text: str) -> str:
    return f"<answer>{text}</answer>"


CALCULATOR = "LLMTrainer/Calculator-v0"

# (id, env id, difficulty, actions from the task, turn limit, expected mode, evidence in the detail)
REAL_CASES: list[tuple[str, str, int | None, Callable[[Any], list[str]], int | None, str, str]] = [
    ("success", CALCULATOR, None, lambda t: [*plan(t), answer(t.answer)], None, "success", ""),
    ("malformed", CALCULATOR, None, lambda t: ["The answer is 42."], 1,
     "malformed_action", "expected <tool_call>"),
    # a malformed action, then a wrong answer: the earlier fault is the primary mode
    ("unclosed-tag", CALCULATOR, None, lambda t: ['<tool_call>{"name": "calculator"', *plan(t),
     answer(f"{t.answer}1")], None, "malformed_action", "unclosed tag"),
    ("unknown-tool", CALCULATOR, None, lambda t: [call("calculater", expression="1+1"),
     answer(t.answer)], None, "wrong_tool", "unknown tool 'calculater'"),
    ("no-tool-called", CALCULATOR, None, lambda t: [answer(t.answer)], None,
     "wrong_tool", "no tool was called"),
    # search instead of the weather tool the task needs (a right answer does not make it up)
    ("other-tool-instead", "LLMTrainer/MultiTool-v0", 2, lambda t: [call("search",
     query="weather in Paris"), answer(t.answer)], None, "wrong_tool", "called search"),
    ("missing-argument", CALCULATOR, None, lambda t: [call("calculator"), answer("0")], None,
     "bad_arguments", "missing required"),
    ("unparsable-argument", CALCULATOR, None, lambda t: [call("calculator",
     expression="two plus two"), answer("4")], None, "bad_arguments", "error:"),
    ("unknown-city", "LLMTrainer/Weather-v0", None, lambda t: [call("weather",
     city="Atlantis", date="2026-01-01"), answer("0")], None, "bad_arguments", "unknown city"),
    ("division-by-zero", CALCULATOR, None, lambda t: [call("calculator", expression="1 / 0"),
     answer("0")], None, "tool_error", "division by zero"),
    ("wrong-answer", CALCULATOR, None, lambda t: [*plan(t), answer(f"{t.answer}1")], None,
     "wrong_answer", "answered"),
    ("step-limit", CALCULATOR, None, lambda t: [call("calculator", expression=f"1 + {i}")
     for i in range(10)], None, "step_limit", "the step limit cut it"),
    ("turn-limit", CALCULATOR, None, lambda t: plan(t), 1, "step_limit", "no answer in 1 steps"),
    ("loop", CALCULATOR, None, lambda t: plan(t)[:1] * 10, None, "repeated_actions",
     f"{6}x <tool_call>"),
    ("knapsack-over-capacity", "LLMTrainer/Knapsack-v0", None,
     lambda t: [answer("1, 2, 3, 4, 5")] * 2, None, "infeasible_solution", "infeasible:"),
    ("knapsack-unknown-item", "LLMTrainer/Knapsack-v0", None,
     lambda t: [answer("99")] * 2, None, "infeasible_solution", "invalid: no item 99"),
    ("knapsack-unreadable", "LLMTrainer/Knapsack-v0", None,
     lambda t: [answer("the heavy ones")] * 2, None, "unreadable_answer", "unreadable:"),
    ("knapsack-suboptimal", "LLMTrainer/Knapsack-v0", None,
     lambda t: [answer("none")] * 2, None, "suboptimal", "score 0.00"),
    ("tsp-city-twice", "LLMTrainer/TSP-v0", None, lambda t: [answer("0, 0, 1")] * 2, None,
     "infeasible_solution", "invalid tour"),
    ("reasoning-wrong", "LLMTrainer/Reasoning-v0", None,
     lambda t: [answer("Nobody at all")] * 2, None, "wrong_answer", "wrong:"),
    ("writing-violates", "LLMTrainer/ConstrainedWriting-v0", None,
     lambda t: [answer("A short line.")] * 2, None, "constraint_violated", "words, not"),
    ("revisions-cut-short", "LLMTrainer/Knapsack-v0", None,
     lambda t: [answer("1, 2, 3, 4, 5")], 1, "infeasible_solution", "infeasible:"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("env_id", "difficulty", "actions", "max_turns", "mode", "evidence"),
    [case[1:] for case in REAL_CASES],
    ids=[case[0] for case in REAL_CASES],
)
def test_every_failure_mode_is_read_from_a_real_envs_own_info(
    env_id: str,
    difficulty: int | None,
    actions: Callable[[Any], list[str]],
    max_turns: int | None,
    mode: str,
    evidence: str,
) -> None:
    trajectory = play(env_id, actions, difficulty=difficulty, max_turns=max_turns)
    assert trajectory.error is None
    diagnosis = diagnose(trajectory)
    assert diagnosis.mode == mode, diagnosis
    assert evidence in diagnosis.detail, diagnosis
    assert classify(trajectory) == mode
    # what the store keeps is enough: the mode survives the JSON round trip
    assert classify(Trajectory.from_json(trajectory.to_json())) == mode


def test_a_policy_that_raises_is_an_episode_error() -> None:
    def broken(task: Any) -> list[str]:
        return []  # the script runs out at once: the policy raises

    trajectory = play(CALCULATOR, broken)
    assert trajectory.error is not None
    assert diagnose(trajectory) == diagnose(trajectory)  # deterministic
    assert diagnose(trajectory).mode == "episode_error"
    assert "ran out of actions" in diagnose(trajectory).detail


def test_steps_keep_the_envs_failure_info_small_and_frozen() -> None:
    t = play("LLMTrainer/Knapsack-v0", lambda t: ["garbage", answer("1, 2, 3, 4, 5")] * 2)
    first, second = t.steps[0], t.steps[1]
    assert first.info["invalid_reason"].startswith("expected <tool_call>")
    assert second.info["failures"][0].startswith("infeasible: total weight")
    assert second.info["score"] == 0.0
    assert set(second.info) <= set(STEP_INFO_KEYS)
    with pytest.raises(TypeError):
        second.info["score"] = 1.0  # type: ignore[index]
    assert all(len(json.dumps(dict(s.info))) < 600 for s in t.steps)


# -- MALT-v0 and Kuhn poker, through the coordinator -------------------------------------------


def malt_team(**texts: Callable[[Any], str]) -> Callable[[Sequence[Any]], dict[str, Script]]:
    """Scripted generator, verifier and refiner (one env), each writing ``texts[role](task)``."""
    default: dict[str, Callable[[Any], str]] = {
        "generator": lambda t: f"Worked out. {answer(t.answer)}",
        "verifier": lambda t: "The solution is correct.",
        "refiner": lambda t: answer(t.answer),
    }
    default.update(texts)
    return lambda envs: {
        role: Script(envs[0], lambda task, f=f: [f(task)]) for role, f in default.items()
    }


def play_malt(team: Callable[[Sequence[Any]], dict[str, Script]]) -> dict[str, Trajectory]:
    with MultiAgentCoordinator("LLMTrainer/MALT-v0", team, num_envs=1) as coordinator:
        [episode] = coordinator.play([0])
    assert episode.error is None
    return dict(episode.trajectories)


MALT_CASES = [
    ("team-succeeds", {}, {"generator": "success", "verifier": "success", "refiner": "success"}),
    (
        "refiner-gives-no-answer",
        {"refiner": lambda t: "I cannot decide."},
        {
            "generator": "refiner_invalid",
            "verifier": "refiner_invalid",
            "refiner": "refiner_invalid",
        },
    ),
    (
        "refiner-breaks-a-correct-solution",
        {"refiner": lambda t: answer("Nobody at all")},
        {"generator": "refiner_broke_correct", "refiner": "refiner_broke_correct"},
    ),
    (
        "nobody-repairs-a-wrong-solution",
        {"generator": lambda t: answer("Nobody at all"), "refiner": lambda t: answer("Nobody")},
        {"generator": "not_repaired", "verifier": "not_repaired", "refiner": "not_repaired"},
    ),
    (
        "generator-sends-nothing",
        {"generator": lambda t: "   ", "refiner": lambda t: answer("Nobody")},
        {"generator": "malformed_action", "verifier": "not_repaired"},
    ),
]


@pytest.mark.parametrize(
    ("texts", "expected"), [c[1:] for c in MALT_CASES], ids=[c[0] for c in MALT_CASES]
)
def test_malt_modes_come_from_the_envs_per_role_credit(
    texts: dict[str, Callable[[Any], str]], expected: dict[str, str]
) -> None:
    trajectories = play_malt(malt_team(**texts))
    for role, mode in expected.items():
        assert classify(trajectories[role]) == mode, (role, diagnose(trajectories[role]))


def test_a_lost_poker_hand_is_a_lost_game() -> None:
    from llm_trainer.envs.multiagent.kuhn import KuhnPokerEnv
    from llm_trainer.envs.multiagent.kuhn_solver import StrategyPolicy, always_bet_strategy

    bettor = StrategyPolicy(always_bet_strategy())
    players = {"player_0": bettor, "player_1": bettor}
    with MultiAgentCoordinator(KuhnPokerEnv, players) as coordinator:
        [episode] = coordinator.play([3])  # player_0 holds the K (the module's doctest)
    assert classify(episode.trajectories["player_0"]) == "success"
    diagnosis = diagnose(episode.trajectories["player_1"])
    assert diagnosis.mode == "lost_game"
    assert diagnosis.detail == "chips -2"


# -- hand-made and old-format records -----------------------------------------------------------

OK = {"format_ok": True, "tool_correct": True, "exec_ok": True, "answer_correct": False}
CALL = call("calculator", expression="6 * 7")


def trajectory(*steps: Step, error: str | None = None, source: str = "policy") -> Trajectory:
    return Trajectory(CALCULATOR, 0, 1, "", (), "What is 6 * 7?", steps, source, error)


def step(
    action: str,
    observation: str = "",
    role: str = "user",
    *,
    done: bool = False,
    cut: bool = False,
    metrics: Mapping[str, bool] = OK,
    **info: Any,
) -> Step:
    return Step(action, observation, role, 0.0, done, cut, metrics, info=info)


HAND_MADE = [
    ("success", trajectory(step(answer("42"), done=True, metrics={**OK, "success": True}))),
    ("episode_error", trajectory(step(CALL, "42", "tool"), error="RuntimeError: boom")),
    ("step_limit", trajectory()),
    ("malformed_action", trajectory(step("42", invalid_reason="expected <tool_call>"),
                                    step(answer("41"), done=True))),
    # an old record without info: the invalid action is found by parsing the actions again
    ("malformed_action", trajectory(step("42"), step(answer("41"), done=True,
                                    metrics={**OK, "format_ok": False}))),
    ("wrong_tool", trajectory(step(call("search", query="x"), "error: unknown tool 'search'",
                                   "tool"), step(answer("42"), done=True))),
    ("wrong_tool", trajectory(step(answer("42"), done=True,
                                   metrics={**OK, "tool_correct": False}))),
    ("bad_arguments", trajectory(step(call("calculator"), "error: missing required string "
                                      "argument 'expression'", "tool"),
                                 step(answer("0"), done=True))),
    ("tool_error", trajectory(step(CALL, "error: timed out after 1 s", "tool"),
                              step(answer("0"), done=True))),
    ("tool_error", trajectory(step(answer("0"), done=True, metrics={**OK, "exec_ok": False}))),
    ("repeated_actions", trajectory(*[step(CALL, "42", "tool")] * LOOP_REPEATS,
                                    step(answer("41"), done=True))),
    ("step_limit", trajectory(step(CALL, "42", "tool"), step(call("calculator", expression="1"),
                                                             "1", "tool", cut=True))),
    ("wrong_answer", trajectory(step(CALL, "42", "tool"), step(answer("41"), done=True))),
    ("unreadable_answer", trajectory(step(answer("x"), done=True, failures=("unreadable: 'x'",)))),
    ("infeasible_solution", trajectory(step(answer("1"), done=True,
                                            failures=["infeasible: weight 9 > 5"]))),
    ("wrong_answer", trajectory(step(answer("Ann"), done=True, failures=("wrong: not Ann",)))),
    ("constraint_violated", trajectory(step(answer("a"), done=True,
                                            failures=("1 lines, not 3", "banned words used")))),
    ("suboptimal", trajectory(step(answer("1"), done=True, score=0.8))),
    ("unsolved", trajectory(step(answer("42"), done=True, metrics={**OK, "answer_correct": True}))),
    ("lost_game", trajectory(step(answer("fold"), done=True, chips=-1))),
    ("refiner_invalid", trajectory(step("hm", done=True, agent="refiner", refiner_correct=False,
                                        invalid_reason="no <answer>"), source="policy:refiner")),
]  # fmt: skip


@pytest.mark.parametrize(("mode", "t"), HAND_MADE, ids=[f"{m}-{i}" for i, (m, _) in
                                                         enumerate(HAND_MADE)])  # fmt: skip
def test_hand_made_trajectories_get_the_documented_mode(mode: str, t: Trajectory) -> None:
    assert classify(t) == mode, diagnose(t)


def test_every_mode_is_documented_and_covered() -> None:
    covered = {m for m, _ in HAND_MADE} | {c[5] for c in REAL_CASES}
    covered |= {m for c in MALT_CASES for m in c[2].values()}
    assert covered == {m.value for m in FailureMode}
    for mode in FailureMode:
        assert mode.description
        assert f"``{mode.value}``" in _module_doc()


def _module_doc() -> str:
    import llm_trainer.analysis.failure_modes as module

    return module.__doc__ or ""


def test_old_records_without_info_load_and_keep_their_canonical_json() -> None:
    t = trajectory(step(CALL, "42", "tool"), step(answer("42"), done=True))
    data = t.to_dict()
    assert all("info" not in s for s in data["steps"])  # a dataset's version is unchanged
    with_info = trajectory(step(answer("1"), done=True, score=0.5, failures=("wrong: no",)))
    back = Trajectory.from_json(with_info.to_json())
    assert back == with_info
    assert dict(back.steps[0].info) == {"score": 0.5, "failures": ("wrong: no",)}


def test_metric_fallback_for_result_files_without_modes() -> None:
    metrics = dict.fromkeys(METRIC_KEYS, True)
    assert classify_metrics(metrics) == "success"
    assert classify_metrics(metrics, "ValueError: x") == "episode_error"
    assert classify_metrics({**metrics, "success": False, "exec_ok": False}) == "tool_error"
    assert classify_metrics({**metrics, "success": False}) == "unsolved"


# -- property tests -----------------------------------------------------------------------------

_text = st.text(max_size=60) | st.sampled_from(
    ["<answer>1</answer>", CALL, "error: unknown tool 'x'", "error: division by zero", ""]
)
_value = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | _text
_info = st.dictionaries(st.sampled_from(STEP_INFO_KEYS), _value | st.lists(_value, max_size=3))
_step = st.builds(
    Step,
    action=_text,
    observation=_text,
    role=st.sampled_from(["user", "tool", "assistant"]),
    reward=st.floats(-1, 1),
    terminated=st.booleans(),
    truncated=st.booleans(),
    metrics=st.dictionaries(st.sampled_from(METRIC_KEYS), st.booleans()),
    info=_info,
)


@given(steps=st.lists(_step, max_size=6), error=st.none() | _text, source=_text)
def test_classify_never_raises_and_gives_a_known_mode(
    steps: list[Step], error: str | None, source: str
) -> None:
    t = Trajectory("x", 0, 0, "", (), "", tuple(steps), source, error)
    assert classify(t) in {m.value for m in FailureMode}


@given(info=st.dictionaries(st.text(max_size=20), _value | st.lists(_value, max_size=20)))
def test_step_info_keeps_only_small_whitelisted_values(info: dict[str, Any]) -> None:
    kept = step_info(info)
    assert set(kept) <= set(STEP_INFO_KEYS)
    assert all(len(v) <= 200 for v in kept.values() if isinstance(v, str))
    Step("a", "o", "user", 0.0, False, False, info=kept)  # freezable


# -- the report and the chart -------------------------------------------------------------------


def real_trajectories() -> list[Trajectory]:
    return [play(c[1], c[3], difficulty=c[2], max_turns=c[4]) for c in REAL_CASES]


def test_mine_counts_rates_examples_breakdowns_and_trend() -> None:
    ts = real_trajectories()
    report = mine(ts, name="scripted", examples=2, windows=4)
    assert report.episodes == len(ts)
    assert sum(report.counts.values()) == len(ts)
    assert report.counts["success"] == 1
    assert report.failures == len(ts) - 1
    assert report.counts["wrong_tool"] == 3
    assert report.rate("wrong_tool") == pytest.approx(3 / len(ts))
    assert all(len(e) <= 2 for e in report.examples.values())
    assert "success" not in report.examples
    assert report.examples["tool_error"][0]["detail"] == "error: division by zero"
    assert sum(report.by_env["LLMTrainer/Knapsack-v0"].values()) == 5
    assert set(report.by_difficulty) == {1, 2}
    assert len(report.trend) == 4
    assert sum(sum(w.values()) for w in report.trend) == len(ts)
    modes = list(report.counts)
    assert modes == sorted(modes, key=lambda m: list(FailureMode).index(FailureMode(m)))
    text = report.table()
    for mode in report.counts:
        assert mode in text
    assert "trend over episode order" in text
    data = json.loads(json.dumps(reports_to_json([report])))
    assert data["reports"][0]["modes"]["wrong_tool"]["count"] == 3


def test_the_chart_is_a_png_with_several_reports_side_by_side(tmp_path: Path) -> None:
    ts = real_trajectories()
    one = mine(ts, name="scripted")
    two = mine(ts[::2], name="half")
    path = plot_failure_modes([one, two], tmp_path / "sub" / "chart.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert plot_failure_modes(one, tmp_path / "one.png").read_bytes().startswith(PNG_MAGIC)
    table = comparison_table([one, two])
    assert "scripted" in table
    assert "half" in table
    empty = FailureReport("nothing", 0, {})
    assert plot_failure_modes(empty, tmp_path / "empty.png").read_bytes().startswith(PNG_MAGIC)


# -- llm-trainer analyze ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results") / SMOKE
    for spec in ("random", "oracle"):
        run_bench(BenchConfig(SMOKE, spec, name=spec, out=out / f"{spec}.json", workers=1))
    return out


def analyze(*args: str) -> Any:
    return CliRunner().invoke(app, ["analyze", *map(str, args)])


def test_benchmark_records_name_the_failure_mode_of_each_failed_episode(results_dir: Path) -> None:
    episodes = json.loads((results_dir / "random.json").read_text())["episodes"]
    modes = {e["failure_mode"] for e in episodes}
    assert modes <= {m.value for m in FailureMode} - {"success"}
    assert {"malformed_action", "wrong_tool"} <= modes
    oracle = json.loads((results_dir / "oracle.json").read_text())["episodes"]
    assert not any("failure_mode" in e for e in oracle)


def test_analyze_a_result_file_prints_the_table_and_writes_the_chart(results_dir: Path) -> None:
    result = analyze(results_dir / "random.json", "--json")
    assert result.exit_code == 0, result.output
    assert "failure modes of random: 72 episodes, 72 failed" in result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    chart, report = Path(summary["chart"]), Path(summary["report"])
    assert chart == results_dir / "random.failure_modes.png"
    assert chart.read_bytes().startswith(PNG_MAGIC)
    data = json.loads(report.read_text())
    assert data["schema"] == "llm-trainer/failure-modes"
    assert data["reports"][0]["failures"] == 72


def test_analyze_a_results_folder_compares_the_agents(results_dir: Path, tmp_path: Path) -> None:
    result = analyze(results_dir, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    assert "failure modes by agent" in result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert [r["name"] for r in summary["reports"]] == ["oracle", "random"]
    assert summary["reports"][0]["counts"] == {"success": 72}
    assert (tmp_path / "out" / "failure_modes.png").read_bytes().startswith(PNG_MAGIC)
    # the reports beside results are not results: the leaderboard skips them, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results, _ = load_all(sorted(results_dir.glob("*.json")))
    assert len(results) == 2


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    store = TrajectoryStore(run / "trajectories.db")
    ts = real_trajectories()
    store.add("exp-train", ts[:10], Provenance(agent="script"))
    store.add("exp-rollouts", ts[10:], Provenance(agent="script"))
    return run


def test_analyze_a_run_directory_reads_every_dataset_or_one(run_dir: Path) -> None:
    result = analyze(run_dir)
    assert result.exit_code == 0, result.output
    assert f"failure modes of {run_dir.name}: {len(REAL_CASES)} episodes" in result.output
    assert (run_dir / "failure_modes.png").read_bytes().startswith(PNG_MAGIC)
    assert (run_dir / "failure_modes.json").is_file()
    one = analyze(run_dir, "--dataset", "rollouts")
    assert one.exit_code == 0, one.output
    assert f"failure modes of rollouts: {len(REAL_CASES) - 10} episodes" in one.output


@pytest.mark.parametrize(
    ("target", "extra", "expected"),
    [
        ("missing", [], "no such file or directory"),
        ("empty", [], "neither a run directory"),
        ("foreign.json", [], "not an llm-trainer benchmark result"),
        ("other.db", [], "not a trajectory store"),
        ("run", ["--dataset", "nope"], "no dataset 'nope'"),
    ],
)
def test_analyze_a_bad_path_is_one_line(
    run_dir: Path, tmp_path: Path, target: str, extra: list[str], expected: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "foreign.json").write_text('{"hello": 1}')
    (tmp_path / "other.db").write_bytes(b"not sqlite at all, just bytes" * 10)
    path = run_dir if target == "run" else tmp_path / target
    result = analyze(path, *extra)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert expected in errors[0]
    assert "Traceback" not in result.output
