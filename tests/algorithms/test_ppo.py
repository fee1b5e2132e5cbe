"""PPO end to end on real envs and real models: determinism, resume, errors, and learning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

from llm_trainer.agents.tinylm import TinyLMConfig, build_model, build_tokenizer
from llm_trainer.algorithms.config import RewardConfig, TrainConfig
from llm_trainer.algorithms.ppo import PPOSettings
from llm_trainer.algorithms.ppo.trainer import PPOTrainer
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import RunDir

SMALL = TinyLMConfig(
    n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64, max_position_embeddings=1024
)
SETTINGS = PPOSettings(
    env_id="LLMTrainer/Calculator-v0", difficulty=1, episodes_per_iteration=6, max_new_tokens=12
)


def _trainer(
    tmp: Path, *, max_steps: int = 2, save_steps: int = 0, batch_size: int = 4, **settings: Any
) -> PPOTrainer:
    model = build_model(SMALL, seed=0)
    run = RunDir.create(tmp, "ppo", {}, 0, resume=True)
    return PPOTrainer(
        model,
        build_tokenizer(),
        TrainConfig(
            max_steps=max_steps,
            batch_size=batch_size,
            learning_rate=1e-3,
            warmup_steps=0,
            save_steps=save_steps,
            lr_scheduler="linear",
        ),
        PPOSettings(**{**SETTINGS.__dict__, **settings}),
        RewardConfig(format_bonus=0.1),
        run,
        seed=0,
        system_prompt="",
    )


def test_two_runs_with_one_seed_give_identical_losses(tmp_path: Path) -> None:
    a = _trainer(tmp_path / "a").train()
    b = _trainer(tmp_path / "b").train()
    assert len(a.losses) == 2
    assert a.losses == b.losses
    metrics = [
        json.loads(line) for line in (tmp_path / "a").glob("*/metrics.jsonl").__next__().open()
    ]
    assert {"ppo/policy", "ppo/value", "ppo/kl_to_ref", "rollout/env_reward"} <= set(metrics[-1])
    assert "ppo/entropy" not in metrics[-1]  # ent_coef 0: the entropy is never computed
    assert any((tmp_path / "a").glob("*/tensorboard/events.out.tfevents.*"))


def test_resume_continues_the_same_curve(tmp_path: Path) -> None:
    whole = _trainer(tmp_path / "whole", max_steps=3, save_steps=1).train()

    interrupted = _trainer(tmp_path / "cut", max_steps=3, save_steps=1)
    real_step = interrupted.step

    def killed_at_third(iteration: int) -> dict[str, float]:
        if iteration == 2:
            raise KeyboardInterrupt
        return real_step(iteration)

    interrupted.step = killed_at_third  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    checkpoints = sorted(p.name for p in (interrupted.run.checkpoints).iterdir())
    assert checkpoints == ["iteration-1", "iteration-2"]  # atomic: no staging folder left

    resumed = _trainer(tmp_path / "cut", max_steps=3, save_steps=1).train(resume=True)
    assert resumed.resumed_from is not None
    assert resumed.resumed_from.endswith("iteration-2")
    assert resumed.losses == whole.losses


def test_bad_settings_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ppo\.env_id: .*Did you mean 'LLMTrainer/Calculator"):
        _trainer(tmp_path, env_id="LLMTrainer/Calculater-v0")
    with pytest.raises(ConfigError, match="num_minibatches"):
        PPOSettings(episodes_per_iteration=2, num_minibatches=4)
    with pytest.raises(ConfigError, match="gae_lambda"):
        PPOSettings(gae_lambda=1.5)
    with pytest.raises(ConfigError, match="model_dir"):
        _trainer(tmp_path, backend="vllm")


def _held_out(model: Any, tokenizer: Any, difficulty: int) -> dict[str, float]:
    from llm_trainer.algorithms.evaluation import evaluate_model

    metrics, _ = evaluate_model(
        model,
        tokenizer,
        "LLMTrainer/Calculator-v0",
        range(1_000_000, 1_000_200),
        difficulty=difficulty,
        system_prompt="",
        max_new_tokens=80,
    )
    return metrics


def test_ppo_raises_held_out_reward_of_a_weak_sft_agent(
    tmp_path: Path, weak_calculator_agent: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(weak_calculator_agent)
    tokenizer = AutoTokenizer.from_pretrained(weak_calculator_agent)
    before = _held_out(model, tokenizer, 1)
    assert 0.05 < before["success"] < 0.9, before  # a weak agent: room to learn
    trainer = PPOTrainer(
        model,
        tokenizer,
        TrainConfig(
            max_steps=PPO_ITERATIONS,
            batch_size=32,
            learning_rate=PPO_LR,
            lr_scheduler="constant",
            warmup_steps=0,
        ),
        PPOSettings(
            env_id="LLMTrainer/Calculator-v0",
            difficulty=1,
            episodes_per_iteration=64,
            max_new_tokens=80,
            kl_coef=0.01,
            temperature=0.7,  # at 1.0 the tiny byte-level model misspells most tool calls
        ),
        RewardConfig(),
        RunDir.create(tmp_path, "ppo", {}, 0),
        seed=0,
        system_prompt="",
        model_dir=weak_calculator_agent,
    )
    trainer.train()
    after = _held_out(trainer.model, tokenizer, 1)
    # The same 200 held-out tasks before and after (greedy): measured here 0.515 -> 0.605
    # success (rollout reward 0.34 -> 0.45 at temperature 0.7) in 12 iterations of 64 episodes.
    assert after["success"] >= before["success"] + 0.05, (before, after)
    assert after["mean_reward"] >= before["mean_reward"] + 0.05, (before, after)


PPO_ITERATIONS = 12
PPO_LR = 1e-4


def test_lora_ppo_trains_only_adapters_and_the_value_head(tmp_path: Path) -> None:
    from llm_trainer.algorithms.config import LoRAConfig

    model = build_model(SMALL, seed=0)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    lora = LoRAConfig(enabled=True, r=4, alpha=8, target_modules=("q_proj", "v_proj"))
    trainer = PPOTrainer(
        model,
        build_tokenizer(),
        TrainConfig(max_steps=1, batch_size=4, learning_rate=1e-2, warmup_steps=0, lora=lora),
        PPOSettings(**{**SETTINGS.__dict__, "ent_coef": 0.01}),  # an entropy bonus: computed
        RewardConfig(format_bonus=0.5),
        RunDir.create(tmp_path, "ppo", {}, 0),
        system_prompt="",
    )
    assert trainer.ref_model is None  # the reference is the base with adapters disabled
    head = trainer.value_head.weight.detach().clone()
    adapters = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    assert adapters
    metrics = trainer.step(0)
    assert metrics["ppo/entropy"] > 0
    moved = [
        n
        for n, p in trainer.model.named_parameters()
        if n in adapters and not (p.detach() == adapters[n]).all()
    ]
    assert moved, "no adapter weight moved"
    for name, param in trainer.model.named_parameters():
        if "lora_" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert (param.detach() == base[key]).all(), name
    assert not (trainer.value_head.weight.detach() == head).all()


def test_separate_value_model_and_a_reward_model_in_place_of_the_env_reward(
    tmp_path: Path,
) -> None:
    from llm_trainer.algorithms.reward_model import RewardModel, sequence_classifier

    tokenizer = build_tokenizer()
    rm_dir = tmp_path / "rm"
    classifier = sequence_classifier(build_model(SMALL, seed=3), tokenizer, seed=3)
    classifier.save_pretrained(rm_dir)
    tokenizer.save_pretrained(rm_dir)
    reward = RewardConfig(env_weight=0.0, reward_model_path=str(rm_dir), reward_model_weight=2.0)
    trainer = PPOTrainer(
        build_model(SMALL, seed=0),
        tokenizer,
        TrainConfig(max_steps=1, batch_size=4, learning_rate=1e-3, warmup_steps=0),
        PPOSettings(**{**SETTINGS.__dict__, "value_model": "separate"}),
        reward,
        RunDir.create(tmp_path / "run", "ppo", {}, 0),
        system_prompt="",
    )
    assert trainer.value_model is not None
    episodes = trainer.rollout(0)  # the same seeded episodes step(0) plays
    scores = RewardModel.from_pretrained(rm_dir).score(episodes, system_prompt="")
    value_before = [p.detach().clone() for p in trainer.value_model.parameters()]
    metrics = trainer.step(0)
    expected = 2.0 * sum(scores) / len(scores)
    assert metrics["rollout/shaped_reward"] == pytest.approx(expected, abs=1e-5)
    assert metrics["rollout/shaped_reward"] != metrics["rollout/env_reward"]
    moved = [
        not (a == p.detach()).all()
        for a, p in zip(value_before, trainer.value_model.parameters(), strict=True)
    ]
    assert any(moved)


def test_gae_continues_an_episode_across_the_rows_it_was_split_into(tmp_path: Path) -> None:
    import torch

    from llm_trainer.algorithms.ppo.core import pack_episode
    from llm_trainer.core.trajectory import Step, Trajectory

    ok = {"format_ok": True, "tool_correct": True, "exec_ok": True}
    call = Step(
        "<tool_call>..</tool_call>", "12", "tool", 0.0, False, False, ok,
        prompt_token_ids=(1, 40, 41), completion_token_ids=(50, 51, 52), logprobs=(-1.0,) * 3,
    )  # fmt: skip
    # the second prompt does not extend the first context (memory dropped the first turn)
    answer = Step(
        "<answer>12</answer>", "", "user", 1.0, True, False, ok,
        prompt_token_ids=(1, 60, 61), completion_token_ids=(70, 71), logprobs=(-1.0,) * 2,
    )  # fmt: skip
    split = Trajectory("LLMTrainer/Calculator-v0", 0, 1, "", (), "q", (call, answer))
    whole = Trajectory("LLMTrainer/Calculator-v0", 1, 1, "", (), "q", (call,))
    episode_rows = [pack_episode(split, [0.0, 1.0]), pack_episode(whole, [0.5])]
    assert [len(rows) for rows in episode_rows] == [2, 1]
    # batch_size 1: the two rows of the split episode get their values in different
    # micro-batches; gamma = lambda = 1 and no KL: every return is the reward still to come
    trainer = _trainer(tmp_path, batch_size=1, gamma=1.0, gae_lambda=1.0, kl_coef=0.0)
    data = trainer.rollout_data(episode_rows)
    returns = [d["returns"][d["mask"].bool()].tolist() for d in data]
    assert returns[0] == pytest.approx([1.0, 1.0, 1.0])  # not 0: the episode goes on
    assert returns[1] == pytest.approx([1.0, 1.0])
    assert returns[2] == pytest.approx([0.5, 0.5, 0.5])
    for d in data:  # advantages are the returns less the values, wherever they were computed
        assert torch.allclose(d["advantages"], (d["returns"] - d["values"]) * d["mask"])


def test_micro_batch_size_changes_neither_the_rollout_data_nor_the_update(tmp_path: Path) -> None:
    """Rows are grouped into micro-batches by length (less padding): the update and the
    logged losses are those of one row at a time (up to float rounding)."""
    one = _trainer(tmp_path / "one", max_steps=1, batch_size=1)
    many = _trainer(tmp_path / "many", max_steps=1, batch_size=4)
    metrics = [one.step(0), many.step(0)]
    assert metrics[0]["rollout/generated_tokens"] == metrics[1]["rollout/generated_tokens"] > 0
    for key in ("ppo/policy", "ppo/value", "ppo/approx_kl", "ppo/explained_variance"):
        assert metrics[0][key] == pytest.approx(metrics[1][key], rel=1e-4, abs=1e-6), key
    diff = max(
        float((a - b).abs().max())
        for a, b in zip(one.model.parameters(), many.model.parameters(), strict=True)
    )
    # measured 6e-6 after 4 Adam steps at lr 1e-3: rounding that Adam's normalisation amplifies
    assert diff < 1e-4


def test_max_turns_cuts_rollout_episodes(tmp_path: Path) -> None:
    """``ppo.max_turns``: no rollout episode has more actions (an untrained model never
    answers, so every episode would otherwise run to the env's limit of 6)."""
    uncut = _trainer(tmp_path / "uncut").rollout(0)
    assert max(len(t.steps) for t in uncut) > 2
    cut = _trainer(tmp_path / "cut", max_turns=2).rollout(0)
    assert [len(t.steps) for t in cut] == [min(2, len(t.steps)) for t in uncut]
    assert not any(t.success for t in cut)
    with pytest.raises(ConfigError, match=r"ppo.max_turns"):
        PPOSettings(max_turns=0)
