"""Reward models on tiny budgets: learning to rank, the JSONL loader, scoring, determinism.

The models are far smaller than the default (one or two layers, 32-64 wide) so that each run
takes seconds on two shared cores.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

import torch
from transformers import TrainerCallback

from llm_trainer.agents.baselines import RandomAgent
from llm_trainer.agents.tinylm import TinyLMConfig, build_model, build_tokenizer, create_tiny_model
from llm_trainer.algorithms.config import (
    DataConfig,
    ExperimentConfig,
    LoRAConfig,
    ModelConfig,
    RewardConfig,
    TrainConfig,
)
from llm_trainer.algorithms.experiment import run_experiment
from llm_trainer.algorithms.reward_model import (
    METADATA_FILE,
    RewardModel,
    RewardModelSettings,
    RewardModelTrainer,
    RewardPair,
    env_pairs,
    load_pairs_jsonl,
    ranking_accuracy,
    sequence_classifier,
    split_pairs,
)
from llm_trainer.algorithms.rewards import step_rewards
from llm_trainer.algorithms.rollout import collect, oracle_trajectories
from llm_trainer.core.errors import UserError
from llm_trainer.core.rundir import RunDir
from llm_trainer.core.trajectory import Trajectory

SMALL = TinyLMConfig(
    n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64, max_position_embeddings=256
)
ENV = "LLMTrainer/Calculator-v0"


@pytest.fixture(scope="module")
def episodes() -> list[Trajectory]:
    """Oracle successes and a random agent's episodes (mostly failures) on the same tasks."""
    seeds = range(48)
    oracle = oracle_trajectories(ENV, seeds, difficulty=1)
    random = collect(ENV, lambda envs: RandomAgent(0), seeds, num_envs=8, source="policy:random")
    return oracle + random


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Any:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _trainer(
    tmp: Path,
    *,
    steps: int = 4,
    seed: int = 0,
    lr: float = 3e-3,
    batch_size: int = 8,
    save_steps: int = 0,
    callbacks: tuple[Any, ...] = (),
) -> RewardModelTrainer:
    tokenizer = build_tokenizer()
    model = build_model(SMALL, seed=seed, vocab_size=len(tokenizer))
    train = TrainConfig(
        max_steps=steps,
        batch_size=batch_size,
        learning_rate=lr,
        warmup_steps=1,
        logging_steps=1,
        max_length=256,
        save_steps=save_steps,
        threads=1,  # far faster than two threads on a loaded two-core machine
    )
    return RewardModelTrainer(
        model,
        tokenizer,
        train,
        RewardModelSettings(),
        RunDir(tmp),
        seed=seed,
        system_prompt="",
        callbacks=callbacks,
    )


# -- pairs ------------------------------------------------------------------------------------


def test_env_pairs_prefer_the_successful_episode(episodes: list[Trajectory]) -> None:
    pairs = env_pairs(episodes, seed=0, system_prompt="")
    by_seed = {t.seed: t for t in episodes if t.success}
    assert len(pairs) > len(by_seed)  # sampled failures and corrupted answers
    for pair in pairs:
        assert pair.chosen != pair.rejected
        assert pair.prompt[0] == {"role": "system", "content": ""}
        assert pair.group in by_seed
        assert pair.chosen[-1]["role"] == pair.rejected[-1]["role"] == "assistant"


def test_split_holds_out_whole_tasks_deterministically(episodes: list[Trajectory]) -> None:
    pairs = env_pairs(episodes, seed=0, system_prompt="")
    train, held = split_pairs(pairs, 0.25, seed=3)
    assert (train, held) == split_pairs(pairs, 0.25, seed=3)
    assert {p.group for p in train}.isdisjoint({p.group for p in held})
    assert len(train) + len(held) == len(pairs)
    groups = {p.group for p in pairs}
    assert len({p.group for p in held}) == -(-len(groups) // 4)
    assert split_pairs(pairs, 0.25, seed=4)[1] != held
    with pytest.raises(UserError, match="at least two tasks"):
        split_pairs([p for p in pairs if p.group == pairs[0].group], 0.2)


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


GOOD = {
    "prompt": [{"role": "user", "content": "What is 2+2?"}],
    "chosen": [{"role": "assistant", "content": "<answer>4</answer>"}],
    "rejected": [{"role": "assistant", "content": "<answer>5</answer>"}],
}


def test_jsonl_loader_accepts_a_good_file(tmp_path: Path) -> None:
    implicit = {
        "chosen": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "<answer>sunny</answer>"},
        ],
        "rejected": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "I don't know"},
        ],
        "tools": json.dumps([{"type": "function", "function": {"name": "weather"}}]),
    }
    pairs = load_pairs_jsonl(_write(tmp_path / "good.jsonl", [GOOD, "", implicit]))
    assert [p.group for p in pairs] == [1, 3]  # line numbers (the blank line is skipped)
    assert pairs[0].prompt == ({"role": "user", "content": "What is 2+2?"},)
    assert pairs[0].chosen_conversation[-1]["content"] == "<answer>4</answer>"
    assert pairs[1].prompt == ()
    assert pairs[1].tools[0]["function"]["name"] == "weather"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", r"bad\.jsonl:2: not valid JSON"),
        ([1, 2], r"bad\.jsonl:2: expected a JSON object"),
        ({k: v for k, v in GOOD.items() if k != "rejected"}, r":2: missing field 'rejected'"),
        ({**GOOD, "chosen": []}, r":2: field 'chosen' is empty"),
        ({**GOOD, "chosen": "text"}, r":2: field 'chosen' must be a list of messages"),
        ({**GOOD, "prompt": [{"role": "robot", "content": "x"}]}, r"'prompt'\[0\]\.role"),
        ({**GOOD, "rejected": [{"role": "assistant", "content": 5}]}, r"'rejected'\[0\]\.content"),
        ({**GOOD, "rejected": [{"role": "assistant"}]}, r"'rejected'\[0\] must have exactly"),
        ({**GOOD, "rejected": GOOD["chosen"]}, r":2: fields 'chosen' and 'rejected' are identical"),
        ({**GOOD, "tools": "{"}, r":2: field 'tools' is not valid JSON"),
        ({**GOOD, "tools": [1]}, r":2: field 'tools' must be a list of tool specs"),
        ({**GOOD, "score": 1}, r":2: unknown field\(s\) \['score'\]"),
    ],
)
def test_jsonl_loader_names_the_line_and_field_of_a_bad_row(
    tmp_path: Path, row: Any, message: str
) -> None:
    path = _write(tmp_path / "bad.jsonl", [GOOD, row])
    with pytest.raises(UserError, match=message):
        load_pairs_jsonl(path)


def test_jsonl_loader_rejects_a_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a file"):
        load_pairs_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(UserError, match="no preference pairs"):
        load_pairs_jsonl(tmp_path / "empty.jsonl")


# -- scoring ----------------------------------------------------------------------------------


def test_scores_are_deterministic_and_batch_size_independent(episodes: list[Trajectory]) -> None:
    tokenizer = build_tokenizer()
    model = sequence_classifier(build_model(SMALL, seed=0, vocab_size=len(tokenizer)), tokenizer)
    sample = episodes[:6] + episodes[-6:]  # successes and failures of different lengths
    lengths = {
        len(tokenizer.apply_chat_template(t.messages(), return_dict=True)["input_ids"])
        for t in sample
    }
    assert len(lengths) > 3
    batched = RewardModel(model, tokenizer, batch_size=5).score(sample)
    alone = RewardModel(model, tokenizer, batch_size=1).score(sample)
    assert batched == pytest.approx(alone, abs=1e-5)
    assert RewardModel(model, tokenizer, batch_size=5).score(sample) == batched
    assert len(set(batched)) == len(sample)  # the score depends on the episode
    assert RewardModel(model, tokenizer).score(sample, system_prompt="") != batched


def test_the_new_score_head_is_seeded_and_leaves_global_rngs_alone(tmp_path: Path) -> None:
    path = create_tiny_model(tmp_path / "tiny", SMALL, seed=0)
    tokenizer = build_tokenizer()
    state = torch.random.get_rng_state()
    a = sequence_classifier(str(path), tokenizer, seed=1)
    b = sequence_classifier(str(path), tokenizer, seed=1)
    c = sequence_classifier(str(path), tokenizer, seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.score.weight, b.score.weight)
    assert not torch.equal(a.score.weight, c.score.weight)
    assert a.config.num_labels == 1
    assert a.config.pad_token_id == tokenizer.pad_token_id
    with pytest.raises(UserError, match=r"no config\.json"):
        sequence_classifier(str(tmp_path), tokenizer)


# -- training ---------------------------------------------------------------------------------


def test_two_runs_with_one_seed_give_identical_losses(
    tmp_path: Path, episodes: list[Trajectory]
) -> None:
    pairs = env_pairs(episodes, seed=0, system_prompt="")
    state = torch.random.get_rng_state()
    a = _trainer(tmp_path / "a").train(pairs)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = _trainer(tmp_path / "b").train(pairs)
    assert a.losses == b.losses
    assert len(a.losses) == 4
    assert a.steps == 4
    c = _trainer(tmp_path / "c", seed=1).train(pairs)
    assert c.losses != a.losses


class _StopAt(TrainerCallback):
    """Simulates an interruption: training saves and stops at ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step >= self.step:
            control.should_save = True
            control.should_training_stop = True
        return control


def test_resume_after_a_checkpoint_ends_with_the_same_losses(
    tmp_path: Path, episodes: list[Trajectory]
) -> None:
    pairs = env_pairs(episodes, seed=0, system_prompt="")
    full = _trainer(tmp_path / "full", steps=6, save_steps=3).train(pairs)
    _trainer(tmp_path / "part", steps=6, save_steps=3, callbacks=(_StopAt(3),)).train(pairs)
    resumed = _trainer(tmp_path / "part", steps=6, save_steps=3).train(pairs, resume=True)
    assert resumed.resumed_from is not None
    assert resumed.resumed_from.endswith("checkpoint-3")
    assert [s for s, _ in resumed.losses] == [4, 5, 6]
    assert [v for _, v in resumed.losses] == pytest.approx(
        [v for s, v in full.losses if s > 3], rel=1e-5
    )


def test_a_trained_reward_model_ranks_held_out_pairs_far_above_chance(tmp_path: Path) -> None:
    """Env-scored pairs: a task's oracle success against the failure, on the same seed, of an
    agent that answers without the tool (cut at their first differing action).

    An untrained model's ranking is a fixed random function of the pair, so its accuracy can
    sit anywhere; training on the pairs, and on the same pairs with the labels swapped, must
    each reach > 0.9 on held-out tasks: the model learns the direction the labels give, from
    either side of chance. (Pairs that differ only in a number, such as corrupted answers, need
    a bigger model and hundreds of steps: see the module's measurements.)"""
    seeds = range(1000, 1096)
    oracle = oracle_trajectories(ENV, seeds, difficulty=1)
    random = collect(
        ENV, lambda envs: RandomAgent(0, p_tool=0.0), seeds, num_envs=8, source="policy:random"
    )
    pairs = env_pairs(oracle + random, system_prompt="", corrupted=False)
    assert len(pairs) >= 80
    train, held = split_pairs(pairs, 0.25, seed=0)
    swap = [dataclasses.replace(p, chosen=p.rejected, rejected=p.chosen) for p in pairs]
    swap_train, swap_held = split_pairs(swap, 0.25, seed=0)
    accuracies = {}
    for name, (tr, ho) in {"env": (train, held), "swapped": (swap_train, swap_held)}.items():
        trainer = _trainer(tmp_path / name, steps=25, lr=5e-3, batch_size=16)
        before = ranking_accuracy(trainer.scorer(), ho)
        result = trainer.train(tr)
        after = ranking_accuracy(trainer.scorer(), ho)
        accuracies[name] = (before, after)
        assert after > 0.9, (name, before, after, result.losses)
        assert result.losses[-1][1] < result.losses[0][1]
    # One of the two directions starts at or below chance (their accuracies sum to 1).
    assert accuracies["env"][0] + accuracies["swapped"][0] == pytest.approx(1.0)


def test_saved_reward_model_scores_like_the_trained_one_and_feeds_ppo_rewards(
    tmp_path: Path, episodes: list[Trajectory]
) -> None:
    pairs = env_pairs(episodes, seed=0, system_prompt="")
    trainer = _trainer(tmp_path / "run", steps=3)
    trainer.train(pairs)
    assert trainer.offset != 0.0
    path = trainer.save(tmp_path / "rm", note="test")
    meta = json.loads((path / METADATA_FILE).read_text())
    assert meta["system_prompt"] == ""
    assert meta["note"] == "test"
    loaded = RewardModel.from_pretrained(path, batch_size=4)
    assert loaded.system_prompt == ""
    assert loaded.offset == trainer.offset
    sample = episodes[:4] + episodes[-4:]
    assert loaded.score(sample) == pytest.approx(trainer.scorer().score(sample), abs=1e-5)
    # Centred on the training pairs: their mean score is 0.
    chosen, rejected = loaded.score_pairs(pairs)
    assert abs(sum(chosen + rejected) / (2 * len(pairs))) < 1e-4
    # What PPO does with it: the weighted score is added on the episode's last step.
    config = RewardConfig(reward_model_path=str(path), reward_model_weight=0.5)
    score = loaded.score([episodes[0]])[0]
    rewards = step_rewards(episodes[0], config, reward_model_score=score)
    assert rewards[:-1] == [s.reward for s in episodes[0].steps[:-1]]
    assert rewards[-1] == pytest.approx(episodes[0].steps[-1].reward + 0.5 * score)


def test_run_reward_model_end_to_end(tmp_path: Path) -> None:
    config = ExperimentConfig(
        name="rm",
        algorithm="reward_model",
        model=ModelConfig(system_prompt="", tiny=SMALL),
        data=DataConfig(episodes=24),
        train=TrainConfig(max_steps=3, batch_size=8, warmup_steps=1, logging_steps=1),
        settings=RewardModelSettings(held_out_fraction=0.25),
        output_dir=str(tmp_path),
    )
    lines: list[str] = []
    summary = run_experiment(config, log=lines.append)
    run = RunDir(summary["run_dir"])
    assert summary["train_pairs"] + summary["held_out_pairs"] == 24
    assert summary["held_out_pairs"] == 6
    assert 0 <= summary["ranking_accuracy_before"] <= 1
    assert 0 <= summary["ranking_accuracy_after"] <= 1
    assert summary["train_steps"] == 3
    assert json.loads((run.path / "summary.json").read_text()) == summary
    assert RewardModel.from_pretrained(summary["model_dir"]).score([]) == []
    assert any("held-out ranking accuracy" in line for line in lines)
    steps = [m for m in run.metrics() if "eval/ranking_accuracy" in m]
    assert [m["step"] for m in steps] == [0, 3]


def test_file_pairs_train_a_reward_model(tmp_path: Path) -> None:
    rows = [
        {
            "prompt": [{"role": "user", "content": f"What is {i}+1?"}],
            "chosen": [{"role": "assistant", "content": f"<answer>{i + 1}</answer>"}],
            "rejected": [{"role": "assistant", "content": "no idea"}],
        }
        for i in range(10)
    ]
    pairs = load_pairs_jsonl(_write(tmp_path / "pairs.jsonl", rows))
    assert all(isinstance(p, RewardPair) for p in pairs)
    result = _trainer(tmp_path / "run", steps=2).train(pairs)
    assert result.steps == 2
    assert len(result.losses) == 2


def test_lora_trains_adapters_and_the_score_head_only(
    tmp_path: Path, episodes: list[Trajectory]
) -> None:
    tokenizer = build_tokenizer()
    base = sequence_classifier(build_model(SMALL, seed=0, vocab_size=len(tokenizer)), tokenizer)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    train = TrainConfig(
        max_steps=3,
        batch_size=8,
        learning_rate=1e-2,
        warmup_steps=1,
        logging_steps=1,
        max_length=256,
        threads=1,
        lora=LoRAConfig(enabled=True, r=4, alpha=8, target_modules=("q_proj", "v_proj")),
    )
    trainer = RewardModelTrainer(
        base, tokenizer, train, RewardModelSettings(), RunDir(tmp_path / "run"), system_prompt=""
    )
    trainer.train(env_pairs(episodes, system_prompt=""))
    trained = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trained)
    assert any("score" in n for n in trained)
    assert all("lora_" in n or "score" in n for n in trained)
    for name, param in trainer.model.named_parameters():
        original = name.replace("base_model.model.", "").replace(".base_layer", "")
        if not param.requires_grad and original in before:
            assert torch.equal(param.detach(), before[original]), name
    sample = episodes[:3] + episodes[-3:]
    loaded = RewardModel.from_pretrained(trainer.save(tmp_path / "rm"))
    assert not any("lora" in n for n, _ in loaded.model.named_parameters())
    assert loaded.score(sample) == pytest.approx(trainer.scorer().score(sample), abs=1e-5)
