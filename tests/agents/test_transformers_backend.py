"""The transformers backend: token-faithful log-probs, batching, stops, seeds, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_trainer.agents.backends import ChatPrompt, SamplingConfig
from llm_trainer.agents.backends.transformers_backend import TransformersBackend
from llm_trainer.core.errors import BackendError, ConfigError


def prompts(k: int) -> list[ChatPrompt]:
    """Chat prompts of different lengths (left padding is exercised)."""
    return [
        ChatPrompt(
            (
                {"role": "system", "content": "Solve the task." + " Be brief." * (i % 3)},
                {"role": "user", "content": f"Compute {i * 37} + {i}."},
            )
        )
        for i in range(k)
    ]


@pytest.fixture(scope="module")
def backend(sharp_model_dir: Path) -> TransformersBackend:
    return TransformersBackend.from_pretrained(sharp_model_dir)


def test_logprobs_are_the_raw_model_logprobs_of_the_sampled_tokens(
    backend: TransformersBackend,
) -> None:
    import torch

    # Sampled with temperature and top-p, but recorded at temperature 1 without top-p.
    params = SamplingConfig(temperature=0.7, top_p=0.9, max_new_tokens=20, seed=3, n=2)
    for samples in backend.chat(prompts(3), params):
        for g in samples:
            assert len(g.token_ids) == len(g.logprobs) > 0
            ids = torch.tensor([list(g.prompt_token_ids) + list(g.token_ids)])
            with torch.no_grad():
                logits = backend.model(input_ids=ids).logits[0].float()
            start = len(g.prompt_token_ids) - 1
            expected = torch.log_softmax(logits[start : start + len(g.token_ids)], dim=-1)
            picked = expected.gather(1, torch.tensor(g.token_ids)[:, None])[:, 0]
            assert torch.allclose(picked, torch.tensor(g.logprobs), atol=1e-4)


def test_batched_greedy_equals_one_prompt_at_a_time(backend: TransformersBackend) -> None:
    params = SamplingConfig(temperature=0.0, max_new_tokens=32)
    batch = prompts(6)
    together = backend.chat(batch, params)
    alone = [backend.chat([p], params)[0] for p in batch]
    assert [s[0].token_ids for s in together] == [s[0].token_ids for s in alone]
    assert [s[0].text for s in together] == [s[0].text for s in alone]


def test_stops_end_text_and_tokens_with_the_tag_eos_is_not_text(
    backend: TransformersBackend,
) -> None:
    tokenizer = backend.tokenizer
    tag_ids = {tokenizer.convert_tokens_to_ids(t): t for t in ("</tool_call>", "</answer>")}
    params = SamplingConfig(temperature=0.0, max_new_tokens=40)
    reasons = set()
    for [g] in backend.chat(prompts(16), params):
        reasons.add(g.finish_reason)
        if g.finish_reason == "stop":
            assert g.token_ids[-1] in tag_ids
            assert g.text.endswith(tag_ids[g.token_ids[-1]])
        elif g.finish_reason == "eos":
            assert g.token_ids[-1] == tokenizer.eos_token_id
            assert "<eos>" not in g.text
        else:
            assert len(g.token_ids) == 40
    assert reasons == {"stop", "eos", "length"}  # the sharp model hits all three


def test_a_multi_token_stop_string_cuts_the_completion(backend: TransformersBackend) -> None:
    [[free]] = backend.chat(prompts(1), SamplingConfig(temperature=0.0, max_new_tokens=40))
    text = free.text
    stop = next(text[i : i + 2] for i in range(4, len(text) - 2) if text[i : i + 2].isprintable())
    params = SamplingConfig(temperature=0.0, max_new_tokens=40, stop=(stop,))
    [[cut]] = backend.chat(prompts(1), params)
    assert cut.finish_reason == "stop"
    assert cut.text == text[: text.index(stop) + len(stop)]
    assert free.token_ids[: len(cut.token_ids)] == cut.token_ids


def test_greedy_with_n_repeats_and_tiny_top_p_is_greedy(backend: TransformersBackend) -> None:
    [samples] = backend.chat(prompts(1), SamplingConfig(temperature=0.0, max_new_tokens=8, n=3))
    assert len(samples) == 3
    assert len(set(samples)) == 1
    nucleus = SamplingConfig(temperature=1.0, top_p=1e-6, max_new_tokens=8, seed=1)
    assert backend.chat(prompts(1), nucleus)[0][0].token_ids == samples[0].token_ids


def test_text_prompts_and_context_limits(backend: TransformersBackend) -> None:
    [[g]] = backend.generate(["<bos><|user|>hi<eos><|assistant|>"], SamplingConfig(seed=0))
    assert g.prompt_token_ids[0] == backend.tokenizer.bos_token_id
    context = backend.max_context
    assert context == 1024
    # A prompt 4 tokens short of the context gets at most 4 new tokens.
    [[short]] = backend.generate([[1] * (context - 4)], SamplingConfig(max_new_tokens=50, seed=0))
    assert len(short.token_ids) <= 4
    with pytest.raises(BackendError, match=r"transformers:.*context of 1024 tokens"):
        backend.generate([[1] * context], SamplingConfig())
    with pytest.raises(BackendError, match="prompt 0 is empty"):
        backend.generate([[]], SamplingConfig())


def test_backend_options_are_checked(sharp_model_dir: Path) -> None:
    with pytest.raises(ConfigError, match="dtype must be one of"):
        TransformersBackend.from_pretrained(sharp_model_dir, dtype="float8")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not found"):
        TransformersBackend.from_pretrained(sharp_model_dir / "missing")
    with pytest.raises(ConfigError, match="temperature"):
        SamplingConfig(temperature=-1)
