"""Ray (issue 17, item 3) on a real local cluster: a Ray run equals the local run for the same
seeds (benchmark episodes, evolution's fitness, in this process and from a CLI process
connected by address), and a worker killed mid-task loses nothing and duplicates nothing."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from llm_trainer.algorithms.config import load_experiment
from llm_trainer.algorithms.evolution import FitnessEvaluator, Genome
from llm_trainer.algorithms.evolution.fitness import EvaluationSpec
from llm_trainer.algorithms.experiment import run_experiment
from llm_trainer.benchmarks.results import deterministic_view
from llm_trainer.benchmarks.runner import BenchConfig, partial_path, run_bench
from llm_trainer.core.errors import ConfigError
from llm_trainer.distributed import LocalExecutor, RayExecutor, make_executor
from llm_trainer.tests.distributed import helpers

ROOT = Path(__file__).resolve().parents[2]
KNAPSACK = ROOT / "configs" / "evolve_knapsack.yaml"
SMOKE = "tooluse-smoke-v0"
HELPERS = "python:llm_trainer.tests.distributed.helpers"
quiet = lambda message: None  # noqa: E731


def _view(path: Path) -> dict[str, Any]:
    return deterministic_view(json.loads(path.read_text()))


def test_importing_the_package_does_not_import_ray() -> None:
    code = (
        "import sys, llm_trainer, llm_trainer.distributed, llm_trainer.benchmarks.runner, "
        "llm_trainer.algorithms.evolution, llm_trainer.algorithms.config, llm_trainer.cli; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_without_ray_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray imports
    with pytest.raises(ConfigError, match=r"pip install 'llm-trainer\[ray\]'"):
        BenchConfig(SMOKE, "oracle", ray_address="local")
    with pytest.raises(ConfigError, match=r"pip install 'llm-trainer\[ray\]'"):
        RayExecutor("local")
    code = (  # the CLI says it in one line, the extra's brackets intact
        "import sys; sys.modules['ray'] = None; from llm_trainer.cli import main; "
        f"sys.argv = ['llm-trainer', 'bench', '--suite', '{SMOKE}', '--ray', 'auto']; main()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert "error: --ray needs Ray" in done.stderr
    assert "pip install 'llm-trainer[ray]'" in done.stderr
    with pytest.raises(ConfigError, match=r"ray\.address: must not be empty"):
        load_experiment(KNAPSACK, ["ray.address= "])
    with pytest.raises(ConfigError, match="does not read this section"):
        load_experiment(ROOT / "configs" / "calculator_sft.yaml", ["ray.address=auto"])


def test_executors_agree_and_raise_the_function_s_own_errors(ray_cluster: str) -> None:
    items = list(range(50))
    fn = functools.partial(pow, 3)
    with LocalExecutor(1) as inline, LocalExecutor(2) as pool, RayExecutor(ray_cluster) as ray:
        assert ray.workers == 2
        expected = [3**n for n in items]
        assert inline.map(fn, items) == pool.map(fn, items) == ray.map(fn, items) == expected
        assert ray.map(fn, []) == []
        with pytest.raises(KeyError, match="three"):
            ray.map(helpers.fail_on_three, items)
    assert isinstance(make_executor(2), LocalExecutor)


def test_a_killed_worker_s_tasks_are_rerun_nothing_lost_or_duplicated(
    ray_cluster: str, kill_dir: Path
) -> None:
    run = uuid.uuid4().hex
    items = list(range(60))
    with RayExecutor(ray_cluster) as executor:
        pairs = list(executor.imap_unordered(functools.partial(helpers.square_killing_once, run),
                                             items))  # fmt: skip
    assert sorted(index for index, _ in pairs) == items  # every item once
    assert sorted(result for _, result in pairs) == [(n, n * n) for n in items]
    killed = sorted(int(p.name.split("-")[1]) for p in (kill_dir / run).glob("kill-*"))
    assert killed == list(range(0, 60, 7))  # each of these killed its worker once
    calls = [int(line) for line in (kill_dir / run / "calls.log").read_text().split()]
    # the items a killed attempt had finished ran again, yet each was returned once
    assert set(calls) == set(items)
    assert len(calls) > len(items)


def test_benchmark_episodes_on_ray_equal_the_local_run(tmp_path: Path, ray_cluster: str) -> None:
    """The random agent (stochastic, re-seeded per episode) in this process, as Ray tasks from
    this process, and from a CLI process connected to the cluster by its address."""
    local = run_bench(BenchConfig(SMOKE, "random", out=tmp_path / "local.json", workers=1))
    ray = run_bench(
        BenchConfig(SMOKE, "random", out=tmp_path / "ray.json", ray_address=ray_cluster)
    )
    cli = tmp_path / "cli.json"
    subprocess.run(
        [sys.executable, "-m", "llm_trainer.cli", "bench", "--suite", SMOKE, "--agent", "random",
         "--out", str(cli), "--ray", ray_cluster, "--no-progress"],
        check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    assert _view(local.path) == _view(ray.path) == _view(cli)
    assert len(_view(local.path)["episodes"]) == 72
    provenance = json.loads(ray.path.read_text())["provenance"]
    assert provenance["ray_address"] == ray_cluster


def test_a_killed_benchmark_worker_loses_no_episode_and_records_none_twice(
    tmp_path: Path, ray_cluster: str, kill_dir: Path
) -> None:
    local = run_bench(BenchConfig(SMOKE, "random", out=tmp_path / "local.json", workers=1))
    out = tmp_path / "killed.json"
    run = run_bench(BenchConfig(SMOKE, f"{HELPERS}:killing_random", out=out,
                                ray_address=ray_cluster))  # fmt: skip
    assert len(list((kill_dir / "bench").glob("kill-*"))) == 2  # two workers were killed
    assert run.episodes_played == 72
    assert not partial_path(out).exists()
    episodes = _view(out)["episodes"]
    assert episodes == _view(local.path)["episodes"]  # all 72, each once, as played locally


def test_evolution_fitness_on_ray_equals_the_local_run(tmp_path: Path, ray_cluster: str) -> None:
    """configs/evolve_knapsack.yaml as it ships (2 islands of 24, 40 generations): the same
    genealogy, choice and archive with ``ray.address`` as with local processes."""
    summaries, genealogies = {}, {}
    for name, overrides in {
        "local": ["evolution.workers=2"],
        "ray": [f"ray.address={ray_cluster}"],
    }.items():
        config = load_experiment(KNAPSACK, [f"output_dir={tmp_path / name}", *overrides])
        summary = run_experiment(config, log=quiet)
        genealogies[name] = (Path(summary["run_dir"]) / "evolution" / "genealogy.json").read_text()
        timing = ("wall_seconds", "evolution_seconds", "generations_per_minute", "run_dir",
                  "genealogy", "best_genome", "family_tree")  # fmt: skip
        summaries[name] = {k: v for k, v in summary.items() if k not in timing}
    assert genealogies["local"] == genealogies["ray"]
    assert summaries["local"] == summaries["ray"]
    assert summaries["ray"]["generations"] == 40


def test_fitness_evaluator_on_ray_equals_local_and_keeps_duplicates_in_place(
    ray_cluster: str,
) -> None:
    spec = EvaluationSpec("LLMTrainer/Knapsack-v0", (0,), "solution",
                          env_kwargs={"config": {"items": [30, 30, 30]}})  # fmt: skip
    genomes = [Genome("solution", ", ".join(map(str, range(k, 30, 3)))) for k in range(3)]
    genomes += [genomes[0], Genome("solution", "")]
    with FitnessEvaluator(1) as local:
        expected = local.evaluate(spec, genomes)
    done: list[int] = []
    with FitnessEvaluator(executor=RayExecutor(ray_cluster)) as evaluator:
        assert evaluator.evaluate(spec, genomes, on_done=done.append) == expected
        assert evaluator.evaluations == 4  # the duplicate is played once
    assert sum(done) == 4
