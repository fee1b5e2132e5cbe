"""Start-up detection of the isolation this machine gives, as a level and a list of layers.

Nothing is assumed from the platform: each layer is tried for real once per process (about
50 ms, cached) and recorded as present or missing with the reason and the fix. The bubblewrap
layers are verified by running a probe program through the exact command line every run uses
and comparing its namespaces with the host's *from the host side*: a flag that bubblewrap
silently ignored would show up here as a missing layer, not as a false claim of isolation.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from llm_trainer.sandbox import cgroups, launch, seccomp_filter, workdir
from llm_trainer.sandbox.config import (
    BASE_LAYERS,
    EXTRA_LAYERS,
    L3_LAYERS,
    LEVEL_MEANING,
    Level,
    SandboxConfig,
    SandboxUnavailable,
    level_rank,
)

_INSTALL = (
    "install it with `apt-get install -y bubblewrap python3-seccomp` (scripts/setup.sh does "
    "this where apt-get exists and it runs as root)"
)

_PROBE_PROGRAM = r"""
import json, os, socket, sys
status = {}
for line in open("/proc/self/status"):
    key, _, value = line.partition(":")
    status[key] = value.strip()
out = {
    "uid": os.getuid(),
    "ns": {n: os.readlink("/proc/self/ns/" + n)
           for n in ("user", "net", "pid", "ipc", "uts", "mnt")},
    "cap_eff": status.get("CapEff"), "cap_prm": status.get("CapPrm"),
    "cap_bnd": status.get("CapBnd"), "seccomp": status.get("Seccomp"),
    "no_new_privs": status.get("NoNewPrivs"),
}
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    out["inet_errno"] = 0
except OSError as exc:
    out["inet_errno"] = exc.errno
try:
    open(os.path.join(sys.prefix, ".llm_trainer_probe"), "w").close()
    out["prefix_errno"] = 0
except OSError as exc:
    out["prefix_errno"] = exc.errno
print(json.dumps(out))
"""


@dataclass(frozen=True)
class IsolationReport:
    """What isolation this machine gives: the level reached and every layer, with reasons.

    Attributes:
        level: The strongest level whose layers are all present (``"L3"`` or ``"L0"``).
        backend: ``"bwrap"`` (runs go through bubblewrap) or ``"plain"`` (a bare subprocess).
        present: The layers verified present.
        missing: For each missing layer, why it is missing and how to get it.
        probe_ms: What the probe cost (once per process).
        bwrap_version: bubblewrap's version where it answered (older ones lack flags).
    """

    level: Level
    backend: Literal["bwrap", "plain"]
    present: tuple[str, ...]
    missing: Mapping[str, str] = field(default_factory=dict)
    probe_ms: float = 0.0
    bwrap_version: tuple[int, ...] | None = None

    def has(self, layer: str) -> bool:
        """Whether ``layer`` was verified present."""
        return layer in self.present

    def describe(self) -> str:
        """A few human lines: the level, the present layers, each missing one with its fix."""
        lines = [
            f"isolation level {self.level} ({LEVEL_MEANING[self.level]}), backend {self.backend}",
            f"present: {', '.join(self.present) or 'none'}",
        ]
        lines += [f"missing {name}: {why}" for name, why in self.missing.items()]
        return "\n".join(lines)


def detect_isolation(
    config: SandboxConfig | None = None, *, refresh: bool = False
) -> IsolationReport:
    """Probe the machine (cached per process and bubblewrap executable).

    Args:
        config: Only its ``bwrap`` executable matters; default ``SandboxConfig()``.
        refresh: Probe again (after installing something, for instance).
    """
    bwrap = (config or SandboxConfig()).bwrap
    if refresh:
        _probe.cache_clear()
    return _probe(bwrap, sys.executable)


def check_level(report: IsolationReport, config: SandboxConfig) -> None:
    """Raise :class:`SandboxUnavailable` if ``report`` is below what ``config`` demands."""
    missing_required = [layer for layer in config.required_layers if not report.has(layer)]
    level_ok = level_rank(report.level) >= level_rank(config.min_level)
    if level_ok and not missing_required:
        return
    wanted = config.min_level
    reached = f"this machine reaches {report.level} ({LEVEL_MEANING[report.level]})"
    if level_ok:
        lines = [
            f"The sandbox requires the layers {', '.join(missing_required)} "
            f"(SandboxConfig.required_layers), missing here, though {reached}; refusing to run."
        ]
    else:
        lines = [
            f"The sandbox needs isolation level {wanted} ({LEVEL_MEANING[wanted]}), but "
            f"{reached}; refusing to run untrusted code below the configured minimum."
        ]
        if missing_required:
            lines.append(f"Required layers missing too: {', '.join(missing_required)}.")
    by_reason: dict[str, list[str]] = {}
    for name, why in _relevant_missing(report, wanted, missing_required).items():
        by_reason.setdefault(why, []).append(name)
    lines += [f"  - {', '.join(names)}: {why}" for why, names in by_reason.items()]
    lines.append(
        "Install what is missing, or lower SandboxConfig.min_level (e.g. "
        f"min_level={report.level!r}) only for code you trust."
    )
    raise SandboxUnavailable("\n".join(lines))


def _relevant_missing(
    report: IsolationReport, wanted: Level, required: list[str]
) -> dict[str, str]:
    names: list[str] = list(required)
    if level_rank(wanted) >= level_rank("L1"):
        names += [n for n in L3_LAYERS if not report.has(n)]
    if wanted in ("L1", "L2", "L4"):
        names.append(wanted)
    out = {n: report.missing[n] for n in dict.fromkeys(names) if n in report.missing}
    return out or dict(report.missing)


@functools.cache
def _probe(bwrap: str, executable: str) -> IsolationReport:
    start = time.perf_counter()
    present: list[str] = list(BASE_LAYERS)
    missing: dict[str, str] = {}

    tmpfs_error = workdir.probe_tmpfs()
    if tmpfs_error is None:
        present.append("work_tmpfs")
    else:
        missing["work_tmpfs"] = tmpfs_error
    for layer, controller in cgroups.CONTROLLERS.items():
        error = cgroups.probe_controller(controller)
        if error is None:
            present.append(layer)
        else:
            missing[layer] = error

    seccomp_error: str | None = None
    try:
        seccomp_filter.compiled_filter()
    except seccomp_filter.SeccompUnavailableError as exc:
        seccomp_error = str(exc)

    bwrap_path = shutil.which(bwrap)
    version = launch.bwrap_version(bwrap_path) if bwrap_path else None
    if bwrap_path is None:
        missing["bwrap"] = f"bubblewrap ({bwrap!r}) was not found; {_INSTALL}"
    else:
        _probe_bwrap(
            bwrap_path,
            executable,
            version or (0, 8, 0),
            with_seccomp=seccomp_error is None,
            with_tmpfs=tmpfs_error is None,
            present=present,
            missing=missing,
        )
    if seccomp_error is not None:
        missing["seccomp"] = seccomp_error

    runsc = shutil.which("runsc")
    missing["L4"] = (
        f"gVisor's runsc is installed ({runsc}) but this runner does not drive it (runsc run "
        "costs 180-300 ms per start and ignores RLIMIT_CPU; see SANDBOX.md)"
        if runsc
        else "gVisor (runsc) is not installed, and this runner does not drive it; L3 "
        "(bubblewrap) is the strongest level it reaches"
    )
    for weak in ("L1", "L2"):
        missing[weak] = (
            f"{weak} ({LEVEL_MEANING[weak]}) has no runner here: without bubblewrap the "
            "sandbox falls back to L0"
        )

    level: Level = "L3" if all(layer in present for layer in L3_LAYERS) else "L0"
    for layer in L3_LAYERS:
        if layer not in present and layer not in missing:
            missing[layer] = "not verified: bubblewrap did not run (see the 'bwrap' entry)"
    ordered = {k: missing[k] for k in sorted(missing, key=_layer_order)}
    return IsolationReport(
        level=level,
        # bubblewrap's namespaces are worth having even where the level stays L0 (no seccomp).
        backend="bwrap" if "bwrap" in present else "plain",
        present=tuple(sorted(present, key=_layer_order)),
        missing=ordered,
        probe_ms=(time.perf_counter() - start) * 1000,
        bwrap_version=version,
    )


def _layer_order(name: str) -> int:
    order = (*L3_LAYERS, *EXTRA_LAYERS, *BASE_LAYERS, "L1", "L2", "L4")
    return order.index(name) if name in order else len(order)


def _probe_bwrap(
    bwrap: str,
    executable: str,
    version: tuple[int, ...],
    *,
    with_seccomp: bool,
    with_tmpfs: bool,
    present: list[str],
    missing: dict[str, str],
) -> None:
    """Run the probe program through bubblewrap; record each layer it proves."""
    work = workdir.WorkDir(size_bytes=8 << 20, require_tmpfs=with_tmpfs)
    seccomp_fd = seccomp_filter.memfd_with_filter() if with_seccomp else None
    try:
        binds, exe_inside = launch.interpreter_binds(executable)
        argv = launch.bwrap_argv(
            bwrap,
            work_dir=work.path,
            tmp_bytes=8 << 20,
            seccomp_fd=seccomp_fd,
            ro_binds=binds,
            deps_dir=None,
            env=launch.program_env(executable=exe_inside),
            command=[exe_inside, "-S", "-c", _PROBE_PROGRAM],
            version=version,
        )
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                timeout=30,
                env={"PATH": "/usr/bin:/bin"},
                pass_fds=() if seccomp_fd is None else (seccomp_fd,),
                cwd=tempfile.gettempdir(),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            missing["bwrap"] = f"bubblewrap at {bwrap} could not run: {exc}"
            return
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
        work.close()
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-500:]
        missing["bwrap"] = (
            f"bubblewrap at {bwrap} failed (exit {proc.returncode}: {err}). Unprivileged user "
            "namespaces may be disabled (sysctl user.max_user_namespaces=0 or "
            "kernel.unprivileged_userns_clone=0), or a container's seccomp profile blocks "
            "unshare/mount (Docker: run with a profile that allows them)"
        )
        return
    present.append("bwrap")
    try:
        facts = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        missing["userns"] = f"the probe printed no report: {proc.stdout[-300:]!r}"
        return
    host_ns = {n: os.readlink(f"/proc/self/ns/{n}") for n in facts["ns"]}
    for ns, layer in (
        ("user", "userns"),
        ("net", "netns"),
        ("pid", "pidns"),
        ("ipc", "ipcns"),
        ("uts", "utsns"),
        ("mnt", "mountns"),
    ):
        if facts["ns"][ns] != host_ns[ns]:
            present.append(layer)
        else:
            missing[layer] = f"bubblewrap ran but the {ns} namespace is the host's"
    if facts["cap_eff"] == facts["cap_prm"] == facts["cap_bnd"] == "0000000000000000":
        present.append("cap_drop")
    else:
        missing["cap_drop"] = f"capabilities remain inside (CapEff {facts['cap_eff']})"
    if with_seccomp:
        if facts["seccomp"] == "2" and facts["inet_errno"] == 97:  # EAFNOSUPPORT
            present.append("seccomp")
        else:
            missing["seccomp"] = (
                f"the filter was not in force (Seccomp: {facts['seccomp']}, "
                f"socket(AF_INET) errno {facts['inet_errno']})"
            )
    if facts["prefix_errno"] in (13, 30):  # EACCES, EROFS
        present.append("ro_interpreter")
    else:
        missing["ro_interpreter"] = "the interpreter's prefix is writable inside the sandbox"
