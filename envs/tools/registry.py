"""``ToolRegistry``: tool specs (OpenAI function format) and execution with a time limit.

A tool is a function ``arguments -> str`` plus its JSON-schema spec. :meth:`ToolRegistry.call`
never raises for anything the *agent* got wrong (unknown tool, bad arguments, a timeout): it
returns a :class:`ToolResult` with ``ok=False`` and a clear error message, which the env hands
back to the agent as the tool's output.

The per-call time limit uses ``SIGALRM`` (an interval timer) when called from the main thread
on a POSIX system, which interrupts even a runaway pure-Python computation. Elsewhere (worker
threads, Windows) the call runs in a helper thread that is abandoned after the limit: the agent
gets its timeout result on time, but the computation is not killed, so tools must bound their
own work (the bundled ones do, by construction).

The cyclic garbage collector is paused for the call (reference counting still frees memory),
so a full collection of a large process (one that has loaded torch and vLLM) is not charged
to the tool: under a 1 s limit it made a microsecond calculator call time out at random, and
an alarm that fires inside a collection callback is swallowed by the interpreter.
"""

from __future__ import annotations

import gc
import importlib
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any, NamedTuple

from llm_trainer.core.errors import ToolError, ToolTimeoutError, suggest
from llm_trainer.core.records import ToolCall, freeze

ToolFn = Callable[[Mapping[str, Any]], str]

DEFAULT_TIME_LIMIT_S = 1.0


@dataclass(frozen=True, slots=True)
class Tool:
    """A callable tool with its JSON-schema spec (``{"type": "function", "function": {...}}``)."""

    spec: Mapping[str, Any]
    fn: ToolFn
    time_limit_s: float = DEFAULT_TIME_LIMIT_S

    @property
    def name(self) -> str:
        return str(self.spec["function"]["name"])

    def __post_init__(self) -> None:
        function = self.spec.get("function") if isinstance(self.spec, Mapping) else None
        if self.spec.get("type") != "function" or not isinstance(function, Mapping):
            raise ValueError(
                f"tool spec must be {{'type': 'function', 'function': {{...}}}}, got {self.spec!r}"
            )
        if not isinstance(function.get("name"), str) or "parameters" not in function:
            raise ValueError(f"tool spec needs a string 'name' and 'parameters': {function!r}")
        if self.time_limit_s <= 0:
            raise ValueError(f"time_limit_s must be positive, got {self.time_limit_s}")


class ToolResult(NamedTuple):
    """What a call returned: ``content`` is the tool output, or the error message."""

    name: str
    content: str
    ok: bool


class ToolRegistry:
    """An ordered set of tools, looked up by name.

    >>> from llm_trainer.envs.tools import calculator_tool
    >>> tools = ToolRegistry([calculator_tool()])
    >>> tools.call(ToolCall("calculator", {"expression": "6 * 7"}))
    ToolResult(name='calculator', content='42', ok=True)
    >>> tools.call(ToolCall("calculater", {})).content
    "error: unknown tool 'calculater' (did you mean 'calculator'?); available: calculator"
    """

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        self._specs = tuple(freeze(t.spec) for t in self._tools.values())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)

    @property
    def specs(self) -> tuple[Mapping[str, Any], ...]:
        """The specs in registration order, deeply read-only (so an agent cannot corrupt them
        and every ``info`` may share them); ``to_plain(specs)`` gives JSON-ready dicts."""
        return self._specs if self._tools else ()

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __len__(self) -> int:
        return len(self._tools)

    def call(self, call: ToolCall) -> ToolResult:
        """Execute ``call``; errors come back as ``ToolResult(ok=False, content="error: ...")``."""
        tool = self._tools.get(call.name)
        if tool is None:
            available = ", ".join(self._tools) or "none"
            hint = suggest(call.name, self._tools)
            return ToolResult(
                call.name, f"error: unknown tool {call.name!r}{hint}; available: {available}", False
            )
        try:
            content = _run_with_time_limit(tool.fn, call.arguments, tool.time_limit_s)
        except ToolError as exc:
            return ToolResult(call.name, f"error: {exc}", False)
        return ToolResult(call.name, content, True)


class _AlarmTimeout(BaseException):
    """Raised by the SIGALRM handler; a BaseException so tool code cannot swallow it."""


def _raise_timeout(signum: int, frame: FrameType | None) -> None:
    raise _AlarmTimeout


# The guard runs on every tool call. ``signal.signal`` wraps the C function with enum
# conversions that raise and catch an exception whenever the handler is a Python function
# (about 5 µs per call, measured); the C module ``_signal`` behind it has the same API.
_csignal: Any
try:
    _csignal = importlib.import_module("_signal")  # typeshed has no stub for it
except ImportError:  # pragma: no cover - not CPython
    _csignal = signal
_HAS_ALARM = hasattr(_csignal, "setitimer")


def _run_with_time_limit(fn: ToolFn, arguments: Mapping[str, Any], limit_s: float) -> str:
    if not (_HAS_ALARM and threading.get_ident() == threading.main_thread().ident):
        return _run_in_thread(fn, arguments, limit_s)
    # Install our handler for the duration of the call only, and put the previous one back.
    previous = _csignal.signal(signal.SIGALRM, _raise_timeout)
    collecting = gc.isenabled()
    gc.disable()
    _csignal.setitimer(signal.ITIMER_REAL, limit_s)
    try:
        return fn(arguments)
    except _AlarmTimeout:
        raise ToolTimeoutError(f"timed out after {limit_s:g} s") from None
    finally:
        _csignal.setitimer(signal.ITIMER_REAL, 0)
        _csignal.signal(signal.SIGALRM, previous)
        if collecting:
            gc.enable()


def _run_in_thread(fn: ToolFn, arguments: Mapping[str, Any], limit_s: float) -> str:
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(("ok", fn(arguments)))
        except BaseException as exc:  # handed back to the caller's thread below
            outcome.append(("error", exc))

    worker = threading.Thread(target=target, daemon=True, name="llm-trainer-tool")
    worker.start()
    worker.join(limit_s)
    if not outcome:
        raise ToolTimeoutError(f"timed out after {limit_s:g} s")
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return str(value)
