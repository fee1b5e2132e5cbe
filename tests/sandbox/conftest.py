"""Fixtures of the sandbox tests: a shared sandbox, and host-side checks after every test.

Every test here leaves the host as it found it: no cgroup, work directory or mount of this
process left behind, and no process carrying a test's marker alive. ``host_clean`` checks that
from the host side (``/proc``, ``/sys/fs/cgroup``, ``/proc/self/mounts``), never from what a
sandboxed program printed.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_trainer.sandbox import Sandbox, SandboxConfig, detect_isolation
from llm_trainer.sandbox.cgroups import leftover_groups
from llm_trainer.sandbox.workdir import leftover_workdirs


def _bwrap_reason() -> str | None:
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (scripts/setup.sh installs it where apt-get exists)"
    report = detect_isolation()
    if report.level != "L3":
        return f"this machine reaches {report.level} only:\n{report.describe()}"
    return None


#: Skip marker for the tests that need the L3 sandbox (bubblewrap + seccomp).
needs_l3 = pytest.mark.skipif(
    _bwrap_reason() is not None, reason=str(_bwrap_reason() or "L3 available")
)


def processes_with(marker: str) -> list[int]:
    """Host processes whose command line contains ``marker`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def marker() -> str:
    """A unique string a hostile program puts in its command line (found by ``/proc`` scans)."""
    return f"llm-sandbox-marker-{secrets.token_hex(8)}"


@pytest.fixture(autouse=True)
def host_clean() -> Iterator[None]:
    """After each test: no cgroup, work dir or tmpfs mount of this process remains."""
    yield
    assert leftover_groups() == [], "a run left its cgroups behind"
    assert leftover_workdirs() == [], "a run left its work directory (or its tmpfs) behind"


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    """An L3 sandbox with small limits, so each hostile program hits them fast."""
    return Sandbox(
        SandboxConfig(
            min_level="L3",
            wall_s=20.0,
            cpu_s=10.0,
            memory_mb=256,
            pids=32,
            work_mb=16,
            max_output_bytes=100_000,
        )
    )
