"""The embedded default model: a byte-level tokenizer and a tiny Llama, built locally.

No model can be downloaded on the machines this project targets, so llm-trainer ships a model it
builds from nothing: :func:`build_tokenizer` makes a byte-level tokenizer with the
``tokenizers`` library (256 byte symbols, so it round-trips any UTF-8 text, plus a few special
tokens), and :func:`build_model` a randomly initialised ``LlamaForCausalLM``. Both save with
``save_pretrained`` into one plain directory (:func:`create_tiny_model`) that
``AutoTokenizer`` / ``AutoModelForCausalLM`` and vLLM load like any Hugging Face model; any other
local model directory (e.g. a Qwen instruct model) can take its place.

Tokens: ``<pad> <bos> <eos> <unk>``, the role markers ``<|system|> <|user|> <|assistant|>
<|tool|>`` (special), and the protocol tags ``<tool_call> </tool_call> <answer> </answer>`` as
single ordinary tokens, which shortens sequences and makes the format easy to learn; they still
decode to their text, so the tokenizer round-trips everything.

Chat template (compact, one line per turn, ``<eos>`` ends every turn)::

    <bos><|system|>SYSTEM PROMPT
    Tools: calculator(expression), weather(city, date)<eos><|user|>TASK<eos>
    <|assistant|><tool_call>{...}</tool_call><eos><|tool|>RESULT<eos><|assistant|>...

Assistant turns are wrapped in ``{% generation %}`` so TRL's ``assistant_only_loss`` trains on
exactly the assistant tokens (tool results are masked out).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch and transformers are imported only when a model is built
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|tool|>")
TAG_TOKENS = ("<tool_call>", "</tool_call>", "<answer>", "</answer>")

# Jinja chat template. Tools are listed compactly as name(arg, ...); the env's system prompt
# already explains the call format. Assistant messages may carry OpenAI-style `tool_calls`.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- set ns = namespace(tools_done=false) -%}"
    "{%- macro tool_line(tools) -%}"
    "Tools: {% for t in tools %}{% set f = t.function if t.function is defined else t %}"
    "{{ f.name }}({{ (f.parameters.properties.keys() if f.parameters is defined and "
    "f.parameters.properties is defined else []) | join(', ') }})"
    "{{ ', ' if not loop.last }}{% endfor %}"
    "{%- endmacro -%}"
    "{%- if tools and (not messages or messages[0].role != 'system') -%}"
    "<|system|>{{ tool_line(tools) }}<eos>{%- set ns.tools_done = true -%}"
    "{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' -%}"
    "<|system|>{{ m.content }}{% if tools and not ns.tools_done %}{{ '\\n' }}{{ tool_line(tools) }}"
    "{%- set ns.tools_done = true -%}{% endif %}<eos>"
    "{%- elif m.role == 'user' -%}"
    "<|user|>{{ m.content }}<eos>"
    "{%- elif m.role == 'assistant' -%}"
    "<|assistant|>{% generation %}{{ m.content if m.content else '' }}"
    "{%- if m.tool_calls is defined and m.tool_calls -%}{% for c in m.tool_calls %}"
    "{% set f = c.function if c.function is defined else c %}"
    '<tool_call>{"name": {{ f.name | tojson }}, "arguments": {{ f.arguments | tojson }}}'
    "</tool_call>{% endfor %}{%- endif -%}<eos>{% endgeneration %}"
    "{%- elif m.role == 'tool' -%}"
    "<|tool|>{{ m.content }}<eos>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


@dataclass(frozen=True, slots=True)
class TinyLMConfig:
    """Size of the tiny Llama. The defaults are the embedded default model."""

    n_layers: int = 4
    """Transformer blocks."""
    hidden_size: int = 256
    """Width of the residual stream."""
    n_heads: int = 4
    """Attention heads (``hidden_size`` must be divisible by it)."""
    intermediate_size: int = 704
    """Width of the SwiGLU MLP."""
    max_position_embeddings: int = 1024
    """Longest sequence (in bytes, roughly characters) the model sees."""
    tie_word_embeddings: bool = True
    """Share input and output embeddings (fewer parameters for a tiny model)."""

    def __post_init__(self) -> None:
        for name in (
            "n_layers",
            "hidden_size",
            "n_heads",
            "intermediate_size",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TinyLMConfig.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by n_heads ({self.n_heads})"
            )


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The byte-level tokenizer with the chat template, built locally (no download)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    # use_regex=False: no word splitting, every byte is one symbol; nothing is lost.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS + ROLE_TOKENS]
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",  # generation pads on the left
        model_max_length=TinyLMConfig().max_position_embeddings,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(
    config: TinyLMConfig | None = None, *, seed: int = 0, vocab_size: int | None = None
) -> LlamaForCausalLM:
    """A randomly initialised tiny Llama; the same seed gives the same weights.

    Initialisation draws from a forked torch RNG, so the process-wide generator is untouched.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = config or TinyLMConfig()
    tokenizer_size = vocab_size or len(build_tokenizer())
    llama = LlamaConfig(
        vocab_size=tokenizer_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=SPECIAL_TOKENS.index("<bos>"),
        eos_token_id=SPECIAL_TOKENS.index("<eos>"),
        pad_token_id=SPECIAL_TOKENS.index("<pad>"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama)
    model.generation_config.pad_token_id = llama.pad_token_id
    model.generation_config.eos_token_id = llama.eos_token_id
    model.generation_config.bos_token_id = llama.bos_token_id
    return model


def create_tiny_model(
    path: str | Path, config: TinyLMConfig | None = None, *, seed: int = 0
) -> Path:
    """Build the tokenizer and a fresh model and save both into ``path`` (a HF model dir)."""
    import json

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_model(config, seed=seed, vocab_size=len(tokenizer))
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    meta = {"llm_trainer": {"tinylm": asdict(config or TinyLMConfig()), "seed": seed}}
    (path / "llm_trainer.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def count_parameters(model: Any) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
