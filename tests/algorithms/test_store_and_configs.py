"""The trajectory store, trajectory records, the config loader and the shipped configs."""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from llm_trainer.agents import RandomAgent
from llm_trainer.algorithms.config import ExperimentConfig, quickstart_config
from llm_trainer.algorithms.rollout import collect, oracle_trajectories
from llm_trainer.core.config import load_config
from llm_trainer.core.errors import ConfigError, UserError
from llm_trainer.core.store import Provenance, TrajectoryStore
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.envs.tools import InvalidAction, parse_action

#: The shipped experiment configs; ``synthesis_*.yaml`` are task specs for ``llm-trainer
#: synthesize`` instead (tests/data/test_synthesis.py loads them), ``cycle*.yaml`` cycles of
#: experiments (tests/experiments/test_cycle.py).
CONFIGS = sorted(
    p
    for p in (Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")
    if not p.name.startswith(("synthesis_", "cycle"))
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(ExperimentConfig, path)
    assert config.name == path.stem


def test_the_ppo_example_config_is_the_quickstart_ppo_phase() -> None:
    """``configs/calculator_ppo.yaml`` says it is ``quickstart --ppo``'s second phase: the
    same PPO settings, training budget and held-out set."""
    from llm_trainer.algorithms.config import quickstart_ppo_config

    shipped = load_config(
        ExperimentConfig, Path(__file__).parents[2] / "configs/calculator_ppo.yaml"
    )
    phase = quickstart_ppo_config()
    assert shipped.settings == phase.settings
    assert shipped.eval == phase.eval
    for name in ("max_steps", "batch_size", "learning_rate", "lr_scheduler", "warmup_steps"):
        assert getattr(shipped.train, name) == getattr(phase.train, name), name


def test_config_errors_name_the_field_and_the_allowed_values(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("algorithm: ppx\n")
    with pytest.raises(
        ConfigError,
        match=r"algorithm: unknown algorithm 'ppx' \(did you mean 'ppo'\?\); registered: dpo, "
        r".*grpo, .*ppo, ",
    ):
        load_config(ExperimentConfig, bad)
    with pytest.raises(ConfigError, match=r"train.batch_size: expected an integer"):
        load_config(ExperimentConfig, overrides=["train.batch_size=big"])
    with pytest.raises(ConfigError, match=r"data.episodes must be >= 1"):
        load_config(ExperimentConfig, overrides=["data.episodes=0"])
    config = load_config(
        ExperimentConfig, overrides=["train.learning_rate=3e-3", "model.system_prompt=''"]
    )
    assert config.train.learning_rate == 3e-3
    assert quickstart_config().name == "quickstart"


def test_data_repeat_rebalances_matching_tasks_and_bad_patterns_are_config_errors(
    tmp_path: Path,
) -> None:
    from llm_trainer.algorithms.base import AlgorithmContext
    from llm_trainer.core.rundir import RunDir

    with pytest.raises(ConfigError, match=r"data.repeat: '\(' is not a regular expression"):
        load_config(ExperimentConfig, overrides=["data.repeat={'(': 2}"])
    with pytest.raises(ConfigError, match=r"data.repeat\['x'\]: expected an int >= 1, got 0"):
        load_config(ExperimentConfig, overrides=["data.repeat={x: 0}"])
    with pytest.raises(ConfigError, match=r"train.adam_beta2 must be > 0 and < 1, got 1.0"):
        load_config(ExperimentConfig, overrides=["train.adam_beta2=1"])
    config = load_config(
        ExperimentConfig,
        overrides=[
            "data.episodes=60",
            "data.repeat={'^Subtract \\d+ from': 3, 'plus': 2}",
            f"output_dir={tmp_path}",
        ],
    )
    context = AlgorithmContext(config, RunDir(tmp_path / "run"))
    data, version = context.training_data()
    plain = oracle_trajectories("LLMTrainer/Calculator-v0", range(60), difficulty=1)
    subtract = [t for t in plain if t.prompt.startswith("Subtract")]
    plus = [t for t in plain if "plus" in t.prompt]
    assert subtract
    assert plus
    assert len(data) == len(plain) + 2 * len(subtract) + len(plus)
    assert sum(t.prompt.startswith("Subtract") for t in data) == 3 * len(subtract)
    # the store keeps each trajectory once; the setting is in the provenance
    info = context.store.info(version)
    assert info.size == 60
    assert info.provenance.config["repeat"] == {"^Subtract \\d+ from": 3, "plus": 2}


def test_data_phases_draw_each_phase_with_its_balance_and_sft_trains_in_that_order(
    tmp_path: Path,
) -> None:
    """``data.phases``: the rows of each phase are drawn with its own ``repeat``; SFT trains on
    exactly that order (the non-padding tokens it reports after each step are the sums of the
    ordered rows' lengths); bad phases, and phases for an algorithm that would ignore them,
    are config errors."""
    from llm_trainer.agents.tinylm import build_tokenizer
    from llm_trainer.algorithms.config import DataPhase
    from llm_trainer.algorithms.experiment import run_experiment
    from llm_trainer.algorithms.sft import chat_rows
    from llm_trainer.data.build import phase_order

    for override, message in [
        ("data.phases=[{after: 1.5}]", r"data.phases.after must be > 0 and < 1, got 1.5"),
        ("data.phases=[{after: 0.5}, {after: 0.2}]", r"'after' must increase .* \[0.5, 0.2\]"),
        ("data.phases=[{after: 0.5, repeat: {x: 0}}]", r"data.phases.repeat\['x'\]: .* got 0"),
        ("data.phases=[{after: 0.5, when: 1}]", r"data.phases\[0\].*when"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(ExperimentConfig, overrides=[override])
    with pytest.raises(ConfigError, match=r"data.phases: algorithm 'dpo' does not draw"):
        load_config(ExperimentConfig, overrides=["algorithm=dpo", "data.phases=[{after: 0.5}]"])

    plain = oracle_trajectories("LLMTrainer/Calculator-v0", range(60), difficulty=1)
    subtract = sum(t.prompt.startswith("Subtract") for t in plain)
    assert 0 < subtract < 10
    phases = [DataPhase(after=0.25, repeat={"^Subtract": 20})]
    order = phase_order(plain, {}, phases, 4000, seed=3, log=lambda _: None)
    assert len(order) == 4000
    assert order == phase_order(plain, {}, phases, 4000, seed=3, log=lambda _: None)
    assert order != phase_order(plain, {}, phases, 4000, seed=4, log=lambda _: None)
    share = [
        sum(t.prompt.startswith("Subtract") for t in part) / len(part)
        for part in (order[:1000], order[1000:])
    ]
    assert share[0] == pytest.approx(subtract / 60, abs=0.01)  # whole passes over the data
    assert share[1] == pytest.approx(20 * subtract / (60 + 19 * subtract), abs=0.03)

    config = load_config(
        ExperimentConfig,
        overrides=[
            "seed=3",
            "model.system_prompt=''",
            "model.tiny={n_layers: 1, hidden_size: 32, n_heads: 2, intermediate_size: 64}",
            "data.episodes=60",
            "data.repeat={'^Subtract': 2}",
            "data.phases=[{after: 0.5, repeat: {'^Subtract': 20}}]",
            "train.max_steps=6",
            "train.batch_size=4",
            "train.logging_steps=1",
            "eval.episodes=4",
            f"output_dir={tmp_path}",
        ],
    )
    summary = run_experiment(config, log=lambda _: None)
    ordered = phase_order(
        plain,
        {"^Subtract": 2},
        [DataPhase(after=0.5, repeat={"^Subtract": 20})],
        24,
        seed=3,
        log=lambda _: None,
    )
    tokenizer = build_tokenizer()
    lengths = [
        len(
            tokenizer.apply_chat_template(row["messages"], tools=json.loads(row["tools"]))[
                "input_ids"
            ]
        )
        for row in chat_rows(ordered, "")
    ]
    points = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").open()]
    seen = [p["num_input_tokens_seen"] for p in points if "loss" in p]  # one per step
    assert seen == [sum(lengths[: 4 * step]) for step in range(1, 7)]


def test_env_kwargs_of_eval_and_ppo_are_checked_when_the_config_loads() -> None:
    """``eval.env_kwargs`` and ``ppo.env_kwargs`` build the env once at load time: a bad
    argument is a config error naming the field, not a failure mid-run."""
    config = load_config(
        ExperimentConfig,
        overrides=[
            "algorithm=ppo",
            "eval={difficulty: 2, env_kwargs: {form: symbols}}",
            "ppo.env_kwargs={form: symbols}",
        ],
    )
    assert config.eval.env_kwargs == {"form": "symbols"}
    assert config.settings.env_kwargs == {"form": "symbols"}  # type: ignore[attr-defined]
    for override, message in [
        ("eval.env_kwargs={form: sym}", r"eval.env_kwargs: .*form must be one of"),
        ("eval.env_kwargs={colour: 1}", r"eval.env_kwargs: .*unexpected keyword .*colour"),
        ("ppo.env_kwargs={form: words}", r"ppo.env_kwargs: .*form='words' .* difficulty 3"),
    ]:
        extra = ["algorithm=ppo", "ppo.difficulty=3"] if override.startswith("ppo") else []
        with pytest.raises(ConfigError, match=message):
            load_config(ExperimentConfig, overrides=[*extra, override])


def test_data_extra_adds_matching_oracle_demonstrations_at_another_difficulty() -> None:
    """``data.extra``: the kept demonstrations are oracle successes at the extra difficulty,
    all matching ``match``, from consecutive seeds (the same every time); bad extras are
    config errors, and a pattern that matches too rarely is a clear error, not a loop."""
    from llm_trainer.algorithms.config import DataConfig, DataExtra
    from llm_trainer.data.build import build_training_data

    for override, message in [
        ("data.extra=[{difficulty: 5, episodes: 3}]", r"data.extra.difficulty: .* got 5"),
        ("data.extra=[{difficulty: 2, episodes: 0}]", r"data.extra.episodes"),
        ("data.extra=[{difficulty: 2, episodes: 3, match: '('}]", r"data.extra.match"),
        (
            "data={strategy: templates, extra: [{difficulty: 2, episodes: 3}]}",
            r"data.extra: .* the templates strategy",
        ),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(ExperimentConfig, overrides=[override])

    extra = DataExtra(difficulty=2, episodes=12, first_seed=7, match=r"\(")
    data = DataConfig(episodes=5, extra=(extra,))
    built = build_training_data(data, log=lambda _: None)
    assert [t.difficulty for t in built] == [1] * 5 + [2] * 12
    assert all(t.success for t in built)
    added = built[5:]
    assert all("(" in t.prompt and not t.prompt.startswith("Start") for t in added)
    # the first 12 matching tasks of seeds 7, 8, ...
    pool = oracle_trajectories("LLMTrainer/Calculator-v0", range(7, 7 + 64), difficulty=2)
    assert [t.seed for t in added] == [t.seed for t in pool if "(" in t.prompt][:12]
    assert [t.prompt for t in build_training_data(data, log=lambda _: None)] == [
        t.prompt for t in built
    ]
    never = DataConfig(episodes=1, extra=(DataExtra(difficulty=2, episodes=1, match="^Zebra"),))
    with pytest.raises(UserError, match=r"only 0 of 128 tasks at difficulty 2 match '\^Zebra'"):
        build_training_data(never, log=lambda _: None)


@pytest.fixture(scope="module")
def trajectories() -> list[Trajectory]:
    oracle = oracle_trajectories("LLMTrainer/MultiTool-v0", range(20), difficulty=3)
    random = collect(
        "LLMTrainer/Calculator-v0",
        lambda envs: RandomAgent(0),
        range(20),
        num_envs=4,
        source="policy:random",
    )
    return oracle + random


def test_trajectories_round_trip_through_json(trajectories: list[Trajectory]) -> None:
    for t in trajectories:
        assert Trajectory.from_json(t.to_json()) == t
    with pytest.raises(ValueError, match="not a trajectory record"):
        Trajectory.from_json('{"env_id": "x"}')


def test_oracle_data_passes_the_env_format_check(trajectories: list[Trajectory]) -> None:
    oracle = [t for t in trajectories if t.source == "oracle"]
    assert all(t.success for t in oracle)
    for t in oracle:
        assert not any(isinstance(parse_action(s.action), InvalidAction) for s in t.steps)
        roles = [m["role"] for m in t.messages()]
        assert roles[:2] == ["system", "user"]
        assert roles[-1] == "assistant"


def test_store_versions_by_content_and_records_provenance(
    tmp_path: Path, trajectories: list[Trajectory]
) -> None:
    store = TrajectoryStore(tmp_path / "store.db")
    provenance = Provenance(
        env_ids=("LLMTrainer/MultiTool-v0",),
        seeds=(0, 19),
        agent="oracle",
        strategy="oracle",
        config={"difficulty": 3},
    )
    a = store.add("a", trajectories, provenance)
    assert store.add("again", trajectories).id == a.id  # same content, same version
    b = store.add("b", trajectories[:-1], Provenance(parents=(a.id,)))
    assert b.id != a.id
    assert store.info(b.id).provenance.parents == (a.id,)
    assert store.info(a.id).provenance == provenance
    assert store.load(a.id) == trajectories
    assert [d.id for d in store.datasets()] == [a.id, b.id]
    with sqlite3.connect(tmp_path / "store.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(UserError, match="no dataset"):
        store.load("nope")


def test_store_is_readable_from_a_new_process(
    tmp_path: Path, trajectories: list[Trajectory]
) -> None:
    store = TrajectoryStore(tmp_path / "store.db")
    info = store.add("a", trajectories)
    code = (
        f"from llm_trainer.core.store import TrajectoryStore; "
        f"print(len(TrajectoryStore({str(tmp_path / 'store.db')!r}).load({info.id!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(len(trajectories))


def test_a_failed_write_leaves_the_store_as_it_was(
    tmp_path: Path, trajectories: list[Trajectory]
) -> None:
    store = TrajectoryStore(tmp_path / "store.db")
    first = store.add("a", trajectories[:5])

    class Exploding(list):  # type: ignore[type-arg]
        """Serialising the 3rd trajectory fails, as a crash mid-write would."""

        def __iter__(self):  # type: ignore[no-untyped-def]
            for i, t in enumerate(super().__iter__()):
                if i == 2 and getattr(self, "armed", False):
                    raise RuntimeError("killed")
                yield t

    data = Exploding(trajectories[5:])
    data.armed = True  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="killed"):
        store.add("b", data)
    assert [d.id for d in store.datasets()] == [first.id]
    with sqlite3.connect(tmp_path / "store.db") as db:
        assert db.execute("SELECT COUNT(*) FROM trajectories").fetchone()[0] == 5


def test_exports_jsonl_parquet_and_datasets(tmp_path: Path, trajectories: list[Trajectory]) -> None:
    pytest.importorskip("datasets")
    store = TrajectoryStore(tmp_path / "store.db")
    info = store.add("a", trajectories)
    lines = store.export_jsonl(info.id, tmp_path / "out" / "data.jsonl").read_text().splitlines()
    assert [Trajectory.from_json(line) for line in lines] == trajectories
    dataset = store.to_hf_dataset(info.id)
    assert len(dataset) == len(trajectories)
    assert dataset[0]["messages"][0]["role"] == "system"
    assert json.loads(dataset.info.description)["id"] == info.id
    import datasets

    parquet = store.export_parquet(info.id, tmp_path / "out" / "data.parquet")
    again = datasets.Dataset.from_parquet(str(parquet))
    assert again["success"] == [t.success for t in trajectories]


def test_warmup_stable_decay_holds_the_peak_then_decays_linearly_in_sft(tmp_path: Path) -> None:
    """``train.lr_scheduler: warmup_stable_decay``: the learning rate TRL's SFT logs warms up,
    holds the peak, and falls over the last ``decay_fraction`` of the steps; the fraction is
    range-checked."""
    from llm_trainer.agents.tinylm import TinyLMConfig, build_model, build_tokenizer
    from llm_trainer.algorithms.config import TrainConfig
    from llm_trainer.algorithms.sft import SFTTrainer
    from llm_trainer.core.rundir import RunDir

    with pytest.raises(ConfigError, match=r"train.decay_fraction must be > 0 and <= 1, got 0"):
        load_config(ExperimentConfig, overrides=["train.decay_fraction=0"])
    train = TrainConfig(
        max_steps=20, batch_size=4, learning_rate=1e-3, warmup_steps=4, logging_steps=1,
        lr_scheduler="warmup_stable_decay", decay_fraction=0.25,
    )  # fmt: skip
    assert train.scheduler_kwargs(20) == {"num_decay_steps": 5, "decay_type": "linear"}
    assert TrainConfig().scheduler_kwargs(20) == {}  # cosine needs none
    tokenizer = build_tokenizer()
    model = build_model(TinyLMConfig(n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64))
    trajectories = oracle_trajectories("LLMTrainer/Calculator-v0", range(40), difficulty=1)
    run = RunDir(tmp_path / "run")
    SFTTrainer(model, tokenizer, train, run, system_prompt="").train(trajectories)
    rates = [p["learning_rate"] for p in run.metrics() if "learning_rate" in p]
    assert len(rates) == 20
    assert rates[3] < rates[4] == 1e-3  # warm-up, then the peak (logged after each step)
    assert all(r == 1e-3 for r in rates[4:15])  # stable until the last 5 steps
    decay = rates[15:]
    assert all(a > b for a, b in itertools.pairwise(decay))
    assert decay[-1] < 2.5e-4
