"""The suite runner: same seeds, same results in any process; resume after a kill; records."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_trainer.agents.factory import make_agent
from llm_trainer.benchmarks.results import (
    SCHEMA_VERSION,
    deterministic_view,
    load_result,
)
from llm_trainer.benchmarks.runner import BenchConfig, partial_path, run_bench
from llm_trainer.benchmarks.suites import suite_spec
from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.registration import make
from tests.benchmarks.conftest import POLICIES, SMOKE

ROOT = Path(__file__).resolve().parents[2]


def _view(path: Path) -> dict[str, object]:
    return deterministic_view(json.loads(path.read_text()))


def test_identical_seeds_give_identical_results_across_processes(tmp_path: Path) -> None:
    """The random agent (stochastic, re-seeded per episode) in this process, in two forkserver
    workers, in two spawned workers, and in a separate CLI process: every field equal but
    timing and provenance."""
    runs = {
        "inline": BenchConfig(SMOKE, "random", out=tmp_path / "a.json", workers=1),
        "forkserver": BenchConfig(SMOKE, "random", out=tmp_path / "b.json", workers=2),
        "spawn": BenchConfig(
            SMOKE, "random", out=tmp_path / "c.json", workers=2, start_method="spawn"
        ),
    }
    views = {name: _view(run_bench(config).path) for name, config in runs.items()}
    cli = tmp_path / "d.json"
    subprocess.run(
        [sys.executable, "-m", "llm_trainer.cli", "bench", "--suite", SMOKE, "--agent", "random",
         "--out", str(cli), "--workers", "2", "--no-progress"],
        check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    views["cli"] = _view(cli)
    assert views["inline"] == views["forkserver"] == views["spawn"] == views["cli"]
    episodes = views["inline"]["episodes"]
    assert isinstance(episodes, list)
    assert len(episodes) == 72
    # Not trivially equal: the random agent's episodes differ from each other.
    assert len({json.dumps(e["metrics"]) + str(e["action_chars"]) for e in episodes}) > 10


def test_result_file_has_the_versioned_schema_records_and_provenance(
    smoke_results: dict[str, Path],
) -> None:
    data = json.loads(smoke_results["half-oracle"].read_text())
    assert data["schema"] == "llm-trainer/bench-result"
    assert data["schema_version"] == SCHEMA_VERSION
    policies = ROOT / "tests" / "benchmarks" / "policies.py"
    assert data["agent"] == {
        "name": "half-oracle",
        "spec": f"{POLICIES}:half_oracle",
        # The policy's module source: an edited policy is another agent.
        "fingerprint": hashlib.sha256(policies.read_bytes()).hexdigest()[:16],
    }
    assert data["suite_hash"] == suite_spec(SMOKE).hash
    assert data["suite"]["seeds"] == [0, 1, 2]
    record = data["episodes"][0]
    assert set(record) - {"failure_mode"} == {
        "env_id", "difficulty", "seed", "index", "env_seed", "metrics", "reward", "turns",
        "action_chars", "observation_chars", "prompt_tokens", "completion_tokens", "seconds",
        "error",
    }  # fmt: skip
    # a failed episode names its primary failure mode; a success has none
    for episode in data["episodes"]:
        assert ("failure_mode" in episode) == (not episode["metrics"]["success"])
    assert record["turns"] >= 1
    assert record["observation_chars"] > 0
    assert record["seconds"] > 0
    provenance = data["provenance"]
    for key in ("git_commit", "packages", "hardware", "seeds", "python", "started_at"):
        assert provenance[key], key
    assert provenance["packages"]["gymnasium"]
    assert provenance["hardware"]["cpu_count"] >= 1
    summary = data["summary"]
    for name in ("success", "tool_accuracy", "format_correctness", "execution_success",
                 "answer_correctness", "turns", "chars", "seconds"):  # fmt: skip
        block = summary["metrics"][name]
        assert block["ci_low"] <= block["mean"] <= block["ci_high"], name
        assert "noise_floor" in block
        assert "seed_std" in block
    assert "tokens" not in summary["metrics"]  # scripted agents count no tokens
    assert 0.3 < summary["metrics"]["success"]["mean"] < 0.7
    assert set(summary["by_env"]) == set(suite_spec(SMOKE).envs)
    assert set(summary["by_difficulty"]) == {"1", "2", "3"}
    assert len(summary["by_cell"]) == 12


def test_interrupted_run_resumes_without_repeating_or_losing_episodes(tmp_path: Path) -> None:
    out = tmp_path / "slow.json"
    partial = partial_path(out)
    spec = f"{POLICIES}:slow_random"
    command = [
        sys.executable, "-m", "llm_trainer.cli", "bench", "--suite", SMOKE, "--agent", spec,
        "--out", str(out), "--workers", "2", "--no-progress",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if partial.exists() and partial.read_text().count("\n") >= 21:
            break
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the CLI and its workers, mid-run
    process.wait()
    assert not out.exists(), "the run finished before it could be interrupted"
    lines = partial.read_text().splitlines()
    before = {
        (r["env_id"], r["difficulty"], r["seed"], r["index"]): r for r in map(json.loads, lines[1:])
    }
    assert 20 <= len(before) < 72
    with partial.open("a") as f:  # a torn last line, as a kill mid-write would leave
        f.write('{"env_id": "LLMTrainer/Calc')

    run = run_bench(BenchConfig(SMOKE, spec, out=out, workers=2))
    assert run.episodes_resumed == len(before)
    assert run.episodes_played == 72 - len(before)
    assert not partial.exists()
    records = json.loads(out.read_text())["episodes"]
    keys = [(r["env_id"], r["difficulty"], r["seed"], r["index"]) for r in records]
    assert len(keys) == len(set(keys)) == 72
    for record in records:  # resumed episodes were kept as recorded, not played again
        key = (record["env_id"], record["difficulty"], record["seed"], record["index"])
        if key in before:
            assert record == before[key]
    # And the result is the one an uninterrupted run gives.
    clean = run_bench(BenchConfig(SMOKE, spec, out=tmp_path / "clean.json", workers=2))
    assert _view(out)["episodes"] == _view(clean.path)["episodes"]
    assert _view(out)["summary"] == _view(clean.path)["summary"]


def test_a_finished_result_is_reused_and_another_configuration_is_refused(
    tmp_path: Path,
) -> None:
    out = tmp_path / "oracle.json"
    first = run_bench(BenchConfig(SMOKE, "oracle", out=out, workers=1))
    again = run_bench(BenchConfig(SMOKE, "oracle", out=out, workers=1))
    assert again.reused
    assert again.episodes_played == 0
    assert again.result.episodes == first.result.episodes
    with pytest.raises(ConfigError, match=r"another configuration.*--fresh"):
        run_bench(BenchConfig(SMOKE, "random", out=out, workers=1))
    fresh = run_bench(BenchConfig(SMOKE, "random", out=out, workers=1, fresh=True))
    assert not fresh.reused
    assert fresh.result.agent == "random"
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"


def test_a_partial_file_of_another_configuration_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    partial_path(out).write_text('{"config_hash": "something else"}\n')
    with pytest.raises(ConfigError, match="interrupted run of another configuration"):
        run_bench(BenchConfig(SMOKE, "oracle", out=out, workers=1))


def test_failing_episodes_are_recorded_and_the_suite_goes_on(tmp_path: Path) -> None:
    run = run_bench(BenchConfig(SMOKE, f"{POLICIES}:crashing", out=tmp_path / "c.json", workers=2))
    failed = [r for r in run.result.episodes if r.error is not None]
    assert failed
    assert len(failed) < 72
    assert all(r.error == "RuntimeError: backend unavailable" for r in failed)
    assert all(not any(r.metrics.values()) for r in failed)
    assert run.result.summary["errors"] == len(failed)
    ok = [r for r in run.result.episodes if r.error is None]
    assert all(r.metrics["success"] for r in ok)


def test_token_counts_are_summed_when_the_policy_reports_usage(tmp_path: Path) -> None:
    run = run_bench(
        BenchConfig(SMOKE, f"{POLICIES}:counting_oracle", out=tmp_path / "t.json", workers=1)
    )
    for record in run.result.episodes:
        # CountingOracle reports len(observation) prompt and len(action) completion tokens.
        assert record.completion_tokens == record.action_chars
        assert record.prompt_tokens is not None
        assert record.prompt_tokens > 0
    assert run.result.summary["metrics"]["tokens"]["mean"] > 0


def test_agent_specs() -> None:
    env = make("LLMTrainer/Calculator-v0")
    assert type(make_agent(f"{POLICIES}:half_oracle", env)).__name__ == "HalfOracle"
    for spec, message in [
        ("python:no_such_module_xyz:make", "cannot import module"),
        (f"{POLICIES}:no_such_factory", "has no callable 'no_such_factory'"),
        (f"{POLICIES}:not_a_policy", "lacks the Policy methods"),
        ("python:nocolon", "must be 'python:package.module:factory'"),
        ("oracle:3", "takes no argument"),
        ("sb3:/no/such/model.zip", "does not exist"),
        ("randon", "did you mean 'random'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            make_agent(spec, env)
    with pytest.raises(ConfigError, match="unknown agent spec"):
        BenchConfig(SMOKE, "gpt-9")  # refused before any work
    with pytest.raises(ConfigError, match="workers"):
        BenchConfig(SMOKE, "oracle", workers=0)


def test_load_result_rejects_incomplete_and_foreign_files(
    tmp_path: Path, smoke_results: dict[str, Path]
) -> None:
    data = json.loads(smoke_results["oracle"].read_text())
    data["episodes"] = data["episodes"][:-1]
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="1 missing"):
        load_result(tmp_path / "short.json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="not an llm-trainer benchmark result"):
        load_result(tmp_path / "other.json")
    data = json.loads(smoke_results["oracle"].read_text())
    data["schema_version"] = 99
    (tmp_path / "future.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="schema version 99 is not supported"):
        load_result(tmp_path / "future.json")


def _default_sigint() -> None:
    """Give the child the default Ctrl-C behaviour even when this test process ignores SIGINT
    (a shell starts background jobs with SIGINT ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_finished_episodes_and_says_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "slow.json"
    partial = partial_path(out)
    spec = f"{POLICIES}:slow_random"
    process = subprocess.Popen(
        [sys.executable, "-m", "llm_trainer.cli", "bench", "--suite", SMOKE, "--agent", spec,
         "--out", str(out), "--no-progress"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=_default_sigint,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.read_text().count("\n") >= 6):
        assert time.monotonic() < deadline
        assert process.poll() is None
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "run the same command again to resume" in output
    assert not out.exists()
    kept = partial.read_text().count("\n") - 1
    assert kept >= 5
    run = run_bench(BenchConfig(SMOKE, spec, out=out, workers=2))
    assert run.episodes_resumed == kept
    assert run.episodes_played + run.episodes_resumed == 72


def test_two_runs_never_write_the_same_result(tmp_path: Path) -> None:
    from llm_trainer.benchmarks.runner import PartialFile

    out = tmp_path / "r.json"
    holder = PartialFile(partial_path(out), {})
    holder.lock()  # as a running `llm-trainer bench` holds it
    try:
        with pytest.raises(ConfigError, match="another llm-trainer bench is writing"):
            run_bench(BenchConfig(SMOKE, "oracle", out=out, workers=1))
    finally:
        holder.close()
    assert run_bench(BenchConfig(SMOKE, "oracle", out=out, workers=1)).episodes_played == 72


def test_a_dead_worker_is_an_error_not_a_hang(tmp_path: Path) -> None:
    from llm_trainer.core.errors import RolloutError

    start = time.monotonic()
    with pytest.raises(RolloutError, match=r"worker process died \(exit code 3\)"):
        run_bench(BenchConfig(SMOKE, f"{POLICIES}:dying", out=tmp_path / "d.json", workers=2))
    assert time.monotonic() - start < 30
    assert not (tmp_path / "d.json").exists()
