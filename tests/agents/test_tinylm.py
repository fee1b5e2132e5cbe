"""The embedded default model: builds, saves, reloads as a plain HF directory, generates
deterministically with a seed, and never touches the process-wide RNG."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_trainer.agents.backends import ChatPrompt, SamplingConfig
from llm_trainer.agents.backends.transformers_backend import TransformersBackend
from llm_trainer.agents.tinylm import (
    TAG_TOKENS,
    TinyLMConfig,
    build_model,
    build_tokenizer,
    count_parameters,
)

PROMPT = ChatPrompt(
    (
        {"role": "system", "content": "Solve the task."},
        {"role": "user", "content": "Compute 2 + 3."},
    )
)


def test_tiny_model_saves_and_reloads_with_auto_classes(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    fresh = build_model(seed=0, vocab_size=len(build_tokenizer()))
    assert len(tokenizer) == len(build_tokenizer()) == 268
    assert count_parameters(model) == count_parameters(fresh)
    for (name, a), (_, b) in zip(
        model.state_dict().items(), fresh.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    text = "Ünïcode ✓ <tool_call>{}</tool_call> 😀"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    for tag in TAG_TOKENS:  # the protocol tags are one token each (exact stops)
        assert len(tokenizer.encode(tag, add_special_tokens=False)) == 1


def test_same_seed_gives_same_weights_and_different_seeds_differ() -> None:
    import torch

    config = TinyLMConfig(n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64)
    a, b, c = (build_model(config, seed=s) for s in (0, 0, 1))
    weight = "model.embed_tokens.weight"
    assert torch.equal(a.state_dict()[weight], b.state_dict()[weight])
    assert not torch.equal(a.state_dict()[weight], c.state_dict()[weight])


def test_generation_is_deterministic_with_a_seed_and_leaves_the_global_rng(
    tiny_model_dir: Path,
) -> None:
    import torch

    backend = TransformersBackend.from_pretrained(tiny_model_dir)
    state = torch.random.get_rng_state()
    params = SamplingConfig(temperature=1.0, max_new_tokens=24, n=3, seed=7)
    first = backend.chat([PROMPT], params)[0]
    second = backend.chat([PROMPT], params)[0]
    other = backend.chat([PROMPT], SamplingConfig(temperature=1.0, max_new_tokens=24, seed=8))[0]
    assert first == second
    assert len({g.token_ids for g in first}) == 3  # three different samples
    assert other[0].token_ids != first[0].token_ids
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("bad", [{"n_heads": 3}, {"n_layers": 0}])
def test_bad_tiny_config_names_the_field(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        TinyLMConfig(**bad)
