"""Model FLOPs utilisation (MFU) of supervised fine-tuning: how much of the chip SFT uses.

Two measurements of the same model on the same data (oracle demonstrations of Calculator-v0,
rendered by the byte-level tokenizer's chat template):

* :func:`bench_loop`: a plain forward / backward / AdamW loop over sequences packed to exactly
  ``sequence_length`` tokens: what the model and the chip can do.
* :func:`bench_trl`: the project's SFT path (:class:`~llm_trainer.algorithms.sft.SFTTrainer`,
  TRL's ``SFTTrainer`` underneath: one padded episode per row, assistant-only loss). Its tokens
  are the non-padding ones TRL counts, so padding, data collation and the Trainer's
  book-keeping show up as lost MFU.

Model FLOPs per token follow PaLM (Chowdhery et al. 2022, appendix B): ``6 N + 12 L d T``,
with ``N`` the parameters that multiply each token (all of them but the input embedding,
which is a lookup; with tied embeddings the shared matrix counts once, as the output head),
``L`` layers of width ``d`` and ``T`` tokens per sequence (the attention scores and values,
forward and backward; not halved for the causal mask, as in PaLM). MFU is the achieved model
FLOP/s over the chip's peak dense bf16 FLOP/s (:data:`PEAK_BF16_TFLOPS`); recomputation would
not count (this is MFU, not hardware FLOPs utilisation), and without a known peak (a CPU, an
unlisted GPU, fp32) MFU is not given.

Sizes (:data:`SIZES`): ``125m`` is a Llama of 12 layers x 768 (12 heads, SwiGLU 2,048) with a
32,000-token vocabulary, untied embeddings, 1,024-token sequences: 134M parameters, of which
110M multiply (85M in the blocks, 25M in the output head), the shape of GPT-3 Small / Llama
at 125M. The vocabulary is 32k rather than the byte tokenizer's 260 because the output head
(``d x V``, 20% of the FLOPs here) and the ``[tokens, V]`` logits and loss are part of any real
model's cost; the text is still the byte tokenizer's (ids < 260). ``tiny`` (2 x 128, byte
vocabulary, 384-token sequences, fp32 on a CPU) checks the whole path in seconds. Every
demonstration (about 290 tokens) fits in one sequence of either size: TRL would drop one whose
assistant turns a truncation removed.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

#: Peak dense (no sparsity) bf16 tensor-core TFLOP/s by GPU, from NVIDIA's data sheets. The
#: first row whose words all appear in ``torch.cuda.get_device_name()`` (upper-cased) applies.
PEAK_BF16_TFLOPS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("H200", "NVL"), 835.0),
    (("H200",), 989.0),  # SXM (and GH200)
    (("H100", "NVL"), 835.0),
    (("H100", "PCIE"), 756.0),
    (("H100",), 989.0),  # SXM5 ("NVIDIA H100 80GB HBM3")
    (("A100",), 312.0),  # SXM4 and PCIe alike
)

Precision = Literal["auto", "bf16", "fp32"]


@dataclass(frozen=True, slots=True)
class MFUSize:
    """The model and batch of one benchmark size."""

    n_layers: int
    hidden_size: int
    n_heads: int
    intermediate_size: int
    vocab_size: int | None
    """``None``: the byte tokenizer's (260)."""
    tie_word_embeddings: bool
    sequence_length: int
    """Tokens per packed sequence (the loop) and the longest row (the TRL path)."""
    batch_size: int
    """Sequences per step."""


SIZES: dict[str, MFUSize] = {
    "tiny": MFUSize(
        n_layers=2,
        hidden_size=128,
        n_heads=4,
        intermediate_size=352,
        vocab_size=None,
        tie_word_embeddings=True,
        sequence_length=384,  # longer than any demonstration (about 290 tokens): none is cut
        batch_size=4,
    ),
    "125m": MFUSize(
        n_layers=12,
        hidden_size=768,
        n_heads=12,
        intermediate_size=2048,
        vocab_size=32_000,
        tie_word_embeddings=False,
        sequence_length=1024,
        batch_size=16,
    ),
}


@dataclass(frozen=True, slots=True)
class MFUResult:
    """One measured SFT run (the timed steps only; warm-up steps are left out)."""

    path: str
    """``loop`` (plain forward/backward) or ``trl`` (the project's SFTTrainer)."""
    size: str
    device: str
    device_name: str
    precision: str
    parameters: int
    flop_parameters: int
    """Parameters that multiply each token (``N`` in ``6 N``)."""
    sequence_length: float
    """Tokens per sequence (the mean over the TRL path's rows)."""
    batch_size: int
    steps: int
    tokens: int
    seconds: float
    tokens_per_second: float
    flops_per_token: float
    achieved_tflops: float
    peak_tflops: float | None
    mfu: float | None
    peak_memory_gib: float | None

    def summary(self) -> str:
        """Two readable lines."""
        mfu = f"{self.mfu:.1%}" if self.mfu is not None else "n/a"
        peak = f"{self.peak_tflops:.0f}" if self.peak_tflops is not None else "n/a"
        memory = f", peak memory {self.peak_memory_gib:.2f} GiB" if self.peak_memory_gib else ""
        return (
            f"[{self.path}] {self.size} ({self.parameters / 1e6:.1f}M parameters, "
            f"{self.flop_parameters / 1e6:.1f}M multiplying), {self.precision} on "
            f"{self.device_name}: {self.steps} steps x {self.batch_size} x "
            f"{self.sequence_length:.0f} tokens in {self.seconds:.2f} s{memory}\n"
            f"[{self.path}] {self.tokens_per_second:,.0f} tokens/s, "
            f"{self.achieved_tflops:.3f} TFLOP/s achieved, peak {peak} TFLOP/s, MFU {mfu}"
        )


def peak_bf16_tflops(device_name: str) -> float | None:
    """The peak dense bf16 TFLOP/s of a GPU named ``device_name`` (``None`` if unlisted).

    >>> peak_bf16_tflops("NVIDIA H100 80GB HBM3"), peak_bf16_tflops("NVIDIA H100 PCIe")
    (989.0, 756.0)
    >>> peak_bf16_tflops("NVIDIA A100-SXM4-80GB"), peak_bf16_tflops("cpu") is None
    (312.0, True)
    """
    name = device_name.upper()
    for words, tflops in PEAK_BF16_TFLOPS:
        if all(word in name for word in words):
            return tflops
    return None


def flops_per_token(
    flop_parameters: int, n_layers: int, hidden_size: int, sequence_length: float
) -> float:
    """Training FLOPs per token, forward and backward (PaLM): ``6 N + 12 L d T``.

    >>> flops_per_token(1_000, n_layers=2, hidden_size=8, sequence_length=16)
    9072.0
    """
    return 6.0 * flop_parameters + 12.0 * n_layers * hidden_size * sequence_length


def flop_parameters(model: Any) -> int:
    """The parameters that multiply each token: all but an untied input embedding."""
    from llm_trainer.agents.tinylm import count_parameters

    total = count_parameters(model)
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == embedding.data_ptr()
    return total if tied else total - int(embedding.numel())


def build_sft_model(size: MFUSize, *, seed: int = 0) -> Any:
    """A randomly initialised Llama of ``size`` (fp32 weights)."""
    from llm_trainer.agents.tinylm import TinyLMConfig, build_model

    config = TinyLMConfig(
        n_layers=size.n_layers,
        hidden_size=size.hidden_size,
        n_heads=size.n_heads,
        intermediate_size=size.intermediate_size,
        max_position_embeddings=size.sequence_length,
        tie_word_embeddings=size.tie_word_embeddings,
    )
    return build_model(config, seed=seed, vocab_size=size.vocab_size)


def demonstrations(episodes: int, *, first_seed: int = 0) -> list[Any]:
    """Oracle demonstrations of Calculator-v0 (difficulty 1), the benchmark's data."""
    from llm_trainer.algorithms.rollout import oracle_trajectories

    seeds = range(first_seed, first_seed + episodes)
    return oracle_trajectories("LLMTrainer/Calculator-v0", seeds, difficulty=1)


def packed_batches(
    trajectories: Sequence[Any], tokenizer: Any, batch_size: int, sequence_length: int
) -> Iterator[list[list[int]]]:
    """Endless ``[batch_size, sequence_length]`` blocks of the chats' tokens, concatenated
    (each chat as the chat template renders it) and cut without padding."""
    from llm_trainer.algorithms.sft import chat_rows

    stream: list[int] = []
    for row in chat_rows(trajectories, None):
        encoded = tokenizer.apply_chat_template(
            row["messages"], tools=json.loads(row["tools"]), tokenize=True
        )
        stream.extend(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)
    block = batch_size * sequence_length
    if len(stream) < block:
        stream = stream * (block // len(stream) + 1)
    offset = 0
    while True:
        if offset + block > len(stream):
            offset = 0
        flat = stream[offset : offset + block]
        offset += block
        yield [flat[i : i + sequence_length] for i in range(0, block, sequence_length)]


def _resolve(device: str, precision: Precision) -> tuple[str, Literal["bf16", "fp32"]]:
    """``cuda``/``cpu`` and ``bf16``/``fp32`` (``auto``: bf16 on a GPU that has it)."""
    import torch

    from llm_trainer.algorithms.models import resolve_device

    where = resolve_device(device)
    if precision == "auto":
        bf16 = where == "cuda" and torch.cuda.is_bf16_supported()
        return where, "bf16" if bf16 else "fp32"
    if precision == "bf16" and where != "cuda":
        raise ValueError("bf16 is measured on a GPU only (no speed-up on these CPUs)")
    return where, precision


def _device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return str(torch.cuda.get_device_name())
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _reset_peak_memory(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_memory_gib(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def _result(
    path: str,
    size_name: str,
    model: Any,
    *,
    device: str,
    precision: str,
    sequence_length: float,
    batch_size: int,
    steps: int,
    tokens: int,
    seconds: float,
) -> MFUResult:
    from llm_trainer.agents.tinylm import count_parameters

    n = flop_parameters(model)
    config = model.config
    per_token = flops_per_token(
        n, int(config.num_hidden_layers), int(config.hidden_size), sequence_length
    )
    tokens_per_second = tokens / seconds if seconds > 0 else 0.0
    achieved = per_token * tokens_per_second / 1e12
    name = _device_name(device)
    peak = peak_bf16_tflops(name) if device == "cuda" and precision == "bf16" else None
    return MFUResult(
        path=path,
        size=size_name,
        device=device,
        device_name=name,
        precision=precision,
        parameters=count_parameters(model),
        flop_parameters=n,
        sequence_length=sequence_length,
        batch_size=batch_size,
        steps=steps,
        tokens=tokens,
        seconds=seconds,
        tokens_per_second=tokens_per_second,
        flops_per_token=per_token,
        achieved_tflops=achieved,
        peak_tflops=peak,
        mfu=achieved / peak if peak else None,
        peak_memory_gib=_peak_memory_gib(device),
    )


def bench_loop(
    size_name: str,
    *,
    steps: int = 20,
    warmup: int = 3,
    device: str = "auto",
    precision: Precision = "auto",
    seed: int = 0,
) -> MFUResult:
    """SFT steps of a fresh ``size_name`` model in a plain loop: packed sequences, causal-LM
    loss on every token, AdamW (fused on a GPU), autocast in ``precision`` (weights fp32).
    ``warmup`` steps run first and are not timed."""
    import contextlib

    import torch

    from llm_trainer.agents.tinylm import build_tokenizer

    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got {steps} and {warmup}")
    size = SIZES[size_name]
    where, precision = _resolve(device, precision)
    model = build_sft_model(size, seed=seed).to(where).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=where == "cuda")
    batches = packed_batches(
        demonstrations(64), build_tokenizer(), size.batch_size, size.sequence_length
    )
    autocast = (
        torch.autocast(where, dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )

    def step() -> None:
        ids = torch.tensor(next(batches), dtype=torch.long, device=where)
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    _sync(where)
    _reset_peak_memory(where)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(where)
    seconds = time.perf_counter() - start
    return _result(
        "loop",
        size_name,
        model,
        device=where,
        precision=precision,
        sequence_length=float(size.sequence_length),
        batch_size=size.batch_size,
        steps=steps,
        tokens=steps * size.batch_size * size.sequence_length,
        seconds=seconds,
    )


def bench_trl(
    size_name: str,
    work_dir: str | Path,
    *,
    steps: int = 20,
    warmup: int = 3,
    device: str = "auto",
    precision: Precision = "auto",
    seed: int = 0,
) -> MFUResult:
    """SFT steps of a fresh ``size_name`` model through the project's SFT path
    (:class:`~llm_trainer.algorithms.sft.SFTTrainer`, a run directory under ``work_dir``), one
    oracle episode per row. Timed from the end of step ``warmup`` to the end of training;
    tokens are the non-padding ones TRL counts."""
    from transformers import TrainerCallback

    from llm_trainer.agents.tinylm import build_tokenizer
    from llm_trainer.algorithms.config import TrainConfig
    from llm_trainer.algorithms.sft import SFTTrainer
    from llm_trainer.core.rundir import RunDir

    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got {steps} and {warmup}")
    size = SIZES[size_name]
    where, precision = _resolve(device, precision)
    model = build_sft_model(size, seed=seed).to(where)

    class Timer(TrainerCallback):
        """Time and TRL's token count at the end of the warm-up and of training."""

        def __init__(self) -> None:
            self.marks: list[tuple[float, int]] = []

        def _mark(self, state: Any) -> None:
            _sync(where)
            self.marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if warmup == 0:
                _reset_peak_memory(where)
                self._mark(state)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == warmup:
                _reset_peak_memory(where)
                self._mark(state)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._mark(state)

    timer = Timer()
    config = TrainConfig(
        max_steps=warmup + steps,
        batch_size=size.batch_size,
        learning_rate=1e-4,
        lr_scheduler="constant",
        warmup_steps=0,
        max_length=size.sequence_length,
        precision=precision,
        logging_steps=max(1, warmup + steps),
        save_steps=0,
    )
    run = RunDir.create(Path(work_dir), f"mfu-{size_name}", {}, seed)
    trainer = SFTTrainer(model, build_tokenizer(), config, run, seed=seed, callbacks=[timer])
    trainer.train(demonstrations(size.batch_size * (warmup + steps)))
    (t0, n0), (t1, n1) = timer.marks[0], timer.marks[-1]
    tokens = n1 - n0
    return _result(
        "trl",
        size_name,
        trainer.model,
        device=where,
        precision=precision,
        sequence_length=tokens / (steps * size.batch_size),
        batch_size=size.batch_size,
        steps=steps,
        tokens=tokens,
        seconds=t1 - t0,
    )


def as_json(results: Sequence[MFUResult]) -> str:
    """One JSON line: ``{"results": [...]}`` (each result's fields)."""
    return json.dumps({"results": [asdict(r) for r in results]})
