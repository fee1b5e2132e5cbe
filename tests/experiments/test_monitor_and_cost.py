"""MonitoringService (the status file follows metrics.jsonl, is never half-written, records
failed stages and alerts) and the usage of a run (tokens from its metrics, API tokens metered
and priced, a failed run recorded as failed) through the real ``track_run`` hook."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from llm_trainer.algorithms.config import load_experiment
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import RunDir
from llm_trainer.experiments.cost import (
    METER,
    PriceTable,
    TokenUsage,
    tokens_from_metrics,
    usage_from_openai_reply,
)
from llm_trainer.experiments.index import ExperimentManager, Metric
from llm_trainer.experiments.monitor import MonitoringService
from llm_trainer.experiments.noise import rate_interval
from llm_trainer.experiments.tracking import track_run
from llm_trainer.tests.experiments.tiny import CONFIG, TINY


def _status(path: Path) -> dict[str, object]:
    status = json.loads((path / "status.json").read_text())
    assert isinstance(status, dict)
    return status


def _wait_for(condition: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_status_file_follows_metrics_jsonl_as_the_run_writes_it(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    monitor = MonitoringService(tmp_path, name="m", log=lambda _: None, tensorboard=False,
                                min_interval=0.0)  # fmt: skip
    monitor.watch(interval=0.02)
    run.log_metrics(1, {"loss": 1.0})
    _wait_for(lambda: _status(tmp_path)["step"] == 1)
    monitor.stop()
    with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 2, "loss": 0.')  # a line still being written
    assert monitor.poll() == 0
    assert _status(tmp_path)["step"] == 1
    with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('5, "eval/success": 0.25}\n')
    assert monitor.poll() == 1
    monitor.finish("finished")
    status = _status(tmp_path)
    assert (status["status"], status["step"]) == ("finished", 2)
    assert status["metrics"] == {"loss": 0.5, "eval/success": 0.25}
    assert status["ended"] is not None


def test_readers_never_see_a_half_written_status_file(tmp_path: Path) -> None:
    monitor = MonitoringService(tmp_path, name="m", log=lambda _: None, tensorboard=False,
                                min_interval=0.0)  # fmt: skip
    seen, broken = [0], []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                seen[0] = max(seen[0], int(_status(tmp_path)["step"] or 0))  # type: ignore[call-overload]
            except ValueError as exc:
                broken.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for step in range(120):
        monitor.step(step, {"loss": 1.0 / (step + 1), **{f"m{i}": float(i) for i in range(50)}})
    done.set()
    reader.join()
    assert broken == []
    assert seen[0] > 0


def test_a_failed_stage_and_a_regression_are_recorded(tmp_path: Path) -> None:
    lines: list[str] = []
    monitor = MonitoringService(tmp_path, name="cycle", log=lines.append, tensorboard=False)
    with monitor.stage("generate"):
        pass
    with pytest.raises(RuntimeError, match="boom"), monitor.stage("train"):
        raise RuntimeError("boom")
    stages = _status(tmp_path)["stages"]
    assert isinstance(stages, dict)
    assert [(name, s["status"]) for name, s in stages.items()] == [
        ("generate", "finished"),
        ("train", "failed"),
    ]
    baseline = {"success": Metric(0.8, episodes=200), "tool_accuracy": Metric(0.9, episodes=200)}
    now = {"success": Metric(0.5, episodes=200), "tool_accuracy": Metric(0.88, episodes=200)}
    alerts = monitor.check_regressions(now, baseline, "iteration 3")
    assert [a.metric for a in alerts] == ["success"]  # 0.02 is within the noise floor
    assert lines == [alerts[0].line()]
    assert lines[0].startswith("ALERT regression: cycle success 0.800 -> 0.500 (-0.300")
    assert _status(tmp_path)["alerts"] == lines


def test_tokens_of_several_trainers_are_summed_from_metrics_jsonl(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for step, seen in ((1, 100), (2, 200), (1, 50)):  # a second trainer starts counting again
        run.log_metrics(step, {"num_input_tokens_seen": seen})
    run.log_metrics(1, {"generator/num_input_tokens_seen": 250})
    run.log_metrics(1, {"rollout/generated_tokens": 10.0})
    run.log_metrics(2, {"rollout/generated_tokens": 20.0})
    assert tokens_from_metrics(run.path / "metrics.jsonl") == (200 + 50 + 250, 30)
    assert tokens_from_metrics(tmp_path / "none.jsonl") == (None, None)


def test_a_price_table_file_is_read_strictly(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        '"openai:https://api.example.com/*#small": {prompt_per_1k: 0.5, completion_per_1k: 1.5}\n'
        '"openai:http://127.0.0.1:*": {}\n'
    )
    table = PriceTable.load(prices)
    report = table.cost(
        {
            "openai:https://api.example.com/v1#small": TokenUsage(4000, 1000),
            "openai:http://127.0.0.1:8000/v1#tiny": TokenUsage(100, 100),
            "openai:https://other.example.com/v1#big": TokenUsage(10, 10),
        }
    )
    assert report.usd == pytest.approx(4 * 0.5 + 1 * 1.5)
    assert report.unpriced == ("openai:https://other.example.com/v1#big",)
    prices.write_text('"openai:*": {prompt_per_1k: -1}\n')
    with pytest.raises(ConfigError, match=r"prices\.yaml\['openai:\*'\]\.prompt_per_1k must be"):
        PriceTable.load(prices)


def _tiny(out: Path, name: str) -> tuple[object, RunDir]:
    config = load_experiment(CONFIG, [*TINY, f"name={name}", f"output_dir={out}"])
    return config, RunDir.create(out, name, config.to_dict(), config.seed)


def test_a_runs_api_tokens_are_metered_priced_and_indexed(tmp_path: Path) -> None:
    (tmp_path / "prices.yaml").write_text(
        '"openai:http://api.test/v1#m": {prompt_per_1k: 2.0, completion_per_1k: 4.0}\n'
    )
    METER.record("openai:http://api.test/v1#m", TokenUsage(999, 999))  # before the run: not its
    config, run = _tiny(tmp_path, "metered")
    lines: list[str] = []
    with track_run(config, run, log=lines.append) as tracked:  # type: ignore[arg-type]
        # what the OpenAI-compatible backend records from each reply's usage object
        for reply in (
            {"usage": {"prompt_tokens": 1500, "completion_tokens": 250, "total_tokens": 1750}},
            {"usage": {"prompt_tokens": 500, "completion_tokens": 250}},
            {"choices": []},  # a reply without usage counts nothing
        ):
            usage = usage_from_openai_reply(reply)
            if usage is not None:
                METER.record("openai:http://api.test/v1#m", usage)
        METER.record("openai:http://unpriced/v1#x", TokenUsage(10, 0))
        tracked.finish({"success": 0.5})
    record = ExperimentManager(tmp_path / "index.sqlite").find(str(run.path))
    assert (record.status, record.usage.api_prompt_tokens) == ("finished", 2010)
    assert record.usage.api_completion_tokens == 500
    assert record.usage.cost_usd == pytest.approx(2000 / 1000 * 2.0 + 500 / 1000 * 4.0)
    interval = rate_interval(0.5, 8)  # the summary's rate, with its bootstrap interval
    assert record.metrics["success"] == Metric(0.5, interval.low, interval.high, 8)
    assert any("no price for openai:http://unpriced/v1#x" in line for line in lines)
    assert _status(run.path)["usage"] == record.usage.as_dict()


def test_a_run_that_raises_is_indexed_as_failed_with_its_error(tmp_path: Path) -> None:
    config, run = _tiny(tmp_path, "broken")
    with (
        pytest.raises(RuntimeError, match="out of cheese"),
        track_run(config, run, log=lambda _: None),  # type: ignore[arg-type]
    ):
        raise RuntimeError("out of cheese")
    record = ExperimentManager(tmp_path / "index.sqlite").find(str(run.path))
    assert (record.status, record.error) == ("failed", "RuntimeError: out of cheese")
    assert record.ended is not None
    status = _status(run.path)
    assert (status["status"], status["error"]) == ("failed", "RuntimeError: out of cheese")
    assert status["stages"] == {"sft": {**status["stages"]["sft"], "status": "failed"}}  # type: ignore[index,call-overload]
