"""The stable-baselines3 PPO baseline trains, beats random on its env, and plays on the board."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llm_trainer.algorithms.sb3_baseline import (
    SB3BaselineConfig,
    SB3ToolChoiceAgent,
    encoded_success_rate,
    encoding_path,
    make_encoded_env,
    train_ppo_baseline,
)
from llm_trainer.benchmarks.compare import compare_results
from llm_trainer.benchmarks.leaderboard import build_boards, load_results
from llm_trainer.benchmarks.runner import BenchConfig, run_bench
from llm_trainer.benchmarks.suites import parse_suites
from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.registration import REGISTRY_PATH, make, registry

# Tool choice on MultiTool-v0 difficulty 1: calculator, weather or search, chosen from the
# prompt's words. Held-out seeds are far from the ones training resets draw.
CONFIG = SB3BaselineConfig(difficulties=(1,), total_timesteps=2048, n_steps=256, batch_size=64)
HELD_OUT = range(100_000, 100_200)
SUITE = parse_suites(
    REGISTRY_PATH.read_text()
    + """
  - id: multitool-choice-v0
    description: MultiTool-v0 difficulty 1 (which tool).
    envs: [LLMTrainer/MultiTool-v0]
    difficulties: [1]
    seeds: [0, 1, 2]
    episodes_per_cell: 30
""",
    registry(),
)["multitool-choice-v0"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_ppo_baseline(CONFIG, tmp_path_factory.mktemp("sb3") / "ppo.zip")


@pytest.mark.slow
def test_ppo_trains_and_beats_random_on_its_env(model_path: Path) -> None:
    from stable_baselines3 import PPO

    model = PPO.load(model_path, device="cpu")
    env = make_encoded_env(CONFIG)
    ppo = encoded_success_rate(env, lambda obs: model.predict(obs, deterministic=True)[0], HELD_OUT)
    rng = np.random.default_rng(0)
    random = encoded_success_rate(env, lambda obs: rng.integers(env.action_space.n), HELD_OUT)
    assert ppo >= 0.9, ppo
    assert random <= 0.5, random
    assert ppo - random >= 0.4


@pytest.mark.slow
def test_training_is_reproducible(model_path: Path, tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    again = train_ppo_baseline(CONFIG, tmp_path / "again.zip")
    a, b = PPO.load(model_path, device="cpu"), PPO.load(again, device="cpu")
    obs = np.stack([make_encoded_env(CONFIG).reset(seed=s)[0] for s in HELD_OUT])
    assert np.array_equal(
        a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0]
    )


@pytest.mark.slow
def test_the_trained_agent_plays_through_the_runner_and_ranks_above_random(
    model_path: Path, tmp_path: Path
) -> None:
    spec = f"sb3:{model_path}"
    sb3 = run_bench(BenchConfig(SUITE.id, spec, out=tmp_path / "sb3.json", workers=2), SUITE)
    assert sb3.result.agent == "sb3:ppo.zip"
    assert sb3.result.agent_fingerprint is not None  # a retrained model is a new configuration
    random = run_bench(BenchConfig(SUITE.id, "random", out=tmp_path / "random.json"), SUITE)
    assert sb3.result.summary["metrics"]["success"]["mean"] >= 0.85
    report = compare_results(sb3.result, random.result, metrics=["success"])
    assert report.regressions
    assert report.checks[0].worse_by > 0.8
    (board,) = build_boards(load_results([sb3.path, random.path]))
    assert [(e.name, e.rank) for e in board.entries] == [("sb3:ppo.zip", "1"), ("random", "2")]


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="multiple of batch_size"):
        SB3BaselineConfig(n_steps=100, batch_size=64)
    with pytest.raises(ConfigError, match=r"must end in \.zip"):
        train_ppo_baseline(CONFIG, "model.pt")


def test_a_model_saved_under_results_adds_no_json_file_to_the_leaderboard_glob(
    tmp_path: Path,
) -> None:
    quick = SB3BaselineConfig(difficulties=(1,), total_timesteps=256, n_steps=256, batch_size=64)
    model = train_ppo_baseline(quick, tmp_path / "results" / "ppo_multitool.zip")
    assert sorted(p.name for p in model.parent.iterdir()) == [
        "ppo_multitool.encoding.yaml",
        "ppo_multitool.zip",
    ]
    assert not list(tmp_path.glob("results/**/*.json"))  # what `llm-trainer leaderboard` reads
    env = make("LLMTrainer/MultiTool-v0")
    agent = SB3ToolChoiceAgent.load(model, env)
    assert agent.codec.tools == ("calculator", "weather", "search")
    # A model saved by an older version (encoding in ppo_multitool.json): the fix is named.
    encoding_path(model).rename(model.with_suffix(".json"))
    with pytest.raises(ConfigError, match=r"older version.*mv .*ppo_multitool\.json .*\.yaml"):
        SB3ToolChoiceAgent.load(model, env)
