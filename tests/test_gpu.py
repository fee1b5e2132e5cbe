"""The GPU path: PPO trains on a CUDA GPU in bf16, the chunked log-probs keep the memory they
promise at a real vocabulary size, and SFT's MFU is measured (``scripts/bench_mfu.py``).

Tests marked ``gpu`` run only where ``torch.cuda.is_available()`` (``tests/conftest.py`` skips
them elsewhere; select them with ``-m gpu``). The MFU arithmetic those runs rely on (the peak
FLOP/s table, the FLOPs per token, the tiny benchmark end to end) is checked on any machine.
Run with ``-s`` to see the peak memory and MFU lines.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("trl")

from llm_trainer.agents.tinylm import TinyLMConfig, build_model, build_tokenizer
from llm_trainer.algorithms.config import RewardConfig, TrainConfig
from llm_trainer.algorithms.ppo import PPOSettings
from llm_trainer.algorithms.ppo.trainer import PPOTrainer
from llm_trainer.benchmarks.perf.mfu import (
    SIZES,
    bench_loop,
    bench_trl,
    flop_parameters,
    flops_per_token,
    peak_bf16_tflops,
)
from llm_trainer.core.rundir import RunDir

SMALL = TinyLMConfig(
    n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64, max_position_embeddings=1024
)
GIB = 2**30


def _ppo(model: object, run: RunDir) -> PPOTrainer:
    return PPOTrainer(
        model,
        build_tokenizer(),
        TrainConfig(
            max_steps=2,
            batch_size=4,
            learning_rate=1e-3,
            warmup_steps=0,
            save_steps=2,
            precision="bf16",
            lr_scheduler="linear",
        ),
        PPOSettings(
            env_id="LLMTrainer/Calculator-v0",
            difficulty=1,
            episodes_per_iteration=6,
            max_new_tokens=12,
            temperature=0.7,  # the tempered log-probs are recomputed on the GPU too
            ent_coef=0.01,  # and the entropy is computed
        ),
        RewardConfig(format_bonus=0.1),
        run,
        seed=0,
        system_prompt="",
    )


@pytest.mark.gpu
def test_ppo_trains_a_tiny_model_on_the_gpu_in_bf16(
    tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    import torch

    model = build_model(SMALL, seed=0).to("cuda")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.cuda.reset_peak_memory_stats()
    run = RunDir.create(tmp_path, "ppo", {}, 0, resume=True)
    trainer = _ppo(model, run)
    assert trainer.device.type == "cuda"
    assert trainer.autocast_dtype == torch.bfloat16
    assert trainer.value_head.weight.device.type == "cuda"
    assert trainer.ref_model is not None
    assert next(trainer.ref_model.parameters()).device.type == "cuda"

    result = trainer.train()
    peak = torch.cuda.max_memory_allocated() / GIB
    record_property("peak_gpu_gib", peak)
    print(f"PPO, 2 iterations on {torch.cuda.get_device_name()}: peak {peak:.3f} GiB")

    assert len(result.losses) == 2
    assert all(math.isfinite(loss) for _, loss in result.losses)
    metrics = run.metrics()
    assert {"ppo/entropy", "ppo/policy", "ppo/value"} <= set(metrics[-1])
    assert all(math.isfinite(v) for v in metrics[-1].values() if isinstance(v, float))
    assert next(trainer.model.parameters()).device.type == "cuda"
    moved = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert len(moved) == len(before), "some parameters did not change"
    assert 0 < peak < 4

    # a fresh trainer resumes from the checkpoint onto the GPU (map_location)
    again = _ppo(build_model(SMALL, seed=1).to("cuda"), run)
    checkpoint = again.last_checkpoint()
    assert checkpoint is not None
    again.load_checkpoint(checkpoint)
    assert again.iteration == 2
    for p, q in zip(again.model.parameters(), trainer.model.parameters(), strict=True):
        assert torch.equal(p, q)
    state = next(iter(again.optimizer.state.values()))
    assert state["exp_avg"].device.type == "cuda"


@pytest.mark.gpu
def test_chunked_logprobs_at_a_real_vocabulary_need_no_full_size_fp32_copy(
    record_property: pytest.RecordProperty,
) -> None:
    import torch

    from llm_trainer.algorithms.ppo.core import token_logprobs

    # 4 sequences of 2,048 tokens over Qwen's vocabulary: bf16 logits of 2.3 GiB
    batch, length, vocab = 4, 2048, 151_936
    gen = torch.Generator(device="cuda").manual_seed(0)
    logits = torch.randn(
        batch, length + 1, vocab, device="cuda", dtype=torch.bfloat16, generator=gen
    ).mul_(4)
    logits.requires_grad_(True)
    targets = torch.randint(0, vocab, (batch, length), device="cuda", generator=gen)
    size = logits.numel() * logits.element_size()

    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        logp, ent = token_logprobs(logits, targets, entropy=True)
    forward = torch.cuda.max_memory_allocated() - base
    torch.cuda.reset_peak_memory_stats()
    logp, ent = token_logprobs(logits, targets, entropy=True)
    assert ent is not None
    (logp.sum() + 0.01 * ent.sum()).backward()
    train = torch.cuda.max_memory_allocated() - base
    record_property("forward_extra_gib", forward / GIB)
    record_property("train_extra_gib", train / GIB)
    print(
        f"logits {size / GIB:.2f} GiB; beyond them: {forward / GIB:.2f} GiB (no grad), "
        f"{train / GIB:.2f} GiB (forward and backward, with the logits' gradient)"
    )
    # a fp32 log-softmax alone would be 2x the bf16 logits; the chunks stay far below that
    assert forward < 0.25 * size
    # the gradient of the logits (1x, bf16) and chunk-sized temporaries, nothing more
    assert train < 1.25 * size

    # the same numbers as the full fp32 log-softmax, on a slice that fits it easily
    part = logits.detach()[:1, :257]
    plain = torch.log_softmax(part[:, :256].float(), dim=-1)
    want = plain.gather(-1, targets[:1, :256, None]).squeeze(-1)
    got, _ = token_logprobs(part, targets[:1, :256])
    assert (got - want).abs().max() < 1e-4


@pytest.mark.gpu
def test_sft_mfu_is_measured_on_the_gpu(tmp_path: Path) -> None:
    loop = bench_loop("tiny", steps=3, warmup=1, device="cuda")
    trl = bench_trl("tiny", tmp_path, steps=3, warmup=1, device="cuda")
    big = bench_loop("125m", steps=4, warmup=2, device="cuda")
    for result in (loop, trl, big):
        print(result.summary())
        assert result.device == "cuda"
        assert result.precision == "bf16"
        assert result.tokens_per_second > 0
        assert result.achieved_tflops > 0
        assert result.peak_memory_gib is not None
        if result.peak_tflops is not None:  # a GPU of the table
            assert result.mfu is not None
            assert 0 < result.mfu < 1
    assert 120e6 < big.parameters < 140e6
    if big.mfu is not None:  # bf16 on tensor cores, not an fp32 fallback
        assert big.mfu > 0.05


def test_the_peak_table_knows_the_h100_h200_and_a100_by_their_device_names() -> None:
    assert peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_bf16_tflops("NVIDIA H100 NVL") == 835.0
    assert peak_bf16_tflops("NVIDIA H200") == 989.0
    assert peak_bf16_tflops("NVIDIA H200 NVL") == 835.0
    assert peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_bf16_tflops("NVIDIA A100 80GB PCIe") == 312.0
    assert peak_bf16_tflops("NVIDIA GeForce RTX 4090") is None


def test_flops_per_token_count_the_multiplying_parameters_and_attention() -> None:
    tied = build_model(TinyLMConfig(n_layers=2, hidden_size=32, n_heads=2, intermediate_size=64))
    untied = build_model(
        TinyLMConfig(
            n_layers=2, hidden_size=32, n_heads=2, intermediate_size=64, tie_word_embeddings=False
        )
    )
    embedding = untied.get_input_embeddings().weight.numel()
    assert flop_parameters(tied) == sum(p.numel() for p in tied.parameters())
    assert flop_parameters(untied) == sum(p.numel() for p in untied.parameters()) - embedding
    # PaLM: 6 N + 12 L d T
    assert flops_per_token(1_000_000, 12, 768, 1024) == 6e6 + 12 * 12 * 768 * 1024
    size = SIZES["125m"]
    assert (size.n_layers, size.hidden_size, size.n_heads) == (12, 768, 12)


def test_the_tiny_mfu_benchmark_runs_on_any_machine() -> None:
    result = bench_loop("tiny", steps=2, warmup=1)
    assert result.tokens == 2 * SIZES["tiny"].batch_size * SIZES["tiny"].sequence_length
    assert result.tokens_per_second > 0
    expected = (
        flops_per_token(result.flop_parameters, 2, 128, SIZES["tiny"].sequence_length)
        * result.tokens_per_second
    )
    assert result.achieved_tflops == pytest.approx(expected / 1e12)
    if result.device == "cpu":
        assert result.precision == "fp32"
        assert result.mfu is None
        assert "MFU n/a" in result.summary()
