"""The test harness of ``Code-v0``: the program the sandbox runs (``python -S harness.py``).

It is a script of the standard library only, sent into the sandbox as a file (read by
:func:`~llm_trainer.envs.problems.code.family.harness_source`), never imported by the judge.
Beside it in the work directory lie the agent's code (``solution.py``) and the hidden tests'
*inputs* (``tests.json``: the function's name, the per-test time limit and the argument lists;
the expected outputs stay with the judge). The run's nonce comes on stdin, so neither argv nor
the files show it.

What it does, and why:

* It keeps a private copy of stdout (``os.dup(1)``) for its result lines and points fds 1 and
  2 at ``/dev/null`` before loading the agent's code: the program's own prints can neither
  interleave with the results nor fill the sandbox's output cap (a test that prints forever
  runs out of its time instead).
* It compiles and executes ``solution.py`` under ``__name__ == "solution"`` (a ``__main__``
  block does not run), within one per-test time limit.
* It calls the function once per test, on fresh arguments parsed from the JSON, each call in
  its own ``try`` with an ``ITIMER_REAL`` alarm. The alarm raises a ``BaseException``, so the
  agent's ``except Exception`` cannot swallow it.
* Each result goes out at once, unbuffered, as one line ``<nonce> <json>``:
  ``{"test": i, "value": v}`` or ``{"test": i, "error": "..."}``; before the tests
  ``{"loaded": true}``, ``{"compile_error": "..."}`` or ``{"load_error": "..."}``. A program
  that exits (``os._exit(0)``) or is killed mid-way leaves the remaining tests unanswered, and
  the judge fails them.
* It ends with ``os._exit(0)`` once the last line is out: a thread or ``atexit`` handler the
  agent left behind cannot keep the run going until the sandbox's time limit.

The judge trusts nothing printed here beyond the *values* (which it compares with the
expected outputs it alone holds) and the error texts it quotes back. The agent's code runs in
this process and can find the nonce (in this module's frames), but a forged line gains
nothing: a test answered twice fails, and answering one the harness never reached takes the
expected value, which only a correct function computes.
"""

from __future__ import annotations

import json
import os
import signal
import sys

# typing.TYPE_CHECKING without importing typing: 3 ms of every run (type checkers know the name)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Longest JSON text of one returned value that is reported (longer ones are errors).
MAX_VALUE_CHARS = 20_000
#: Longest error text reported.
MAX_ERROR_CHARS = 300


class _TimeLimit(BaseException):
    """Raised in the agent's code by the per-test alarm (not an ``Exception``: see above)."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _TimeLimit


def _describe(exc: BaseException) -> str:
    """``TypeName: message`` of an exception raised by the agent's code, cut short."""
    try:
        text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    except BaseException:  # a __str__ that raises is the agent's business
        text = type(exc).__name__
    return " ".join(text[: 4 * MAX_ERROR_CHARS].split())[:MAX_ERROR_CHARS]


def main() -> None:
    nonce = sys.stdin.readline().strip()
    with open("tests.json", encoding="utf-8") as file:
        spec = json.load(file)
    with open("solution.py", encoding="utf-8") as file:
        source = file.read()
    budget, name, inputs = float(spec["time_limit_s"]), str(spec["function"]), spec["inputs"]
    out = os.dup(1)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
    except OSError:
        pass
    # taken before the agent's code runs (which may patch the modules)
    dumps, loads, write, setitimer = json.dumps, json.loads, os.write, signal.setitimer

    def report(payload: str) -> None:
        data = f"{nonce} {payload}\n".encode()
        while data:
            data = data[write(out, data) :]

    signal.signal(signal.SIGALRM, _on_alarm)

    def timed(call: Any) -> Any:
        """``call()`` within ``budget`` seconds (``_TimeLimit`` past it)."""
        try:
            setitimer(signal.ITIMER_REAL, budget)
            return call()
        finally:
            setitimer(signal.ITIMER_REAL, 0)

    try:
        code = compile(source, "solution.py", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        detail = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        message = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        report(dumps({"compile_error": f"{type(exc).__name__}: {message}{detail}"}))
        return
    namespace: dict[str, Any] = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        timed(lambda: exec(code, namespace))
    except _TimeLimit:
        report(dumps({"load_error": f"loading the code took more than {budget:g} s"}))
        return
    except BaseException as exc:  # whatever the agent's module raises
        report(dumps({"load_error": f"loading the code raised {_describe(exc)}"}))
        return
    function = namespace.get(name)
    if not callable(function):
        report(dumps({"load_error": f"the code defines no function named {name!r}"}))
        return
    report(dumps({"loaded": True}))
    for i, args in enumerate(inputs):
        fresh = loads(dumps(args))  # the agent's function may mutate its arguments
        try:
            value = timed(lambda fresh=fresh: function(*fresh))
        except _TimeLimit:
            report(dumps({"test": i, "error": f"took more than {budget:g} s"}))
            continue
        except BaseException as exc:  # SystemExit too: a test never ends the run
            report(dumps({"test": i, "error": f"raised {_describe(exc)}"}))
            continue
        try:  # the returned object's own methods (a list subclass's __iter__) may run here
            text = timed(lambda value=value: dumps(value, allow_nan=False))
        except _TimeLimit:
            report(dumps({"test": i, "error": "returned a value too slow to write as JSON"}))
            continue
        except BaseException as exc:  # a set, NaN, an int too long to print
            error = f"returned a value that is not JSON ({_describe(exc)})"
            report(dumps({"test": i, "error": error}))
            continue
        if len(text) > MAX_VALUE_CHARS:
            report(dumps({"test": i, "error": f"returned {len(text)} characters of JSON"}))
            continue
        report(f'{{"test": {i}, "value": {text}}}')


if __name__ == "__main__":
    _exit = os._exit  # taken before the agent's code runs
    try:
        main()
    finally:
        _exit(0)
