"""The sandbox's configuration, its isolation levels and its errors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from llm_trainer.core.errors import ConfigError, LLMTrainerError, RolloutError

Level = Literal["L0", "L1", "L2", "L3", "L4"]
#: The levels of ../shared/SANDBOX.md, weakest first. This runner reaches L3 (bubblewrap with
#: every layer of the study) or L0 (rlimits, cgroups and a timeout only: **not isolation**);
#: L1, L2 and L4 are named so a configuration can ask for them and be refused clearly.
LEVELS: tuple[Level, ...] = get_args(Level)

LEVEL_MEANING: dict[Level, str] = {
    "L0": "rlimits, cgroups and a wall-clock timeout only: not isolation",
    "L1": "L0 plus a seccomp filter and a dedicated uid",
    "L2": "L1 plus Landlock",
    "L3": "bubblewrap: user/net/PID/IPC/UTS/mount namespaces, no capabilities, seccomp",
    "L4": "gVisor (runsc run): a user-space kernel",
}


#: The layers that together make L3 (SANDBOX.md, "What held").
L3_LAYERS = (
    "bwrap",
    "userns",
    "netns",
    "pidns",
    "ipcns",
    "utsns",
    "mountns",
    "cap_drop",
    "seccomp",
    "ro_interpreter",
)
#: Layers that strengthen any level and are recorded, but do not decide it.
EXTRA_LAYERS = ("work_tmpfs", "cgroup_memory", "cgroup_pids")
#: Layers every level has: the runner enforces them itself.
BASE_LAYERS = ("rlimits", "timeout")
#: Every layer name a report can hold (``SandboxConfig.required_layers`` takes these).
LAYERS = (*L3_LAYERS, *EXTRA_LAYERS, *BASE_LAYERS)


def level_rank(level: str) -> int:
    """The position of ``level`` in :data:`LEVELS` (higher is stronger)."""
    return [str(x) for x in LEVELS].index(level)


# The name is the public API other modules already code against; an Error suffix would
# break them.
class SandboxUnavailable(LLMTrainerError, RuntimeError):  # noqa: N818
    """The machine cannot reach the configured minimum isolation level.

    The message names the level reached, each missing layer with the reason, and how to
    install what is missing. Lowering ``SandboxConfig.min_level`` is the explicit opt-out.
    """


class DisallowedDependencyError(ConfigError):
    """A requirement (or a package it pulls in) is not in ``allowed_requirements``."""


class DependencyError(RolloutError):
    """Installing an allowed requirement set failed (pip's error is in the message)."""


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: ``Foo_Bar.baz`` and ``foo-bar-baz`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class SandboxConfig:
    """How untrusted Python programs run (see ../shared/SANDBOX.md for why each layer exists).

    Example:
        >>> SandboxConfig(min_level="L3", wall_s=5.0).memory_mb
        1024
    """

    min_level: Level = "L3"
    """The weakest isolation level the sandbox agrees to run at: ``Sandbox(cfg)`` raises
    :class:`SandboxUnavailable` below it. ``"L0"`` runs without any isolation: only for
    trusted code."""
    wall_s: float = 120.0
    """Wall-clock limit of one run (the whole process tree is killed past it)."""
    cpu_s: float = 60.0
    """``RLIMIT_CPU`` per process (SIGXCPU at the limit, SIGKILL one second later)."""
    memory_mb: int = 1024
    """The memory cgroup's cap for the whole run, files written to the work dir included."""
    pids: int = 64
    """The pids cgroup's cap (processes and threads, bubblewrap's two included)."""
    work_mb: int = 256
    """Size of the tmpfs at ``/work`` (and of each at ``/tmp`` and ``/dev/shm``); also
    ``RLIMIT_FSIZE``. Their pages count in ``memory_mb`` too."""
    nofile: int = 256
    """``RLIMIT_NOFILE``."""
    max_output_bytes: int = 1_000_000
    """Bytes kept of stdout and of stderr each; the run is killed when either overflows."""
    allowed_requirements: tuple[str, ...] = ()
    """Project names ``requirements`` may name (and everything they pull in must be here too)."""
    deps_cache: Path | None = None
    """Where resolved requirement sets are cached by hash; None: ``$XDG_CACHE_HOME`` (or
    ``~/.cache``) ``/llm_trainer/sandbox_deps``."""
    address_space_mb: int | None = None
    """``RLIMIT_AS``; None: 4 x ``memory_mb`` (numpy and torch reserve far more address space
    than they touch; the memory cgroup is the real cap), 0: no limit."""
    ro_paths: tuple[str, ...] = ()
    """Extra host paths bound read-only at the same path inside (data sets, a package)."""
    required_layers: tuple[str, ...] = ()
    """Layers (names as in ``IsolationReport.present``, e.g. ``"cgroup_pids"``) without which
    the sandbox refuses to run, whatever the level."""
    bwrap: str = "bwrap"
    """The bubblewrap executable (a name on ``PATH`` or a path)."""
    pip_timeout_s: float = 300.0
    """Time limit for resolving and installing one requirement set (outside the sandbox)."""

    def __post_init__(self) -> None:
        if self.min_level not in LEVELS:
            raise ConfigError(
                f"SandboxConfig.min_level={self.min_level!r} is not a level; use one of "
                f"{', '.join(LEVELS)}"
            )
        for name in ("wall_s", "cpu_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"SandboxConfig.{name}={value!r} must be a positive number")
        for name in ("memory_mb", "pids", "work_mb", "nofile", "max_output_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"SandboxConfig.{name}={value!r} must be a positive integer")
        if self.pids < 4:
            raise ConfigError(
                f"SandboxConfig.pids={self.pids} leaves no room for the program: bubblewrap "
                "itself takes two; use at least 4"
            )
        if self.nofile < 16:
            raise ConfigError(f"SandboxConfig.nofile={self.nofile} is too small; use >= 16")
        if self.address_space_mb is not None and (
            not isinstance(self.address_space_mb, int) or self.address_space_mb < 0
        ):
            raise ConfigError(
                f"SandboxConfig.address_space_mb={self.address_space_mb!r} must be None, 0 "
                "(no limit) or a positive integer"
            )
        requirements: object = self.allowed_requirements
        if isinstance(requirements, str):
            raise ConfigError(
                "SandboxConfig.allowed_requirements must be a tuple of project names, not one "
                f"string ({self.allowed_requirements!r})"
            )
        object.__setattr__(self, "allowed_requirements", tuple(self.allowed_requirements))
        for name in self.allowed_requirements:
            if not name or not all(c.isalnum() or c in "-_." for c in name):
                raise ConfigError(
                    f"SandboxConfig.allowed_requirements: {name!r} is not a project name "
                    "(letters, digits, '-', '_', '.'; no version: pin versions in the "
                    "requirements)"
                )
        object.__setattr__(self, "ro_paths", tuple(self.ro_paths))
        for path in self.ro_paths:
            if not Path(path).is_absolute():
                raise ConfigError(f"SandboxConfig.ro_paths: {path!r} must be an absolute path")
        object.__setattr__(self, "required_layers", tuple(self.required_layers))
        unknown = [layer for layer in self.required_layers if layer not in LAYERS]
        if unknown:
            raise ConfigError(
                f"SandboxConfig.required_layers: {', '.join(map(repr, unknown))} is not a layer; "
                f"use some of {', '.join(LAYERS)}"
            )
        if self.deps_cache is not None:
            object.__setattr__(self, "deps_cache", Path(self.deps_cache))

    @property
    def allowed(self) -> frozenset[str]:
        """The allow-list, normalised (PEP 503)."""
        return frozenset(canonical_name(n) for n in self.allowed_requirements)

    @property
    def address_space_bytes(self) -> int | None:
        """The ``RLIMIT_AS`` value, None for no limit."""
        if self.address_space_mb == 0:
            return None
        mb = self.address_space_mb if self.address_space_mb is not None else 4 * self.memory_mb
        return mb << 20
