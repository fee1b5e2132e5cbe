"""``llm-trainer research``: the scripted team runs sprints end to end and writes seed 004's
files; a run killed mid-sprint resumes (finished sprints kept, the half-written one redone);
clear errors. Code runs in the real sandbox (skipped, saying why, where it cannot)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from llm_trainer.cli import app
from llm_trainer.sandbox import Sandbox, SandboxConfig, SandboxUnavailable

runner = CliRunner()
ROLES = ("researcher", "architect", "coder", "validator")
#: What differs between two plays of the same sprint: the clock.
VOLATILE = frozenset({"started_at", "finished_at", "wall_seconds"})


def _sandbox_reason() -> str | None:
    try:
        Sandbox(SandboxConfig(min_level="L3", wall_s=5.0))
    except SandboxUnavailable as exc:
        return str(exc)
    return None


_NO_SANDBOX = _sandbox_reason()
pytestmark = pytest.mark.skipif(_NO_SANDBOX is not None, reason=f"no L3 sandbox: {_NO_SANDBOX}")


def _research(out: Path, *args: str) -> Result:
    return runner.invoke(
        app, ["research", "--agent", "scripted", "--out", str(out), "--no-progress", *args]
    )


def _summary(out: Path, sprint: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (out / f"sprint_{sprint}" / "sprint_summary.json").read_text()
    )
    return data


def _stable(value: Any) -> Any:
    """A summary without its clock readings."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def test_the_scripted_team_runs_sprints_end_to_end_and_writes_the_seeds_files(
    tmp_path: Path,
) -> None:
    out = tmp_path / "results"
    start = time.perf_counter()
    result = _research(out, "--sprints", "2", "--json")
    wall = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    assert wall < 30
    report = json.loads(result.output.strip().splitlines()[-1])
    assert [s["sprint_id"] for s in report["sprints"]] == ["001", "002"]
    assert report["successes"] == 2
    for sprint in ("001", "002"):
        folder = out / f"sprint_{sprint}"
        assert sorted(p.name for p in folder.iterdir()) == [
            "experiment.py",
            "requirements.txt",
            "sprint_summary.json",
        ]
        summary = _summary(out, sprint)
        # seed 004's shape
        assert summary["sprint_id"] == sprint
        assert summary["goal"] == summary["research_question"]
        phases = summary["phases"]
        assert list(phases) == ["discussion", "implementation", "validation"]
        assert list(phases["discussion"]["individual_responses"]) == list(ROLES)
        assert phases["discussion"]["action_plan"].startswith("PLAN:")
        assert phases["discussion"]["hypothesis"]
        code = (folder / "experiment.py").read_text()
        assert phases["implementation"]["code"] == code
        execution = phases["implementation"]["execution"]
        assert execution["success"]
        assert execution["stdout"].startswith("RESULT {")
        assert phases["validation"]["analysis"].endswith(
            f"CONCLUSION: {phases['validation']['conclusion']}"
        )
        assert phases["validation"]["execution_success"]
        assert phases["validation"]["reproduction"]["reproduced"]
        assert (folder / "requirements.txt").read_text().startswith("#")
        # our additions
        assert summary["isolation_level"] == "L3"
        assert summary["success"]
        assert summary["rewards"] == dict.fromkeys(ROLES, 1.0)
        assert summary["checking"] == "reference"
        assert summary["started_at"] <= summary["finished_at"]
        # the written experiment reproduces its recorded result, run again in the sandbox
        again = Sandbox(SandboxConfig(wall_s=60.0)).run(
            files={"experiment.py": code},
            argv=("experiment.py", "--seed", str(execution["seed"])),
        )
        assert again.stdout == execution["stdout"]
    assert _summary(out, "001")["memory"] == []
    assert _summary(out, "002")["memory"][0].startswith("sprint 001 on: ")
    assert (out / "knowledge.sqlite").is_file()


def test_a_killed_run_resumes_skipping_finished_sprints_and_redoing_a_half_written_one(
    tmp_path: Path,
) -> None:
    out = tmp_path / "results"
    assert _research(out, "--sprints", "2").exit_code == 0
    first = out / "sprint_001" / "sprint_summary.json"
    kept_bytes, kept_mtime = first.read_bytes(), first.stat().st_mtime_ns
    before = _stable(_summary(out, "002"))
    # a kill during sprint 002: its summary was never written, its code half written
    (out / "sprint_002" / "sprint_summary.json").unlink()
    code = out / "sprint_002" / "experiment.py"
    code.write_text(code.read_text()[:100])
    result = _research(out, "--sprints", "3")
    assert result.exit_code == 0, result.output
    assert "1 finished sprint(s)" in result.output
    assert "2 to run" in result.output
    assert "001 (kept)" in result.output
    assert first.read_bytes() == kept_bytes
    assert first.stat().st_mtime_ns == kept_mtime
    redone = _summary(out, "002")
    assert _stable(redone) == before  # the same seed gives the same sprint
    assert code.read_text() == redone["phases"]["implementation"]["code"]
    assert _summary(out, "003")["success"]


def test_a_sigkill_mid_run_loses_no_finished_sprint(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [sys.executable, "-m", "llm_trainer.cli", "research", "--agent", "scripted",
               "--out", str(out), "--sprints", "3", "--no-progress"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "sprint_001" / "sprint_summary.json"
    try:
        deadline = time.monotonic() + 60
        while not first.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert first.exists()
    kept = first.read_bytes()
    json.loads(kept)  # whole, never half-written
    result = _research(out, "--sprints", "3")
    assert result.exit_code == 0, result.output
    assert first.read_bytes() == kept
    assert all(_summary(out, s)["success"] for s in ("001", "002", "003"))


def test_a_free_text_goal_is_checked_for_reproducibility_only(tmp_path: Path) -> None:
    goal = "Compare AdamW vs. Lion optimizer on small transformer training"
    result = _research(tmp_path, "--goal", goal)
    assert result.exit_code == 0, result.output
    summary = _summary(tmp_path, "001")
    assert summary["goal"] == goal
    assert summary["goal_kind"] is None
    assert summary["checking"] == "reproducibility-only"
    assert "only reproducibility was checked" in summary["note"]
    assert summary["phases"]["validation"]["reference_answer"] is None
    assert summary["reproduced"]


def test_a_family_goal_in_words_is_checked_against_the_reference(tmp_path: Path) -> None:
    result = _research(tmp_path, "--goal", "Does Adam reach a lower loss than SGD?")
    assert result.exit_code == 0, result.output
    summary = _summary(tmp_path, "001")
    assert (summary["goal_kind"], summary["checking"]) == ("optimizer", "reference")
    assert summary["goal"] == "Does Adam reach a lower loss than SGD?"
    assert "Adam (lr=" in summary["research_question"]
    validation = summary["phases"]["validation"]
    assert validation["conclusion"] == validation["reference_answer"]


def test_bad_input_gets_one_line_errors_and_exit_code_2(tmp_path: Path) -> None:
    result = _research(tmp_path, "--agent", "coderr=scripted")
    assert result.exit_code == 2
    assert "unknown role 'coderr' (did you mean 'coder'?)" in result.output
    result = _research(tmp_path, "--agent", "coder=no-such-agent")
    assert result.exit_code == 2
    assert "unknown agent spec 'no-such-agent'" in result.output
    assert _research(tmp_path / "a").exit_code == 0
    result = _research(tmp_path / "a", "--goal", "Is Adam better than SGD?")
    assert result.exit_code == 2
    assert "holds a sprint of another run (goal: None there" in result.output
    assert "use another --out" in result.output
