"""The curriculum in PPO and GRPO: rollouts at the curriculum's level, its metrics logged, and
its state through a checkpoint round trip (a resumed run continues at the same level). Tiny
untrained models: these test the plumbing, not learning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

from llm_trainer.agents.tinylm import TinyLMConfig, build_model, build_tokenizer
from llm_trainer.algorithms.config import RewardConfig, TrainConfig
from llm_trainer.algorithms.grpo import (
    GRPOSettings,
    GRPOTrainer,
    env_rollout_func,
    restore_curriculum,
)
from llm_trainer.algorithms.ppo import PPOSettings
from llm_trainer.algorithms.ppo.trainer import PPOTrainer
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import RunDir
from llm_trainer.envs.wrappers import Curriculum, CurriculumConfig

CALC = "LLMTrainer/Calculator-v0"
SMALL = TinyLMConfig(
    n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64, max_position_embeddings=1024
)
#: The untrained model fails every episode: two episodes at a level demote it.
QUICK = CurriculumConfig(window=2, min_episodes=2, start_level=2)


def _ppo(tmp: Path, curriculum: CurriculumConfig | None = QUICK, **train: Any) -> PPOTrainer:
    run = RunDir.create(tmp, "ppo", {}, 0, resume=True)
    return PPOTrainer(
        build_model(SMALL, seed=0),
        build_tokenizer(),
        TrainConfig(
            **{
                "max_steps": 1,
                "batch_size": 4,
                "learning_rate": 1e-3,
                "warmup_steps": 0,
                "lr_scheduler": "linear",
                **train,
            }
        ),
        PPOSettings(
            env_id=CALC,
            difficulty=1,
            episodes_per_iteration=4,
            max_new_tokens=8,
            curriculum=curriculum,
        ),
        RewardConfig(),
        run,
        seed=0,
        system_prompt="",
    )


def test_ppo_rollouts_play_at_the_curriculum_level_and_move_it_between_iterations(
    tmp_path: Path,
) -> None:
    ppo = _ppo(tmp_path)
    assert ppo.curriculum is not None
    trajectories = ppo.rollout(0)
    # the whole iteration at level 2 (difficulty 3), though its failures demoted it midway
    assert [t.difficulty for t in trajectories] == [3, 3, 3, 3]
    assert ppo.curriculum.level == 1
    assert ppo.curriculum.get_state()["tally"][2] == {"episodes": 4, "successes": 0}


def test_a_ppo_checkpoint_round_trip_resumes_at_the_same_curriculum_level(
    tmp_path: Path,
) -> None:
    ppo = _ppo(tmp_path, save_steps=1)
    ppo.train()
    assert ppo.curriculum is not None
    assert ppo.curriculum.level == 1
    state = ppo.curriculum.get_state()
    [metrics] = ppo.run.metrics()
    assert metrics["curriculum/level"] == 1.0
    assert metrics["curriculum/difficulty"] == 2.0
    assert metrics["curriculum/demotions"] == 1.0

    resumed = _ppo(tmp_path, save_steps=1)
    assert resumed.curriculum is not None
    assert resumed.curriculum.level == 2  # a new trainer starts at start_level...
    checkpoint = resumed.last_checkpoint()
    assert checkpoint is not None
    resumed.load_checkpoint(checkpoint)
    assert resumed.curriculum.get_state() == state  # ...and resumes at the saved one
    assert [t.difficulty for t in resumed.rollout(1)] == [2, 2, 2, 2]

    without = _ppo(tmp_path / "other", curriculum=None)
    without.load_checkpoint(checkpoint)  # a curriculum it does not use is ignored
    plain = _ppo(tmp_path / "plain", curriculum=None, save_steps=1)
    plain.save_checkpoint()
    with pytest.raises(ConfigError, match="without a curriculum"):
        _ppo(tmp_path / "plain").load_checkpoint(plain.run.checkpoints / "iteration-0")


def test_grpo_rollouts_play_a_whole_batch_at_one_level_and_count_cut_episodes() -> None:
    rollout = env_rollout_func(
        CALC, difficulty=1, max_turns=1, max_new_tokens=8, system_prompt="", curriculum=QUICK
    )
    try:
        curriculum = rollout.curriculum
        assert curriculum is not None
        episodes = rollout.play(build_model(SMALL, seed=0), build_tokenizer(), [0, 1, 2, 3])
        assert [e.trajectory.difficulty for e in episodes] == [3, 3, 3, 3]
        # every episode was cut after one action: four failures, applied after the batch
        assert curriculum.get_state()["tally"][2] == {"episodes": 4, "successes": 0}
        assert curriculum.level == 1
        episodes = rollout.play(build_model(SMALL, seed=0), build_tokenizer(), [0, 1])
        assert [e.trajectory.difficulty for e in episodes] == [2, 2]
    finally:
        rollout.close()


def test_a_grpo_checkpoint_keeps_the_curriculum_and_a_resumed_run_restores_it(
    tmp_path: Path,
) -> None:
    run = RunDir.create(tmp_path, "grpo", {}, 0, resume=True)

    def trainer(steps: int) -> GRPOTrainer:
        return GRPOTrainer(
            build_model(SMALL, seed=0),
            build_tokenizer(),
            TrainConfig(
                max_steps=steps,
                batch_size=4,
                learning_rate=1e-3,
                warmup_steps=0,
                save_steps=1,
                logging_steps=1,
            ),
            GRPOSettings(
                env_id=CALC,
                difficulty=1,
                prompts=4,
                num_generations=2,
                max_completion_length=8,
                max_turns=1,
                curriculum=QUICK,
            ),
            RewardConfig(),
            run,
            seed=0,
            system_prompt="",
        )

    grpo = trainer(1)
    try:
        grpo.train()
    finally:
        grpo.rollout.close()
    curriculum = grpo.rollout.curriculum
    assert curriculum is not None
    assert curriculum.level == 1  # four failed episodes at level 2
    logged = run.metrics()
    assert any(m.get("rewards/env_curriculum_level/mean") == 2.0 for m in logged)

    fresh = Curriculum.for_env(QUICK, CALC)
    assert restore_curriculum(fresh, str(run.checkpoints))
    assert fresh.get_state() == curriculum.get_state()
    assert not restore_curriculum(Curriculum.for_env(QUICK, CALC), str(tmp_path / "none"))
    other = Curriculum.for_env(CurriculumConfig(attributes={"difficulty": [1, 2]}), CALC)
    with pytest.raises(ConfigError, match="same curriculum"):
        restore_curriculum(other, str(run.checkpoints))

    resumed = trainer(2)  # starts at start_level 2, resumes at the stored level 1
    try:
        resumed.train(resume=True)
    finally:
        resumed.rollout.close()
    key = "rewards/env_curriculum_level/mean"
    assert [m[key] for m in run.metrics() if key in m] == [2.0, 1.0]  # steps 1 and 2
