"""Per-run cgroup v1 ``memory`` and ``pids`` groups: the caps rlimits cannot give.

``RLIMIT_NPROC`` is ignored for uid 0 (and for bubblewrap's sandbox uid when bubblewrap runs as
root, since it maps back to kuid 0), and ``RLIMIT_AS`` counts reservations, not memory: a fork
bomb needs a ``pids`` cgroup and a memory bomb a ``memory`` cgroup (../shared/SANDBOX.md).

Each run gets its own group in each hierarchy, created *under the caller's own group* (read
from ``/proc/self/cgroup``) so that a limit set on the caller still applies to its sandboxes.
The started process joins the groups before it executes bubblewrap (launch.py: a shell writes
"0" to each ``cgroup.procs``, then execs), so every descendant is born inside them. After the
run the groups hold the host-side evidence (``memory.oom_control``'s ``oom_kill``,
``pids.events``, and a ``cpuacct`` group's CPU time of the whole tree) and are the last net
for stragglers: whatever is still listed is killed, then the groups are removed.

Only cgroup v1 is handled: on the machines this project runs on, cgroup v2 has no controllers
(see SANDBOX.md); a v2-only host records the layer as missing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The controllers used, by the layer name recorded in results.
CONTROLLERS = {"cgroup_memory": "memory", "cgroup_pids": "pids"}
#: Accounting only (not a limit, not a layer): the CPU time of the whole tree. ``wait4`` cannot
#: give it, since bubblewrap's monitor never reaps the PID namespace's init.
ACCOUNTING = "cpuacct"
_PREFIX = "llm-trainer-sandbox-"


def own_group(controller: str) -> Path | None:
    """The directory of this process's group in the v1 hierarchy of ``controller``, or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            mount = CGROUP_ROOT / controller
            return mount / path.lstrip("/") if mount.is_dir() else None
    return None


def probe_controller(controller: str) -> str | None:
    """None when a child group can be created (and removed) for ``controller``; else why not."""
    parent = own_group(controller)
    if parent is None:
        return f"no cgroup v1 '{controller}' hierarchy is mounted under {CGROUP_ROOT}"
    probe = parent / f"{_PREFIX}{os.getpid()}-probe-{secrets.token_hex(4)}"
    try:
        probe.mkdir()
    except OSError as exc:
        return (
            f"cannot create a group in {parent} ({exc.strerror}); run as root or give this "
            f"user a delegated '{controller}' sub-tree"
        )
    with contextlib.suppress(OSError):
        probe.rmdir()
    return None


@dataclass
class CgroupStats:
    """What the groups recorded about one run, read on the host side after it."""

    oom_kills: int = 0
    memory_failcnt: int = 0
    peak_memory_bytes: int | None = None
    pids_max_hits: int = 0
    cpu_s: float | None = None


class RunCgroups:
    """The groups of one run: created, joined by the child, read, emptied and removed.

    Args:
        controllers: Which controllers to use (``"memory"``, ``"pids"``); those whose
            hierarchy is missing are expected to have been left out by the caller's probe.
        memory_bytes: ``memory.limit_in_bytes`` (tmpfs pages written by the run count too).
        pids: ``pids.max`` (processes *and* threads).
    """

    def __init__(self, controllers: tuple[str, ...], *, memory_bytes: int, pids: int) -> None:
        self.groups: dict[str, Path] = {}
        name = f"{_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"  # the pid: whose it is
        try:
            for controller in controllers:
                parent = own_group(controller)
                if parent is None:
                    continue
                group = parent / name
                group.mkdir()
                self.groups[controller] = group
                if controller == "memory":
                    (group / "memory.limit_in_bytes").write_text(str(memory_bytes))
                    # With swap, memory+swap must be capped as well (absent without swap).
                    memsw = group / "memory.memsw.limit_in_bytes"
                    if memsw.exists():
                        with contextlib.suppress(OSError):
                            memsw.write_text(str(memory_bytes))
                elif controller == "pids":
                    (group / "pids.max").write_text(str(pids))
        except BaseException:
            self.remove()
            raise

    def procs_files(self) -> list[Path]:
        """Each group's ``cgroup.procs`` (writing "0" there moves the writer in)."""
        return [group / "cgroup.procs" for group in self.groups.values()]

    def open_procs_fds(self) -> list[int]:
        """Descriptors of each group's ``cgroup.procs`` for the child to write its pid to.

        Opened here, in the parent, so the child only calls ``write`` between fork and exec
        (no allocation, no import: safe in a threaded parent). Close-on-exec.
        """
        fds: list[int] = []
        try:
            for group in self.groups.values():
                fds.append(os.open(group / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def pids(self) -> set[int]:
        """The processes still in any of the groups."""
        found: set[int] = set()
        for group in self.groups.values():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (group / "cgroup.procs").read_text().split())
        return found

    def kill_all(self, timeout_s: float = 5.0) -> int:
        """SIGKILL everything left in the groups until they are empty; returns how many."""
        killed: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while (left := self.pids()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            time.sleep(0.0005)  # a killed process leaves its group within microseconds
        return len(killed)

    def stats(self) -> CgroupStats:
        """The host-side evidence of the limits the run hit."""
        out = CgroupStats()
        memory = self.groups.get("memory")
        if memory is not None:
            out.oom_kills = _keyed(memory / "memory.oom_control", "oom_kill")
            out.memory_failcnt = _int(memory / "memory.failcnt")
            out.peak_memory_bytes = _int(memory / "memory.max_usage_in_bytes")
        pids = self.groups.get("pids")
        if pids is not None:
            out.pids_max_hits = _keyed(pids / "pids.events", "max")
        cpuacct = self.groups.get(ACCOUNTING)
        if cpuacct is not None:
            out.cpu_s = _int(cpuacct / "cpuacct.usage") / 1e9
        return out

    def remove(self) -> None:
        """Remove the (emptied) groups; a group that is still busy is killed empty first."""
        for controller, group in list(self.groups.items()):
            for _ in range(200):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY: a process is still exiting
                    self.kill_all(timeout_s=0.05)
                    time.sleep(0.005)
            else:
                continue  # left in place: its name says who made it; reported by callers
            del self.groups[controller]


def _int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _keyed(path: Path, key: str) -> int:
    """The value of ``key`` in a ``key value`` per line file (``memory.oom_control``...)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def leftover_groups(pid: int | None = None) -> list[Path]:
    """Groups made by process ``pid`` (default: this one) still present; tests assert none."""
    prefix = f"{_PREFIX}{os.getpid() if pid is None else pid}-"
    found: list[Path] = []
    for controller in (*CONTROLLERS.values(), ACCOUNTING):
        parent = own_group(controller)
        if parent is not None and parent.is_dir():
            found.extend(p for p in parent.iterdir() if p.name.startswith(prefix))
    return found
