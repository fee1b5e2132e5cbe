"""The transformers backend: batched, KV-cached sampling from any local causal LM, on CPU.

A small decoding loop of our own rather than ``model.generate``, because it gives exactly what a
trainer needs and nothing it does not: one raw log-prob per sampled token computed on the fly
(``generate`` would have to keep every step's full logits, ``batch x vocab`` floats per token),
exact stops on token ids, rows dropped from the batch as they finish, ``n`` samples per prompt
sharing one prefill, and sampling from an explicit ``torch.Generator`` (the process-wide RNG is
never touched).

The loop: left-pad the prompts, prefill them once (only the last position's logits), repeat the
KV cache ``n`` times, then one token per step for every unfinished row. The KV cache is
preallocated for the longest sequence and written in place: transformers' ``DynamicCache``
concatenates at every step, which copied the whole cache per token and took half the time of a
64-prompt batch (with 512 rows, most of it). Greedy decoding is the
argmax; sampling divides the logits by the temperature, keeps the top-p nucleus and draws from
the seeded generator. The recorded log-prob is the log-softmax of the *unmodified* logits at the
sampled token (see :class:`~llm_trainer.core.records.Generation`).

Threads: a tiny model's matrices are too small for several CPU threads to pay off, and on a
busy machine OpenMP's spin-waiting makes it much worse (one episode of the 3.3M-parameter tiny
model: 1.7 s with one thread, 27 s with two while other processes used the cores). So by
default (``num_threads="auto"``) a model under 50M parameters decodes with one thread, and
larger ones with torch's setting; the process-wide setting is restored after each call.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llm_trainer.agents.backends.base import (
    Backend,
    Prompt,
    SamplingConfig,
    StopTokens,
    decode_completion,
    derive_seed,
    encode_prompts,
    eos_token_ids,
)
from llm_trainer.core.errors import BackendError, ConfigError
from llm_trainer.core.records import FinishReason, Generation

if TYPE_CHECKING:
    import torch

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
#: Below this many parameters, ``num_threads="auto"`` decodes with one CPU thread.
SMALL_MODEL_PARAMETERS = 50_000_000


class TransformersBackend(Backend):
    """Generate with a Hugging Face causal LM held in this process.

    Build it from a directory with :meth:`from_pretrained`, or wrap a model that is being
    trained (the trainer keeps ownership): ``TransformersBackend(model, tokenizer)``.

    Args:
        model: A ``transformers`` causal LM (a peft model works too).
        tokenizer: Its tokenizer, with a chat template.
        spec: Names the backend in errors (``transformers:DIR``).
        max_batch_rows: Most sequences (prompts x ``n``) decoded together; larger batches are
            split into chunks of this size.
        num_threads: CPU threads while generating: an int, ``"auto"`` (one for a model under
            50M parameters, else torch's setting) or ``None`` (torch's setting).

    >>> from llm_trainer.agents.tinylm import build_model, build_tokenizer
    >>> backend = TransformersBackend(build_model(seed=0), build_tokenizer())
    >>> params = SamplingConfig(temperature=0.0, max_new_tokens=4)
    >>> [g] = backend.generate(["<bos><|user|>hi<eos><|assistant|>"], params)[0]
    >>> len(g.token_ids) == len(g.logprobs) == 4, g.finish_reason
    (True, 'length')
    """

    kind = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        spec: str = "transformers:<in-memory model>",
        max_batch_rows: int = 512,
        num_threads: int | Literal["auto"] | None = "auto",
    ) -> None:
        if max_batch_rows < 1:
            raise ConfigError(f"max_batch_rows must be >= 1, got {max_batch_rows}")
        if num_threads not in ("auto", None) and not (
            isinstance(num_threads, int) and not isinstance(num_threads, bool) and num_threads >= 1
        ):
            raise ConfigError(
                f"num_threads must be an int >= 1, 'auto' or None, got {num_threads!r}"
            )
        if num_threads == "auto":
            small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS
            num_threads = 1 if small else None
        self.num_threads: int | None = num_threads
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_batch_rows = max_batch_rows
        self._eos = eos_token_ids(tokenizer, getattr(model, "generation_config", None))
        pad = tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else min(self._eos, default=0))
        self._stops: dict[tuple[str, ...], StopTokens] = {}

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        dtype: Dtype = "auto",
        max_batch_rows: int = 512,
        num_threads: int | Literal["auto"] | None = "auto",
    ) -> TransformersBackend:
        """Load a model directory (or a peft adapter directory) and its tokenizer.

        Raises:
            ConfigError: for a missing directory or an unknown ``dtype``.
            BackendError: when transformers cannot load the model.
        """
        if dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"transformers backend: model directory {str(path)!r} not found")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        try:
            if (path / "adapter_config.json").is_file():
                from peft import AutoPeftModelForCausalLM

                model = AutoPeftModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype)
            else:
                model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype)
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError, KeyError) as exc:
            raise BackendError(f"transformers:{path}: cannot load the model: {exc}") from exc
        model.eval()
        return cls(
            model,
            tokenizer,
            spec=f"transformers:{path}",
            max_batch_rows=max_batch_rows,
            num_threads=num_threads,
        )

    @property
    def max_context(self) -> int | None:
        config = getattr(self.model, "config", None)
        value = getattr(config, "max_position_embeddings", None)
        return int(value) if isinstance(value, int) else None

    def save_model(self, path: Path) -> None:
        """``save_pretrained`` the model (a peft model saves its adapter) and the tokenizer."""
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))

    def close(self) -> None:
        self.model = None

    # -- generation ----------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: SamplingConfig) -> list[list[Generation]]:
        if self.model is None:
            raise BackendError(f"{self.spec}: the backend was closed")
        ids = encode_prompts(self.tokenizer, prompts)
        if not ids:
            return []
        for i, p in enumerate(ids):
            if not p:
                raise BackendError(f"{self.spec}: prompt {i} is empty")
        # Greedy decoding gives the same completion every time: decode it once.
        n = 1 if params.greedy else params.n
        per_chunk = max(1, self.max_batch_rows // n)
        out: list[list[Generation]] = []
        for start in range(0, len(ids), per_chunk):
            chunk = ids[start : start + per_chunk]
            seed = derive_seed(params.seed, start)
            try:
                with _torch_threads(self.num_threads):
                    rows = self._decode(chunk, params, n, seed)
            except (RuntimeError, ValueError, IndexError) as exc:  # torch errors, OOM
                raise BackendError(f"{self.spec}: generation failed: {exc}") from exc
            for i in range(len(chunk)):
                samples = rows[i * n : (i + 1) * n]
                out.append(samples * params.n if params.greedy else samples)
        return out

    def _stop_tokens(self, stop: tuple[str, ...]) -> StopTokens:
        if stop not in self._stops:
            self._stops[stop] = StopTokens.build(self.tokenizer, stop)
        return self._stops[stop]

    def _decode(
        self, prompts: list[list[int]], params: SamplingConfig, n: int, seed: int | None
    ) -> list[Generation]:
        """Decode ``n`` completions for each prompt; rows are prompt-major."""
        import torch

        model = self.model
        device = next(model.parameters()).device
        stops = self._stop_tokens(params.stop)
        end_ids = self._eos | stops.token_ids
        context = self.max_context
        lengths = [len(p) for p in prompts]
        width = max(lengths)
        if context is not None and width >= context:
            raise BackendError(
                f"{self.spec}: a prompt of {width} tokens leaves no room in the model's context "
                f"of {context} tokens"
            )
        generator: torch.Generator | None = None
        if not params.greedy:
            generator = torch.Generator(device=device)
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(seed)

        input_ids = torch.full((len(prompts), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            attention[i, width - len(p) :] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        input_ids, attention, positions = (t.to(device) for t in (input_ids, attention, positions))

        # Per row (prompt-major, n per prompt): the budget left by the context and max_new.
        budgets = [
            min(params.max_new_tokens, (context - length) if context else params.max_new_tokens)
            for length in lengths
            for _ in range(n)
        ]
        tokens: list[list[int]] = [[] for _ in budgets]
        logprobs: list[list[float]] = [[] for _ in budgets]
        finish: list[FinishReason | None] = [None] * len(budgets)
        texts_needed = bool(stops.strings)

        with torch.inference_mode():
            cache = _make_cache(model, width + max(budgets))
            output = model(
                input_ids=input_ids,
                attention_mask=attention,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            logits = output.logits[:, -1, :].float()
            next_positions = positions[:, -1] + 1
            if n > 1:
                cache.batch_repeat_interleave(n)
                logits = logits.repeat_interleave(n, dim=0)
                attention = attention.repeat_interleave(n, dim=0)
                next_positions = next_positions.repeat_interleave(n, dim=0)
            live = list(range(len(budgets)))  # the row behind each batch position
            n_done = 0  # finished rows still in the batch (pruned in bulk: pruning copies)
            while True:
                raw = torch.log_softmax(logits, dim=-1)
                chosen = self._sample(logits, params, generator)
                chosen_logprobs = raw.gather(1, chosen[:, None])[:, 0]
                for row, token, lp in zip(
                    live, chosen.tolist(), chosen_logprobs.tolist(), strict=True
                ):
                    if finish[row] is not None:
                        continue
                    tokens[row].append(token)
                    logprobs[row].append(lp)
                    reason = self._finished(tokens[row], token, end_ids, stops, texts_needed)
                    if reason is None and len(tokens[row]) >= budgets[row]:
                        reason = "length"
                    if reason is not None:
                        finish[row] = reason
                        n_done += 1
                if n_done == len(live):
                    break
                if n_done * 4 >= len(live):
                    keep = [p for p, row in enumerate(live) if finish[row] is None]
                    index = torch.tensor(keep, device=device)
                    cache.batch_select_indices(index)
                    attention = attention[index]
                    next_positions = next_positions[index]
                    chosen = chosen[index]
                    live = [live[p] for p in keep]
                    n_done = 0
                attention = torch.cat([attention, attention.new_ones((len(live), 1))], dim=1)
                output = model(
                    input_ids=chosen[:, None],
                    attention_mask=attention,
                    position_ids=next_positions[:, None],
                    past_key_values=cache,
                    use_cache=True,
                )
                next_positions = next_positions + 1
                logits = output.logits[:, -1, :].float()

        generations = []
        for row, reason in enumerate(finish):
            assert reason is not None
            prompt = tuple(prompts[row // n])
            text = decode_completion(self.tokenizer, tokens[row], stops, reason)
            generations.append(
                Generation(text, prompt, tuple(tokens[row]), tuple(logprobs[row]), reason)
            )
        return generations

    @staticmethod
    def _sample(
        logits: torch.Tensor, params: SamplingConfig, generator: torch.Generator | None
    ) -> torch.Tensor:
        import torch

        if params.greedy:
            return logits.argmax(dim=-1)
        scaled = logits / params.temperature
        probs = torch.softmax(scaled, dim=-1)
        if params.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            # Drop a token when the mass before it already reaches top_p (the first stays).
            drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= params.top_p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(1, order, sorted_probs)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    def _finished(
        self,
        row_tokens: list[int],
        token: int,
        end_ids: frozenset[int],
        stops: StopTokens,
        texts_needed: bool,
    ) -> FinishReason | None:
        if token in end_ids:
            return "eos" if token in self._eos and token not in stops.token_ids else "stop"
        if texts_needed:
            # A multi-token stop string can only end in the last few tokens: decode a tail
            # long enough to hold the longest one (each token is at least one character).
            longest = max(len(s) for s in stops.strings)
            tail = self.tokenizer.decode(row_tokens[-(longest + 2) :], skip_special_tokens=True)
            if any(s in tail for s in stops.strings):
                return "stop"
        return None


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (``None``: unchanged), then restore."""
    import torch

    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def _preallocated_layer() -> type[Any]:
    """A KV-cache layer that writes into buffers allocated once, instead of concatenating.

    It keeps ``DynamicLayer``'s contract (``keys``/``values`` hold exactly the cached positions,
    as views of the buffers), so attention and masks see what they would see with the dynamic
    cache. Built on first use: transformers is imported only when a model runs.
    """
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        def __init__(self, capacity: int) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.capacity = capacity
            self.length = 0

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            self.dtype, self.device = key_states.dtype, key_states.device
            batch, heads, _, _ = key_states.shape
            shape = (batch, heads, self.capacity)
            self.key_buffer = key_states.new_empty((*shape, key_states.shape[-1]))
            self.value_buffer = value_states.new_empty((*shape, value_states.shape[-1]))
            self.length = 0
            self.is_initialized = True

        def _expose(self) -> None:
            self.keys = self.key_buffer[:, :, : self.length]
            self.values = self.value_buffer[:, :, : self.length]

        def update(
            self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any
        ) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = key_states.shape[-2]
            if self.length + n > self.capacity:
                raise RuntimeError(f"KV cache of {self.capacity} positions is full")
            self.key_buffer[:, :, self.length : self.length + n] = key_states
            self.value_buffer[:, :, self.length : self.length + n] = value_states
            self.length += n
            self._expose()
            return self.keys, self.values

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self.is_initialized:
                self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
                self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
                self._expose()

        def batch_select_indices(self, indices: Any) -> None:
            if self.is_initialized:
                self.key_buffer = self.key_buffer[indices]
                self.value_buffer = self.value_buffer[indices]
                self._expose()

    return PreallocatedLayer


def _make_cache(model: Any, capacity: int) -> Any:
    """A ``DynamicCache`` whose plain full-attention layers are preallocated for ``capacity``
    positions; models with other layer kinds (sliding windows, linear attention) keep
    transformers' own layers."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        layer = _preallocated_layer()
        cache.layers = [layer(capacity) for _ in cache.layers]
    return cache
