"""Run untrusted Python programs (files in, files out) under layered, detected isolation.

A measured study of what holds on the machines this project runs on is in
../shared/SANDBOX.md; this package implements its layer list:

- a size-capped tmpfs work directory per run (``/work`` inside);
- per-run cgroup v1 ``memory`` and ``pids`` groups, joined before exec;
- rlimits: CPU, address space, file size, open files, no core dumps;
- bubblewrap: new user, network, PID, IPC, UTS and mount namespaces, uid 65534, every
  capability dropped, no nested user namespaces, a read-only view of ``/usr`` and of the
  interpreter, a scrubbed environment, and a libseccomp filter (seccomp_filter.py);
- a wall-clock timeout, after which (as at every end) the whole tree is killed with the PID
  namespace, and the cgroups are emptied and removed.

What the machine gives is detected at start-up (``detect_isolation``) as a level, L0-L4, with
every layer present or missing; ``Sandbox`` refuses to run below ``SandboxConfig.min_level``
with an error that says what to install. Results are judged on the host side; a program's
claims count only as lines tagged with a per-run nonce (``tagged_lines``).

Example:
    >>> from llm_trainer.sandbox import Sandbox, SandboxConfig, new_nonce, tagged_lines
    >>> sandbox = Sandbox(SandboxConfig(wall_s=10))  # doctest: +SKIP
    >>> nonce = new_nonce()
    >>> result = sandbox.run(files={"main.py": f"print('{nonce}', 6 * 7)"})  # doctest: +SKIP
    >>> tagged_lines(result.stdout, nonce)  # doctest: +SKIP
    ['42']

Importing this package is light (standard library only); nothing is probed until a
``Sandbox`` is made or ``detect_isolation`` is called.
"""

from __future__ import annotations

from llm_trainer.sandbox.config import (
    LEVELS,
    DependencyError,
    DisallowedDependencyError,
    Level,
    SandboxConfig,
    SandboxUnavailable,
)
from llm_trainer.sandbox.isolation import IsolationReport, detect_isolation
from llm_trainer.sandbox.nonce import new_nonce, tagged_lines
from llm_trainer.sandbox.runner import Sandbox, SandboxResult

__all__ = [
    "LEVELS",
    "DependencyError",
    "DisallowedDependencyError",
    "IsolationReport",
    "Level",
    "Sandbox",
    "SandboxConfig",
    "SandboxResult",
    "SandboxUnavailable",
    "detect_isolation",
    "new_nonce",
    "tagged_lines",
]
