"""The one interface every generation backend implements, and what they share.

A backend turns prompts into :class:`~llm_trainer.core.records.Generation` records: the text
the env receives, the exact prompt and completion token ids, and one raw log-prob per sampled
token, so that a trainer learns from exactly what was sampled. Local backends (transformers,
vLLM) render chat prompts with the tokenizer's chat template and generate from token ids;
the OpenAI-compatible HTTP backend sends the chat messages and lets the server render them.

Only :meth:`Backend.generate` is abstract; :meth:`Backend.chat` renders and generates, and the
HTTP backend overrides it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llm_trainer.core.errors import BackendError, ConfigError
from llm_trainer.core.records import Generation

#: The protocol's closing tags: generation stops right after them (the env needs the tag).
DEFAULT_STOP: tuple[str, ...] = ("</tool_call>", "</answer>")

#: A prompt for :meth:`Backend.generate`: token ids, or text that is tokenized as is.
Prompt = Sequence[int] | str


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    """How to sample one completion (or ``n``) per prompt.

    >>> SamplingConfig(temperature=0.0).greedy
    True
    >>> SamplingConfig(top_p=1.5)
    Traceback (most recent call last):
    ...
    llm_trainer.core.errors.ConfigError: SamplingConfig.top_p must be in (0, 1], got 1.5
    """

    temperature: float = 1.0
    """Softmax temperature; 0 means greedy decoding (argmax)."""
    top_p: float = 1.0
    """Nucleus sampling: sample from the smallest set of tokens whose probability reaches it."""
    max_new_tokens: int = 128
    """Most tokens generated per completion."""
    n: int = 1
    """Completions per prompt (for GRPO-style groups); greedy decoding repeats the one."""
    seed: int | None = 0
    """Seeds sampling: the same seed and the same prompts give the same completions on the
    transformers backend (vLLM seeds each request where the platform allows, see its docs).
    ``None`` draws fresh randomness."""
    stop: tuple[str, ...] = DEFAULT_STOP
    """Stop strings; the returned text and token ids end with the one that stopped it."""

    def __post_init__(self) -> None:
        stop: Any = self.stop  # validated as untrusted input (configs come from JSON/YAML)
        if isinstance(stop, str) or not all(isinstance(s, str) and s for s in stop):
            raise ConfigError(
                f"SamplingConfig.stop must be a tuple of non-empty strings, got {stop!r}"
            )
        object.__setattr__(self, "stop", tuple(stop))
        if not (isinstance(self.temperature, int | float) and self.temperature >= 0):
            raise ConfigError(
                f"SamplingConfig.temperature must be a number >= 0, got {self.temperature!r}"
            )
        if not (isinstance(self.top_p, int | float) and 0 < self.top_p <= 1):
            raise ConfigError(f"SamplingConfig.top_p must be in (0, 1], got {self.top_p!r}")
        for name in ("max_new_tokens", "n"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"SamplingConfig.{name} must be an int >= 1, got {value!r}")
        seed = self.seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"SamplingConfig.seed must be an int or None, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        """Whether decoding is greedy (temperature 0)."""
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the inverse of :meth:`from_dict`)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "n": self.n,
            "seed": self.seed,
            "stop": list(self.stop),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplingConfig:
        """Build from a dict, rejecting unknown keys with an error that names them."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                f"unknown SamplingConfig field(s) {unknown}; "
                f"known: {sorted(cls.__dataclass_fields__)}"
            )
        values = dict(data)
        if "stop" in values and isinstance(values["stop"], list):
            values["stop"] = tuple(values["stop"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """A chat prompt: messages (OpenAI format: ``role`` and ``content``) and tool specs.

    This is exactly what a local backend renders with the chat template (with the generation
    prompt added), and what the HTTP backend sends.
    """

    messages: tuple[Mapping[str, Any], ...]
    tools: tuple[Mapping[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "tools", tuple(self.tools))

    def plain_messages(self) -> list[dict[str, Any]]:
        """The messages as fresh plain dicts (chat templates and JSON want those)."""
        return [dict(m) for m in self.messages]

    def plain_tools(self) -> list[dict[str, Any]] | None:
        """The tool specs as plain dicts, or ``None`` when there are none."""
        from llm_trainer.core.records import to_plain

        return [to_plain(t) for t in self.tools] or None


def derive_seed(seed: int | None, *parts: object) -> int | None:
    """A 31-bit seed derived from ``seed`` and ``parts`` (``None`` stays ``None``); see
    :func:`llm_trainer.core.seeding.derive_seed`.

    >>> derive_seed(0, 1) == derive_seed(0, 1) != derive_seed(0, 2)
    True
    """
    if seed is None:
        return None
    from llm_trainer.core.seeding import derive_seed as derive

    return derive(seed, *parts)


class Backend(abc.ABC):
    """A generation backend: :meth:`generate` is the one method to implement.

    Attributes:
        spec: The spec string it was built from (``transformers:DIR``...); errors name it.
        tokenizer: The Hugging Face tokenizer (local backends), or ``None``.
    """

    #: The spec prefix (``transformers``, ``vllm``, ``openai``).
    kind: ClassVar[str] = ""

    spec: str
    tokenizer: Any = None

    @abc.abstractmethod
    def generate(self, prompts: Sequence[Prompt], params: SamplingConfig) -> list[list[Generation]]:
        """``params.n`` generations per prompt, in prompt order.

        Raises:
            BackendError: when the backend cannot generate (naming the backend).
        """

    def chat(self, prompts: Sequence[ChatPrompt], params: SamplingConfig) -> list[list[Generation]]:
        """Render each chat prompt with the chat template and generate from it."""
        return self.generate([self.render(p) for p in prompts], params)

    def render(self, prompt: ChatPrompt) -> list[int]:
        """The prompt's token ids: the chat template with the generation prompt added.

        Raises:
            BackendError: for a backend without a local tokenizer.
        """
        if self.tokenizer is None:
            raise BackendError(f"{self.spec}: this backend has no local tokenizer to render with")
        return render_chat(self.tokenizer, prompt)

    def count_tokens(self, prompt: ChatPrompt) -> int:
        """Length of the rendered prompt in tokens (what the token budget limits)."""
        return len(self.render(prompt))

    @property
    def max_context(self) -> int | None:
        """The longest sequence (prompt + completion) the model takes, when known."""
        return None

    def save_model(self, path: Path) -> None:
        """Write the model (or adapter) and tokenizer into ``path`` (a new directory).

        Raises:
            BackendError: for a backend that holds no model (an HTTP server).
        """
        raise BackendError(f"{self.spec}: this backend holds no model that could be saved")

    def close(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Release the model, engine or connection (idempotent)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


def render_chat(tokenizer: Any, prompt: ChatPrompt) -> list[int]:
    """The token ids of ``prompt`` under the tokenizer's chat template, generation prompt added
    (what a local backend feeds the model)."""
    text = tokenizer.apply_chat_template(
        prompt.plain_messages(),
        tools=prompt.plain_tools(),
        add_generation_prompt=True,
        tokenize=False,
    )
    # The template writes the special tokens (BOS...) itself: do not add them twice. And
    # verbose=False: a prompt longer than the model takes is the token budget's business (the
    # agent shortens it), not a warning for every length probe.
    ids: list[int] = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return ids


def encode_prompts(tokenizer: Any, prompts: Sequence[Prompt]) -> list[list[int]]:
    """Token ids of each prompt: ids pass through, text is tokenized without special tokens."""
    out: list[list[int]] = []
    for prompt in prompts:
        if isinstance(prompt, str):
            out.append(
                list(tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"])
            )
        else:
            out.append([int(t) for t in prompt])
    return out


def eos_token_ids(tokenizer: Any, generation_config: Any = None) -> frozenset[int]:
    """End-of-sequence ids: the tokenizer's and the model's generation config's (may be a list,
    e.g. Qwen's ``<|im_end|>`` and ``<|endoftext|>``)."""
    ids: set[int] = set()
    for value in (
        getattr(tokenizer, "eos_token_id", None),
        getattr(generation_config, "eos_token_id", None),
    ):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return frozenset(ids)


@dataclass(frozen=True, slots=True)
class StopTokens:
    """Stop strings split into those that are one token (exact, by id) and the rest (matched
    in the decoded text)."""

    token_ids: frozenset[int]
    strings: tuple[str, ...]

    @classmethod
    def build(cls, tokenizer: Any, stop: Sequence[str]) -> StopTokens:
        ids: set[int] = set()
        strings: list[str] = []
        for s in stop:
            encoded = tokenizer.encode(s, add_special_tokens=False)
            if len(encoded) == 1 and tokenizer.decode(encoded) == s:
                ids.add(int(encoded[0]))
            else:
                strings.append(s)
        return cls(frozenset(ids), tuple(strings))


def cut_at_stop_string(text: str, stops: Sequence[str]) -> str | None:
    """The text up to and including the first stop string in it, or ``None`` if none occurs.

    >>> cut_at_stop_string("a</answer>\\nmore", ["</answer>"])
    'a</answer>'
    """
    best = -1
    for s in stops:
        i = text.find(s)
        if i >= 0 and (best < 0 or i + len(s) < best):
            best = i + len(s)
    return text[:best] if best >= 0 else None


def decode_completion(
    tokenizer: Any, token_ids: Sequence[int], stops: StopTokens, finish_reason: str
) -> str:
    """The completion's text: special tokens (EOS) skipped, cut right after a stop string."""
    text: str = tokenizer.decode(list(token_ids), skip_special_tokens=True)
    if finish_reason == "stop" and stops.strings:
        cut = cut_at_stop_string(text, stops.strings)
        if cut is not None:
            return cut
    return text
