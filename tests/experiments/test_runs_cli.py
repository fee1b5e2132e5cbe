"""``llm-trainer train`` runs in the runs index, and ``llm-trainer runs list|show|compare|
reproduce|usage`` on them, through the real CLI and real tiny training runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llm_trainer.cli import app
from llm_trainer.experiments.index import ExperimentManager, Metric
from llm_trainer.experiments.reproduce import Reproduction, compare_runs
from llm_trainer.tests.experiments.tiny import CONFIG, TINY, set_flags

runner = CliRunner()
NAME = "tiny_sft"


def _last_json(output: str) -> Any:
    return json.loads(output.strip().splitlines()[-1])


def _train(out: Path, *extra: str) -> dict[str, Any]:
    args = ["train", "--config", str(CONFIG), "--json"]
    args += set_flags([*TINY, f"name={NAME}", f"output_dir={out}", *extra])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return {"summary": _last_json(result.output), "output": result.output}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An index holding an earlier run of the name (7 of 8 held-out successes, recorded before
    these tests: the baseline of the first tiny run, whose success is 0) and two tiny runs,
    at learning rates 1e-3 (run 2) and 2e-2 (run 3)."""
    pytest.importorskip("trl")
    out = tmp_path_factory.mktemp("runs")
    index = ExperimentManager(out / "index.sqlite")
    earlier = index.register(
        name=NAME, algorithm="sft", seed=0, config={"name": NAME, "algorithm": "gone_algo"},
        run_dir=out / "earlier", git_commit=None,
    )  # fmt: skip
    index.finish(earlier, "finished", {"success": Metric(0.875, episodes=8)})
    first = _train(out, "train.learning_rate=1e-3")
    second = _train(out, "train.learning_rate=2e-2")
    return {"out": out, "index": out / "index.sqlite", "first": first, "second": second}


def _runs(runs: dict[str, Any], *args: str) -> Any:
    return runner.invoke(app, ["runs", "--index", str(runs["index"]), *args])


def test_every_train_run_is_indexed_with_config_commit_metrics_and_usage(
    runs: dict[str, Any],
) -> None:
    summary = runs["first"]["summary"]
    run_dir = Path(summary["run_dir"])
    record = ExperimentManager(runs["index"]).find(str(run_dir))
    assert (record.id, record.name, record.algorithm, record.status) == (2, NAME, "sft", "finished")
    assert record.seed == 0
    stored = (run_dir / "config.yaml").read_text()
    import yaml

    assert record.config == yaml.safe_load(stored)
    recorded = json.loads((run_dir / "run.json").read_text())["git_commit"]
    if recorded is None:
        assert record.git_commit is None
    else:
        assert record.git_commit == recorded.split("+")[0]
        assert record.git_dirty == recorded.endswith("+dirty")
    success = record.metrics["success"]
    assert success.value == summary["success"]
    assert success.episodes == 8
    assert success.ci_low is not None
    assert success.ci_high is not None
    assert success.ci_low <= success.value <= success.ci_high
    assert record.metrics["final_loss"].value == summary["final_loss"]
    points = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    tokens = [p["num_input_tokens_seen"] for p in points if "num_input_tokens_seen" in p]
    assert record.usage.train_tokens == tokens[-1] > 0
    assert record.usage.seconds > 0
    assert record.usage.cpu_seconds > 0
    assert record.usage.cost_usd is None  # no API backend used
    assert record.ended is not None
    assert record.ended >= record.started


def test_a_run_keeps_a_status_file_and_tensorboard_scalars(runs: dict[str, Any]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = Path(runs["first"]["summary"]["run_dir"])
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["status"], status["run_id"], status["step"]) == ("finished", 2, 2)
    assert status["stages"]["sft"]["status"] == "finished"
    assert status["stages"]["sft"]["seconds"] > 0
    assert status["metrics"]["loss"] == runs["first"]["summary"]["final_loss"]
    assert status["usage"]["train_tokens"] > 0
    events = EventAccumulator(str(run_dir / "tensorboard" / "monitor"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"stages/sft/seconds", "summary/success", "usage/train_tokens"} <= tags
    assert events.Scalars("summary/final_loss")[-1].value == pytest.approx(
        runs["first"]["summary"]["final_loss"]
    )


def test_a_rate_that_falls_past_the_noise_floor_is_an_alert_line(runs: dict[str, Any]) -> None:
    alert = "ALERT regression: tiny_sft success 0.875 -> 0.000"
    assert alert in " ".join(runs["first"]["output"].split())
    status = json.loads((Path(runs["first"]["summary"]["run_dir"]) / "status.json").read_text())
    assert [a[: len(alert)] for a in status["alerts"]] == [alert]
    # the second run's baseline is the first (success 0 too): nothing to report
    assert "ALERT" not in runs["second"]["output"]


def test_runs_list_show_and_compare_through_the_cli(runs: dict[str, Any]) -> None:
    listed = _runs(runs, "list", "--json")
    assert listed.exit_code == 0, listed.output
    ids = [r["id"] for r in _last_json(listed.output)["runs"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert {1, 2, 3} <= set(ids)
    assert "tiny_sft" in listed.output
    newest = _runs(runs, "list", "--name", NAME, "--status", "finished", "--limit", "1", "--json")
    assert [r["id"] for r in _last_json(newest.output)["runs"]] == [max(ids)]
    assert _last_json(_runs(runs, "list", "--algorithm", "ppo", "--json").output) == {"runs": []}

    shown = _runs(runs, "show", "2", "--config", "--json")
    assert shown.exit_code == 0, shown.output
    record = _last_json(shown.output)
    assert record["metrics"]["success"]["episodes"] == 8
    assert record["status"] == "finished"
    assert "learning_rate: 0.001" in shown.output  # the config, as YAML

    compared = _runs(runs, "compare", "2", "3", "--json")
    assert compared.exit_code == 0, compared.output
    payload = _last_json(compared.output)
    assert payload["config_differences"] == {"train.learning_rate": [0.001, 0.02]}
    assert "config fields that differ" in compared.output
    losses = [r["metrics"]["final_loss"]["value"] for r in payload["runs"]]
    assert losses == [
        runs["first"]["summary"]["final_loss"],
        runs["second"]["summary"]["final_loss"],
    ]

    usage = _runs(runs, "usage", "--name", NAME, "--json")
    index = ExperimentManager(runs["index"])
    total = _last_json(usage.output)
    assert total["runs"] == len(index.runs(name=NAME))
    assert total["seconds"] == pytest.approx(sum(r.usage.seconds for r in index.runs()))
    assert total["train_tokens"] == sum(r.usage.train_tokens or 0 for r in index.runs())


def test_runs_reproduce_matches_within_the_noise_floor(runs: dict[str, Any]) -> None:
    result = _runs(runs, "reproduce", "3", "--json")
    assert result.exit_code == 0, result.output
    payload = _last_json(result.output)
    assert payload["matches"] is True
    assert "reproduces run 3" in payload["verdict"]
    checked = [c for c in payload["checks"] if c["within"] is not None]
    assert {c["metric"] for c in checked} >= {"success", "tool_accuracy", "format_correctness"}
    assert all(c["within"] for c in checked)
    assert all(c["noise_floor"] > 0 for c in checked)
    index = ExperimentManager(runs["index"])
    original, again = index.get(3), index.get(payload["reproduced"])
    assert again.labels.reproduces == 3
    assert again.run_dir != original.run_dir
    assert again.config == {**original.config}  # the stored config, seed and all
    # same commit, packages and machine: the training itself is repeated exactly
    assert again.metrics["final_loss"] == original.metrics["final_loss"]


def test_a_reproduction_outside_the_noise_floor_does_not_match(runs: dict[str, Any]) -> None:
    """The verdict on the real runs 2 and 3 with run 2's success changed to 8 of 8 episodes:
    0 of 8 is far outside that noise floor."""
    index = ExperimentManager(runs["index"])
    original, other = index.get(2), index.get(3)
    claimed = {**original.metrics, "success": Metric(1.0, 0.9, 1.0, 8)}
    checks = compare_runs(claimed, other.metrics)
    success = next(c for c in checks if c.key == "success")
    assert success.within is False
    assert success.noise_floor is not None
    assert 0 < success.noise_floor < 1
    reproduction = Reproduction(original, other, tuple(checks), ())
    assert not reproduction.matches
    assert "does NOT reproduce run 2: success outside the noise floor" in reproduction.verdict()


def test_runs_commands_fail_with_one_clear_line(runs: dict[str, Any], tmp_path: Path) -> None:
    missing = runner.invoke(app, ["runs", "--index", str(tmp_path / "none.sqlite"), "list"])
    assert missing.exit_code == 2
    assert "no runs index at" in missing.output
    assert not (tmp_path / "none.sqlite").exists()
    unknown = _runs(runs, "show", "99")
    assert unknown.exit_code == 2
    assert "no run 99 in" in unknown.output
    lonely = _runs(runs, "compare", "2")
    assert (lonely.exit_code, "at least two runs" in lonely.output) == (2, True)
    gone = _runs(runs, "reproduce", "1")  # its algorithm is no longer installed
    assert gone.exit_code == 2
    assert "the stored config of run 1: algorithm: unknown algorithm 'gone_algo'" in " ".join(
        gone.output.split()
    )
