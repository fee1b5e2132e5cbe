"""Generation throughput of the backends on one model and one set of prompts.

What ``scripts/bench_generation.py`` runs: generated tokens per second for

* transformers, sequential (one sequence at a time: batch 1),
* transformers, batched (every prompt in one call: batch 64, and 512 rows with 8 samples),
* vLLM, batched (the engine's own scheduling),

each greedy and with ``samples`` completions per prompt, on the same model directory and the
same prompts: the first observation of every tool-use env, rendered with the chat template, the
env's system prompt and tools (350-450 tokens with the byte-level tiny model). Stop strings are
off, so every sequence runs to ``max_new_tokens`` unless the model ends it. Peak memory is the
peak resident set of this process and its children (vLLM's engine processes) during each run.

Targets (issue 3): batched >= 10x sequential; vLLM >= 2x transformers batched when sampling 8
per prompt.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llm_trainer.agents.backends.base import Backend, SamplingConfig, derive_seed


@dataclass(frozen=True, slots=True)
class GenerationRun:
    """One measured configuration."""

    backend: str
    """``transformers sequential``, ``transformers batched`` or ``vllm batched``."""
    mode: str
    """``greedy`` or ``sampled xN``."""
    prompts: int
    samples: int
    """Completions per prompt."""
    tokens: int
    """Generated tokens."""
    seconds: float
    peak_rss_mb: float
    """Peak resident memory of this process and its children during the run."""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 1)}


def bench_prompts(tokenizer: Any, n: int) -> list[list[int]]:
    """``n`` chat prompts (token ids): env tasks over every env id and seeds 0, 1, 2..."""
    import llm_trainer
    from llm_trainer.agents.backends.base import ChatPrompt, render_chat
    from llm_trainer.core.records import to_plain
    from llm_trainer.envs.registration import single_agent_ids

    env_ids = sorted(single_agent_ids())  # the gymnasium envs (not the PettingZoo ones)
    envs = {env_id: llm_trainer.make(env_id) for env_id in env_ids}
    prompts = []
    for i in range(n):
        observation, info = envs[env_ids[i % len(env_ids)]].reset(seed=i // len(env_ids))
        messages = (
            {"role": "system", "content": info["system_prompt"]},
            {"role": "user", "content": observation},
        )
        prompts.append(render_chat(tokenizer, ChatPrompt(messages, tuple(to_plain(info["tools"])))))
    return prompts


@contextlib.contextmanager
def peak_rss() -> Iterator[list[float]]:
    """Sample the resident memory of this process and its children every 50 ms; the peak (MB)
    is in the yielded list's first item when the block ends."""
    import psutil

    me = psutil.Process()
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while True:
            total = 0
            for p in (me, *me.children(recursive=True)):
                with contextlib.suppress(psutil.Error):  # a child that just ended
                    total += p.memory_info().rss
            peak[0] = max(peak[0], total / 2**20)
            if done.wait(0.05):
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()


def _measure(
    name: str,
    mode: str,
    samples: int,
    prompts: list[list[int]],
    run: Callable[[], list[int]],
) -> GenerationRun:
    with peak_rss() as peak:
        start = time.perf_counter()
        lengths = run()
        seconds = time.perf_counter() - start
    return GenerationRun(name, mode, len(prompts), samples, sum(lengths), seconds, peak[0])


def _lengths(results: list[list[Any]]) -> list[int]:
    return [len(g.token_ids) for samples in results for g in samples]


def bench_transformers(
    backend: Backend,
    prompts: list[list[int]],
    sequential_prompts: list[list[int]],
    *,
    max_new_tokens: int,
    samples: int,
    seed: int = 0,
) -> list[GenerationRun]:
    """Sequential (one sequence per call) and batched (every prompt in one call) runs."""
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens, stop=())
    sampled = SamplingConfig(
        temperature=1.0, max_new_tokens=max_new_tokens, n=samples, seed=seed, stop=()
    )
    backend.generate(prompts[:2], greedy)  # warm-up (allocator, first-call overheads)

    def sequential_greedy() -> list[int]:
        return [n for p in sequential_prompts for n in _lengths(backend.generate([p], greedy))]

    def sequential_sampled() -> list[int]:
        lengths = []
        for i, p in enumerate(sequential_prompts):
            for k in range(samples):
                params = SamplingConfig(
                    temperature=1.0,
                    max_new_tokens=max_new_tokens,
                    seed=derive_seed(seed, i, k),
                    stop=(),
                )
                lengths += _lengths(backend.generate([p], params))
        return lengths

    return [
        _measure("transformers sequential", "greedy", 1, sequential_prompts, sequential_greedy),
        _measure(
            "transformers sequential",
            f"sampled x{samples}",
            samples,
            sequential_prompts,
            sequential_sampled,
        ),
        _measure(
            "transformers batched",
            "greedy",
            1,
            prompts,
            lambda: _lengths(backend.generate(prompts, greedy)),
        ),
        _measure(
            "transformers batched",
            f"sampled x{samples}",
            samples,
            prompts,
            lambda: _lengths(backend.generate(prompts, sampled)),
        ),
    ]


def bench_vllm(
    model_dir: Path,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    samples: int,
    dtype: str,
    kv_cache_gib: float,
    seed: int = 0,
) -> tuple[list[GenerationRun], float]:
    """vLLM runs (the engine in its own processes: call under a ``__main__`` guard); returns
    the runs and the engine's start-up time."""
    from llm_trainer.agents.backends.vllm_backend import VLLMBackend

    start = time.perf_counter()
    with peak_rss() as start_peak:
        backend = VLLMBackend(model_dir, dtype=dtype, seed=seed, kv_cache_gib=kv_cache_gib)
    startup = time.perf_counter() - start
    try:
        greedy = SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens, stop=())
        sampled = SamplingConfig(
            temperature=1.0, max_new_tokens=max_new_tokens, n=samples, seed=seed, stop=()
        )
        backend.generate(prompts[:2], greedy)  # warm-up
        runs = [
            _measure(
                "vllm batched",
                "greedy",
                1,
                prompts,
                lambda: _lengths(backend.generate(prompts, greedy)),
            ),
            _measure(
                "vllm batched",
                f"sampled x{samples}",
                samples,
                prompts,
                lambda: _lengths(backend.generate(prompts, sampled)),
            ),
        ]
    finally:
        backend.close()
    runs = [
        GenerationRun(**{**asdict(r), "peak_rss_mb": max(r.peak_rss_mb, start_peak[0])})
        for r in runs
    ]
    return runs, startup


def ratios(runs: list[GenerationRun], samples: int) -> dict[str, float]:
    """The issue's target ratios from a set of runs (missing runs are left out)."""
    rate = {(r.backend, r.mode): r.tokens_per_s for r in runs}
    out = {}
    for mode in ("greedy", f"sampled x{samples}"):
        seq = rate.get(("transformers sequential", mode))
        batched = rate.get(("transformers batched", mode))
        vllm = rate.get(("vllm batched", mode))
        if seq and batched:
            out[f"batched/sequential ({mode})"] = batched / seq
        if batched and vllm:
            out[f"vllm/transformers batched ({mode})"] = vllm / batched
    return out
