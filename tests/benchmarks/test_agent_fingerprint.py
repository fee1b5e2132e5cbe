"""A stored result is reused only for the same agent: the fingerprint hashes what a spec names."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_trainer.agents.llm_agent import close_shared_backends
from llm_trainer.agents.tinylm import TinyLMConfig, build_model, build_tokenizer, create_tiny_model
from llm_trainer.benchmarks.results import load_result
from llm_trainer.benchmarks.runner import BenchConfig, agent_fingerprint, run_bench
from llm_trainer.benchmarks.suites import parse_suites
from llm_trainer.core.digest import tree_digest
from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.registration import REGISTRY_PATH, registry

SMALL = TinyLMConfig(n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64)
# The smallest suite a result can have: one cell, three seeds, one episode each.
SUITE = parse_suites(
    REGISTRY_PATH.read_text()
    + """
  - id: identity-v0
    description: Calculator-v0 difficulty 1, three episodes.
    envs: [LLMTrainer/Calculator-v0]
    difficulties: [1]
    seeds: [0, 1, 2]
    episodes_per_cell: 3
""",
    registry(),
)["identity-v0"]


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model-like directory; the weights span several 1 MiB read chunks."""
    return _tree(
        tmp_path / "model",
        {
            "config.json": b'{"hidden_size": 32}',
            "model.safetensors": bytes(range(256)) * 12_000,
            "tokenizer/tokenizer.json": b'{"vocab": {}}',
        },
    )


@pytest.fixture
def shared_backends() -> Iterator[None]:
    """Release the models that in-process runs load (one per spec, for the whole process)."""
    yield
    close_shared_backends()


def test_a_model_directory_is_identified_by_every_file_name_size_and_byte(
    model_dir: Path, tmp_path: Path
) -> None:
    first = agent_fingerprint(f"transformers:{model_dir}")
    assert first is not None
    assert len(first) == 16
    assert agent_fingerprint(f"vllm:{model_dir}") == first
    # The same files elsewhere are the same agent; hidden files (caches, locks) are no part.
    copy = shutil.copytree(model_dir, tmp_path / "copy")
    _tree(copy, {".cache/huggingface/download/model.lock": b"", ".DS_Store": b"x"})
    assert agent_fingerprint(f"transformers:{copy}") == first

    weights = model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last chunk
    weights.write_bytes(bytes(data))
    retrained = agent_fingerprint(f"transformers:{model_dir}")
    (model_dir / "tokenizer" / "tokenizer.json").rename(model_dir / "tokenizer" / "vocab.json")
    renamed = agent_fingerprint(f"transformers:{model_dir}")
    _tree(model_dir, {"generation_config.json": b"{}"})
    added = agent_fingerprint(f"transformers:{model_dir}")
    assert len({first, retrained, renamed, added}) == 4


def test_a_saved_agent_is_identified_by_its_config_model_and_memory(
    model_dir: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "agent"
    shutil.copytree(model_dir, saved / "model")
    _tree(saved, {"llm_agent.json": b'{"format": 1, "config": {"backend": "transformers:model"}}'})
    with sqlite3.connect(saved / "memory.sqlite") as db:
        db.execute("CREATE TABLE episodes (task TEXT)")
    before = agent_fingerprint(str(saved))
    assert before == tree_digest(saved)
    with sqlite3.connect(saved / "memory.sqlite") as db:
        db.execute("INSERT INTO episodes VALUES ('2 + 2')")
    assert agent_fingerprint(str(saved)) != before


def test_an_adapter_is_identified_with_its_local_base_model(
    model_dir: Path, tmp_path: Path
) -> None:
    adapter = _tree(
        tmp_path / "adapter",
        {
            "adapter_config.json": f'{{"base_model_name_or_path": "{model_dir}"}}'.encode(),
            "adapter_model.safetensors": b"lora",
        },
    )
    before = agent_fingerprint(f"transformers:{adapter}")
    _tree(model_dir, {"model.safetensors": b"retrained base"})
    assert agent_fingerprint(f"transformers:{adapter}") != before


def test_sb3_and_python_specs_hash_their_file_and_the_rest_have_no_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "ppo.zip"
    model.write_bytes(b"PK model")
    # The same value as before directories were hashed: stored sb3 results stay valid.
    assert agent_fingerprint(f"sb3:{model}") == hashlib.sha256(b"PK model").hexdigest()[:16]

    module = tmp_path / "fingerprint_test_agents.py"
    module.write_text("def make(env):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = "python:fingerprint_test_agents:make"
    before = agent_fingerprint(spec)
    assert before == hashlib.sha256(module.read_bytes()).hexdigest()[:16]
    module.write_text("def make(env):\n    return 'edited'\n")
    assert agent_fingerprint(spec) not in (None, before)

    # Nothing local defines these (openai: see agent_fingerprint's docstring).
    for spec in (
        "oracle",
        "random",
        "openai:http://localhost:8000/v1#qwen",
        f"transformers:{tmp_path / 'no-such-model'}",
        f"sb3:{tmp_path / 'no-such.zip'}",
        "python:no_such_module_xyz:make",
    ):
        assert agent_fingerprint(spec) is None, spec


def test_retraining_a_model_in_place_makes_run_bench_replay_instead_of_reusing(
    tmp_path: Path, shared_backends: None
) -> None:
    model = create_tiny_model(tmp_path / "model", SMALL, seed=0)
    out = tmp_path / "results" / "identity-v0" / "tiny.json"
    config = BenchConfig(SUITE.id, f"transformers:{model}", out=out, workers=1)
    first = run_bench(config, SUITE)
    assert first.episodes_played == len(SUITE.episode_keys()) == 3
    again = run_bench(config, SUITE)
    assert again.reused
    assert again.episodes_played == 0

    weights = model / "model.safetensors"
    old_weights = weights.read_bytes()
    build_model(SMALL, seed=1, vocab_size=len(build_tokenizer())).save_pretrained(model)
    assert weights.read_bytes() != old_weights  # retrained: new weights, same file name

    replay = run_bench(config, SUITE)
    assert not replay.reused
    assert replay.agent_changed
    assert replay.episodes_played == 3
    assert replay.result.agent_fingerprint not in (None, first.result.agent_fingerprint)
    assert load_result(out).agent_fingerprint == replay.result.agent_fingerprint
    assert run_bench(config, SUITE).reused  # the new result is reused in turn
    # Another agent at the same file is still refused, not replaced.
    with pytest.raises(ConfigError, match=r"another configuration.*--fresh"):
        run_bench(BenchConfig(SUITE.id, "oracle", out=out, workers=1), SUITE)


def test_an_mcts_spec_is_fingerprinted_by_its_base_agent(tmp_path: Path) -> None:
    model = tmp_path / "base_model"
    _tree(model, {"config.json": b"{}", "model.safetensors": b"weights"})
    before = agent_fingerprint(f"mcts:simulations=8:transformers:{model}")
    assert before == agent_fingerprint(f"transformers:{model}") is not None
    _tree(model, {"model.safetensors": b"retrained"})
    assert agent_fingerprint(f"mcts:transformers:{model}") not in (None, before)
    # A scripted proposer is defined by the package version, as oracle is.
    assert agent_fingerprint("mcts:simulations=8:knapsack") is None
