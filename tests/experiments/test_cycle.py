"""``llm-trainer cycle``: config checks, a real cycle from the weak agent (stages through
run_experiment, benchmarks through the runner, lineage in the knowledge graph, the round
summary), and a resume after a kill mid-stage that repeats no finished work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import find_runs
from llm_trainer.experiments.cycle import Cycle, cycle_from_dict, load_cycle
from tests.experiments.cycles import CYCLE_CONFIG, small_cycle

CONFIG = CYCLE_CONFIG
_small = small_cycle


def test_the_default_cycle_file_is_valid_and_every_stage_is_checked_up_front() -> None:
    config = load_cycle(CONFIG)
    assert [s.algorithm for s in config.bootstrap] == ["sft"]
    assert [s.algorithm for s in config.stages] == ["expert_iteration"]
    assert config.benchmark.episodes_per_cell == 200


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stages.expert_iteration.algorithm=expert_iteraton", "did you mean 'expert_iteration'"),
        ("stages.expert_iteration.reward.step_penalty=0.5", "does not read this section"),
        ("stages.expert_iteration.expert_iteration.rounds=0", "expert_iteration.rounds"),
        ("stages.expert_iteration.seed=3", "set by the cycle"),
        ("stages.expert_iteration.per_round={expert_iteration.nope: 1}", "per_round"),
        ("stages=null", "at least one stage"),
        ("rounds=0", "rounds: must be an integer >= 1"),
        ("benchmark.envs=[LLMTrainer/Calculatr-v0]", "unknown env id"),
        ("benchmark.episodes_per_cell=7", "multiple of the number of seeds"),
        ("benchmark.sample=3", "benchmark.sample: unknown field"),
        ("stages.expert_iteration.resources={cpus: 0}", "resources"),
        ("parallel=0", "parallel: must be an integer >= 1"),
    ],
)
def test_a_bad_cycle_fails_before_any_work_naming_the_field(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"cycle\.yaml") as error:
        load_cycle(CONFIG, [override])
    assert message in str(error.value)


def test_a_changed_config_is_refused_on_resume_but_more_rounds_extend_the_cycle(
    tmp_path: Path,
) -> None:
    data = {
        "name": "c",
        "output_dir": str(tmp_path),
        "model": {"path": str(tmp_path)},
        "stages": {"ei": {"algorithm": "expert_iteration"}},
    }
    Cycle(cycle_from_dict(data), log=lambda m: None)
    longer = cycle_from_dict({**data, "rounds": 5})  # more rounds extend the same cycle
    Cycle(longer, log=lambda m: None)
    changed = cycle_from_dict({**data, "seed": 1})
    with pytest.raises(ConfigError, match="another configuration"):
        Cycle(changed, log=lambda m: None)
    Cycle(changed, fresh=True, log=lambda m: None)  # --fresh starts over


@pytest.mark.slow
def test_a_cycle_from_the_weak_agent_benchmarks_every_round_and_records_the_lineage(
    weak_calculator_agent: Path, tmp_path: Path
) -> None:
    from llm_trainer.core.knowledge import KnowledgeGraph
    from llm_trainer.core.knowledge.recording import model_record
    from llm_trainer.experiments.index import ExperimentManager

    config = load_cycle(CONFIG, _small(weak_calculator_agent, tmp_path, rounds="2", population="2"))
    lines: list[str] = []
    report = Cycle(config, log=lines.append).run()

    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert rounds[0]["stages"] == []
    assert rounds[1]["stages"] == ["expert_iteration"]
    for r in rounds:
        assert r["episodes"] == 2 * 30  # both members, the same 30 episodes
        s = r["success"]
        assert 0.0 <= s["ci_low"] <= s["mean"] <= s["ci_high"] <= 1.0
        assert r["success"]["mean"] == pytest.approx(sum(r["success_per_member"]) / 2)
        failed = round((1 - r["success"]["mean"]) * r["episodes"])
        assert sum(r["failure_modes"].values()) == failed
    for r in rounds[1:]:
        gain = r["vs_round_0"]
        assert gain["n_pairs"] == 60
        assert gain["difference"] == pytest.approx(
            r["success"]["mean"] - rounds[0]["success"]["mean"]
        )
        assert gain["ci_low"] <= gain["difference"] <= gain["ci_high"]
        assert 0.0 < gain["p_value"] <= 1.0
    assert report["verdict"].startswith(("round 2 beats", "no gain shown", "round 2 is WORSE"))
    gains = rounds[2]["gain_per_member"]
    after, before = rounds[2]["success_per_member"], rounds[0]["success_per_member"]
    assert gains == pytest.approx([a - b for a, b in zip(after, before, strict=True)])
    members = rounds[2]["member_interval"]
    assert members["ci_low"] <= sum(gains) / 2 <= members["ci_high"]
    assert "over the 2 lineages" in report["verdict"]
    print(f"cycle: {report['verdict']}")
    directory = Path(report["directory"])
    assert "| 2 | expert_iteration |" in (directory / "rounds.md").read_text()
    assert (directory / "rounds.png").stat().st_size > 10_000
    assert json.loads((directory / "status.json").read_text())["status"] == "finished"

    # every stage is an indexed run labelled with the cycle, and its usage is summed
    usage = report["usage"]
    assert usage["runs"] == 4  # 2 rounds x 2 members x 1 stage
    assert usage["train_tokens"] > 0
    index = ExperimentManager(tmp_path / "index.sqlite")
    assert {r.labels.cycle_id for r in index.runs()} == {f"{config.name}@{config.digest()}"}

    # lineage: member 0's round-2 model derives from its round-1 model and the weak agent
    state = json.loads((directory / "state.json").read_text())["done"]
    final = state["r2/m0/expert_iteration"]["model_dir"]
    with KnowledgeGraph(directory / "knowledge.sqlite") as kg:
        lineage = kg.lineage(model_record(final).node_id)
        ancestors = {node.attrs.get("path") for node in lineage.ancestors}
        assert state["r1/m0/expert_iteration"]["model_dir"] in ancestors
        assert str(weak_calculator_agent) in ancestors
        counts = kg.counts()
        # the benchmark recorded its problems, and every failure with its mode
        assert counts.nodes["problem"] >= 30
        assert counts.edges["fails_with"] > 0


@pytest.mark.slow
def test_a_cycle_killed_mid_stage_resumes_without_repeating_finished_work(
    weak_calculator_agent: Path, tmp_path: Path
) -> None:
    overrides = _small(weak_calculator_agent, tmp_path, rounds="2")
    command = [sys.executable, "-m", "llm_trainer.cli", "cycle", "--config", str(CONFIG)]
    for item in overrides:
        command += ["--set", item]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    config = load_cycle(CONFIG, overrides)
    second = config.stages[0]
    from llm_trainer.experiments.cycle import stage_name

    round_2 = stage_name(config, second, 2, 0)
    try:
        deadline = time.monotonic() + 600
        while not find_runs(tmp_path, round_2):  # round 2's stage has started
            assert process.poll() is None, "the cycle ended before round 2's stage started"
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    state = json.loads((config.directory / "state.json").read_text())["done"]
    assert "r1/m0/expert_iteration" in state
    assert "r2/m0/expert_iteration" not in state
    round_1_model = Path(state["r1/m0/expert_iteration"]["model_dir"])
    stamp = round_1_model.stat().st_mtime_ns

    lines: list[str] = []
    report = Cycle(load_cycle(CONFIG, overrides), log=lines.append).run()
    assert any("r1/m0/expert_iteration] finished before" in line for line in lines)
    assert any("r2/m0/expert_iteration] continuing its interrupted run" in line for line in lines)
    assert len(find_runs(tmp_path, stage_name(config, second, 1, 0))) == 1  # not run again
    assert len(find_runs(tmp_path, round_2)) == 1  # continued in its own run directory
    assert round_1_model.stat().st_mtime_ns == stamp
    assert [r["round"] for r in report["rounds"]] == [0, 1, 2]


@pytest.mark.slow
def test_an_evolved_system_prompt_carries_into_the_next_stage_and_the_benchmark(
    weak_calculator_agent: Path, tmp_path: Path
) -> None:
    """evolve system prompts -> expert iteration: the prompt evolution chose is the one the
    next stage trains with and the round's agent is benchmarked with."""
    evolve = {
        "algorithm": "evolution",
        "eval": {"episodes": 4},
        "evolution": {
            "genome": "prompt",
            "operators": "programmatic",
            "population": 3,
            "generations": 1,
            "episodes": 4,
            "finalists": 2,
            "max_new_tokens": 80,
            "initial": ["Solve it.", "Use the calculator, then answer <answer>NUMBER</answer>."],
        },
    }
    data = load_cycle(CONFIG, _small(weak_calculator_agent, tmp_path, rounds="1")).to_dict()
    data["stages"] = {"evolve": evolve, **data["stages"]}
    cycle = Cycle(cycle_from_dict(data), log=lambda m: None)
    report = cycle.run()
    state = json.loads((cycle.directory / "state.json").read_text())["done"]
    chosen = state["r1/m0/evolve"]["system_prompt"]
    best = Path(state["r1/m0/evolve"]["run_dir"]) / "best_genome.txt"
    assert chosen == best.read_text()
    trained = Path(state["r1/m0/expert_iteration"]["run_dir"]) / "config.yaml"
    assert yaml.safe_load(trained.read_text())["model"]["system_prompt"] == chosen
    agent = json.loads((cycle.directory / "round_1" / "agent_m0" / "llm_agent.json").read_text())
    assert agent["config"]["system_prompt"] == chosen
    assert report["rounds"][1]["stages"] == ["evolve", "expert_iteration"]


def test_a_stage_asking_for_more_cores_than_the_machine_has_fails_at_once(tmp_path: Path) -> None:
    config = load_cycle(
        CONFIG, [f"output_dir={tmp_path}", "stages.expert_iteration.resources={cpus: 4096}"]
    )
    with pytest.raises(ConfigError, match="4096"):
        Cycle(config, log=lambda m: None)


@pytest.mark.slow
def test_members_run_their_stages_at_once_in_processes_holding_their_own_cores(
    weak_calculator_agent: Path, tmp_path: Path
) -> None:
    from llm_trainer.experiments.index import ExperimentManager

    overrides = _small(weak_calculator_agent, tmp_path, rounds="1", population="2", parallel="2")
    config = load_cycle(CONFIG, [*overrides, "stages.expert_iteration.resources={cpus: 1}"])
    lines: list[str] = []
    report = Cycle(config, log=lines.append).run()
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    assert len(report["rounds"][1]["success_per_member"]) == 2
    pinned = [line for line in lines if "on cores" in line]
    assert len(pinned) == 2  # one per member, one core each
    assert all(line.endswith("GPUs []") for line in pinned)
    runs = ExperimentManager(tmp_path / "index.sqlite").runs()
    assert len(runs) == 2
    assert all(r.status == "finished" for r in runs)
    pids = {r.pid for r in runs}
    assert len(pids) == 2  # each stage in a process of its own...
    assert os.getpid() not in pids  # ...not this one
