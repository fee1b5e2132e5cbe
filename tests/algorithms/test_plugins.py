"""Algorithms are plug-ins: defined outside the package, found by name, module:Class, file path
or an installed distribution's entry point, and run by ``llm-trainer train`` like built-ins."""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_trainer.agents.baselines import RandomAgent
from llm_trainer.algorithms.base import Algorithm, AlgorithmContext, AlgorithmResult
from llm_trainer.algorithms.config import load_experiment
from llm_trainer.algorithms.registry import (
    algorithm_entries,
    get_algorithm,
    register_algorithm,
    unregister_algorithm,
)
from llm_trainer.cli import app
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.store import TrajectoryStore

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RandomRolloutsConfig:
    episodes: int = 6
    """Episodes to play."""


class RandomRollouts(Algorithm):
    """Plays random episodes and stores them: a plug-in that makes data, not a policy."""

    name = "random_rollouts"
    config_class = RandomRolloutsConfig
    produces_policy = False

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        episodes = context.collect(
            RandomAgent(context.seed),
            context.experiment.eval.env_id,
            range(self.config.episodes),
            num_envs=3,
        )
        version = context.store_dataset("random", episodes)
        return AlgorithmResult(
            metrics={"episodes": len(episodes), "invalid": sum(not t.success for t in episodes)},
            dataset_version=version,
        )


def _last_json(output: str) -> dict[str, object]:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            loaded: dict[str, object] = json.loads(line)
            return loaded
    raise AssertionError(f"no JSON line in {output!r}")


def test_a_custom_algorithm_defined_in_a_test_module_runs_through_llm_trainer_train(
    tmp_path: Path,
) -> None:
    config = tmp_path / "random.yaml"
    config.write_text(
        f"name: random\nalgorithm: {Path(__file__)}:RandomRollouts\n"
        f"output_dir: {tmp_path / 'runs'}\nrandom_rollouts:\n  episodes: 5\n"
    )
    result = CliRunner().invoke(app, ["train", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    summary = _last_json(result.output)
    assert summary["algorithm"] == "random_rollouts"
    assert summary["episodes"] == 5
    store = TrajectoryStore(Path(str(summary["run_dir"])) / "trajectories.db")
    assert len(store.load(str(summary["dataset_version"]))) == 5
    saved = (Path(str(summary["run_dir"])) / "config.yaml").read_text()
    assert "random_rollouts:\n  episodes: 5" in saved


def test_a_registered_algorithm_is_found_by_name_and_its_settings_by_its_section() -> None:
    @register_algorithm
    class Registered(RandomRollouts):
        name = "registered_rollouts"

    try:
        experiment = load_experiment(
            overrides=["algorithm=registered_rollouts", "registered_rollouts.episodes=2"]
        )
        assert experiment.algorithm_class() is Registered
        assert experiment.settings == RandomRolloutsConfig(episodes=2)
        assert algorithm_entries()["registered_rollouts"].source == "registered in this process"
        with pytest.raises(ConfigError, match="already registered"):

            @register_algorithm
            class Clash(RandomRollouts):
                name = "registered_rollouts"

    finally:
        unregister_algorithm("registered_rollouts")
    assert "registered_rollouts" not in algorithm_entries()
    with pytest.raises(ConfigError, match="was not registered in this process"):
        unregister_algorithm("registered_rollouts")


def test_a_plugin_installed_as_a_distribution_is_found_by_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "myplug").mkdir(parents=True)
    (site / "myplug" / "__init__.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass
            from llm_trainer.algorithms.base import Algorithm, AlgorithmResult

            @dataclass(frozen=True)
            class HelloConfig:
                greeting: str = "hello"
                \"\"\"What to say.\"\"\"

            class Hello(Algorithm):
                \"\"\"Says hello.\"\"\"
                name = "hello"
                config_class = HelloConfig
                produces_policy = False

                def run(self, context):
                    return AlgorithmResult(metrics={"said": self.config.greeting})
            """
        )
    )
    dist = site / "myplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[llm_trainer.algorithms]\nhello = myplug:Hello\n")
    monkeypatch.syspath_prepend(str(site))
    entry = algorithm_entries()["hello"]
    assert entry.reference == "myplug:Hello"
    assert entry.source == "entry point (myplug)"
    assert get_algorithm("hello").describe() == "Says hello."
    listed = CliRunner().invoke(app, ["algorithms", "--json"])
    assert listed.exit_code == 0, listed.output
    hello = next(a for a in _last_json(listed.output)["algorithms"] if a["name"] == "hello")  # type: ignore[union-attr]
    assert hello["fields"] == [
        {"name": "greeting", "type": "str", "default": "hello", "help": "What to say."}
    ]
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(site)])
    sys.modules.pop("myplug", None)


def test_every_builtin_is_registered_through_the_entry_point_group() -> None:
    entries = algorithm_entries()
    for name in ("sft", "dpo", "ppo", "grpo", "reward_model", "expert_iteration"):
        assert entries[name].source == "entry point (llm-trainer)"
        assert get_algorithm(name).name == name


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("sfft", r"unknown algorithm 'sfft' \(did you mean 'sft'\?\)"),
        ("no_such_module_x:Algo", r"cannot import module 'no_such_module_x'"),
        ("llm_trainer.algorithms.sft:SFTAlgorythm", r"did you mean 'SFTAlgorithm'"),
        ("llm_trainer.algorithms.sft:chat_rows", r"is a function, not an algorithm class"),
        ("llm_trainer.algorithms.sft:SFTSettings", r"is not an algorithm: it lacks"),
        ("missing/file.py:Algo", r"no such file missing/file.py"),
    ],
)
def test_bad_algorithm_references_are_one_line_errors(reference: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_experiment(overrides=[f"algorithm={reference}"])


def test_settings_of_another_algorithm_are_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match=r"ppo: settings of algorithm 'ppo', but this experiment"):
        load_experiment(overrides=["ppo.kl_coef=0.1"])


def test_a_section_the_algorithm_does_not_read_is_an_error_not_a_silent_no_op() -> None:
    with pytest.raises(ConfigError, match=r"reward: algorithm 'sft' does not read this section"):
        load_experiment(overrides=["reward.format_bonus=0.2"])
    with pytest.raises(ConfigError, match=r"data: algorithm 'ppo' does not read this section"):
        load_experiment(overrides=["algorithm=ppo", "data.episodes=10"])


def test_run_experiment_and_the_cli_name_no_algorithm() -> None:
    import re

    names = ("sft", "dpo", "grpo", "reward_model", "SFTTrainer", "DPOTrainer", "PPOTrainer")
    for path in (ROOT / "algorithms" / "experiment.py", ROOT / "cli.py"):
        code = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        )
        for name in names:
            assert not re.search(rf"\b{name}\b", code), f"{path.name} names {name}"


@pytest.mark.slow
def test_expert_iteration_raises_held_out_success_from_a_weak_agent(
    weak_calculator_agent: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--config",
            str(ROOT / "configs" / "expert_iteration.yaml"),
            "--set",
            f"model.path={weak_calculator_agent}",
            "--set",
            f"output_dir={tmp_path}",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = _last_json(result.output)
    before, after = float(summary["success_before"]), float(summary["success_after"])  # type: ignore[arg-type]
    print(f"expert iteration: held-out success {before:.3f} -> {after:.3f}, {summary}")
    kept = summary["kept_per_round"]
    assert isinstance(kept, list)
    assert len(kept) == 2
    assert kept[1] > kept[0]  # the second round samples from a better policy
    # measured: 0.375 -> 0.59 on 2 CPU cores (the README has the 5-seed experiment)
    assert after >= before + 0.10
    assert float(summary["format_correctness"]) >= 0.95  # learning did not break the format


def test_expert_iteration_settings_out_of_range_are_config_errors_naming_the_field() -> None:
    config = ROOT / "configs" / "expert_iteration.yaml"
    assert load_experiment(config).algorithm_class() is get_algorithm("expert_iteration")
    for override, message in [
        ("expert_iteration.rounds=0", r"expert_iteration.rounds must be >= 1, got 0"),
        ("expert_iteration.samples_per_task=0", r"expert_iteration.samples_per_task must be >= 1"),
        ("expert_iteration.temperature=-0.5", r"expert_iteration.temperature must be >= 0"),
        ("expert_iteration.difficulty=9", r"expert_iteration.difficulty: .* got 9"),
        ("expert_iteration.env_id=LLMTrainer/Calculater-v0", r"expert_iteration.env_id: "),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_experiment(config, [override])


@pytest.mark.slow
def test_the_best_of_n_example_stores_one_verified_success_per_solved_task(
    weak_calculator_agent: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the config names its plug-in as examples/best_of_n.py:BestOfN
    args = ["train", "--config", "examples/best_of_n.yaml"]
    for item in (
        f"model.path={weak_calculator_agent}",
        f"output_dir={tmp_path}",
        "best_of_n.tasks=32",
        "best_of_n.samples=2",
    ):
        args += ["--set", item]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = _last_json(result.output)
    print(f"best of n: {summary}")
    assert summary["algorithm"] == "best_of_n"
    tasks, solved, kept = summary["tasks"], summary["solved"], summary["kept"]
    assert isinstance(solved, int)
    assert isinstance(kept, int)
    assert tasks == 32
    assert 0 < kept <= solved <= tasks
    assert summary["pass_at_n"] == pytest.approx(solved / 32)
    assert "success_after" not in summary  # it makes data, not a policy
    run_dir = Path(str(summary["run_dir"]))
    assert not (run_dir / "final_model").exists()
    store = TrajectoryStore(run_dir / "trajectories.db")
    version = str(summary["dataset_version"])
    assert store.info(version).name == "best_of_n-best_of_n"
    stored = store.load(version)
    assert len(stored) == kept
    assert all(t.success and t.metrics["format_ok"] for t in stored)
    assert len({t.seed for t in stored}) == kept  # one per task
    assert all(0 <= t.seed < 32 for t in stored)
