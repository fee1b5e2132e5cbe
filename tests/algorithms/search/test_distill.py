"""Search-distilled SFT (``algorithm: search_distill``) is a registered algorithm that trains
the policy on the actions MCTS chose, and stores what the search did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_trainer.algorithms.config import load_experiment
from llm_trainer.algorithms.experiment import run_experiment
from llm_trainer.algorithms.registry import algorithm_entries, get_algorithm
from llm_trainer.algorithms.search.buffer import ExperienceBuffer
from llm_trainer.algorithms.search.distill import BUFFER_FILE, SearchDistillAlgorithm
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.knowledge import KnowledgeGraph
from llm_trainer.core.store import TrajectoryStore
from llm_trainer.core.trajectory import Trajectory

CONFIG = """\
name: distill
algorithm: search_distill
seed: 0
output_dir: {out}
knowledge_path: {out}/graph.sqlite
model:
  path: tiny
  system_prompt: ""
  tiny: {{n_layers: 2, hidden_size: 64, n_heads: 2, intermediate_size: 128}}
train:
  max_steps: 10
  batch_size: 4
  learning_rate: 3.0e-3
  lr_scheduler: constant
  warmup_steps: 0
  logging_steps: 5
  max_length: 640
search_distill:
  env_id: LLMTrainer/Knapsack-v0
  episodes: 6
  first_seed: 20
  proposer: knapsack
  num_envs: 3
  mcts: {{simulations: 16, batch_size: 4}}
eval:
  env_id: LLMTrainer/Knapsack-v0
  episodes: 2
  episodes_before: 0
  max_new_tokens: 8
"""


def _chosen_logprob(model_dir: Path, trajectories: list[Trajectory]) -> float:
    """Sum of the log-probs of every chosen action under the model, each after its chat."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total = 0.0
    with torch.no_grad():
        for t in trajectories:
            messages = t.messages(system_prompt="")
            for k, m in enumerate(messages):
                if m["role"] != "assistant":
                    continue
                text = tokenizer.apply_chat_template(
                    messages[:k], add_generation_prompt=True, tokenize=False
                )
                prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
                action = tokenizer(m["content"], add_special_tokens=False)["input_ids"]
                logits = model(input_ids=torch.tensor([prompt + action])).logits[0]
                logp = torch.log_softmax(logits[len(prompt) - 1 : -1].float(), -1)
                total += float(logp[torch.arange(len(action)), torch.tensor(action)].sum())
    return total


def test_search_distill_is_registered_like_every_built_in() -> None:
    assert get_algorithm("search_distill") is SearchDistillAlgorithm
    entry = algorithm_entries()["search_distill"]
    assert entry.reference == "llm_trainer.algorithms.search.distill:SearchDistillAlgorithm"


def test_search_distill_trains_the_policy_on_the_actions_the_search_chose(tmp_path: Path) -> None:
    path = tmp_path / "distill.yaml"
    path.write_text(CONFIG.format(out=tmp_path))
    summary: dict[str, Any] = run_experiment(load_experiment(path), log=lambda m: None)
    assert summary["algorithm"] == "search_distill"
    assert summary["search_episodes"] == 6
    assert summary["search_success"] == 1.0
    assert summary["distilled_episodes"] == 6
    assert summary["train_steps"] == 10
    run = Path(summary["run_dir"])
    episodes = TrajectoryStore(run / "trajectories.db").load(summary["dataset_version"])
    assert sorted(t.seed for t in episodes) == list(range(20, 26))
    assert {t.source for t in episodes} == {"mcts"}
    # every action of the data is the search's decision, recorded in the buffer
    buffer = ExperienceBuffer.load(run / BUFFER_FILE)
    assert len(buffer) == summary["search_decisions"] == sum(len(t.steps) for t in episodes)
    decided = {(r.seed, r.turn): r.action for r in buffer.records}
    assert decided == {(t.seed, i): s.action for t in episodes for i, s in enumerate(t.steps)}
    # the trees are in the knowledge graph
    graph = KnowledgeGraph(tmp_path / "graph.sqlite")
    assert graph.counts().edges["attempted_by"] >= len(buffer)
    # and the policy learnt them: the chosen actions are far more likely after training
    before = _chosen_logprob(run / "init_model", episodes)
    after = _chosen_logprob(Path(summary["model_dir"]), episodes)
    assert after > before + 0.25 * abs(before)
    assert json.loads((run / "summary.json").read_text())["search_success"] == 1.0


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("proposer: knapsack", "proposer: knapsak", "did you mean 'knapsack'"),
        ("proposer: knapsack", "proposer: knapsack\n  value: self_eval", "need proposer 'policy'"),
        ("env_id: LLMTrainer/Knapsack-v0\n  episodes", "env_id: Knapsak\n  episodes", "env_id"),
        ("simulations: 16", "simulations: 0", "mcts.simulations must be >= 1"),
    ],
)
def test_search_distill_settings_are_checked_before_anything_runs(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = CONFIG.format(out=tmp_path)
    assert old in text
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message):
        load_experiment(path)
    assert not (tmp_path / "graph.sqlite").exists()  # nothing ran
