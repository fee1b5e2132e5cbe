"""``Sandbox.run``: one untrusted Python program, files in, files out, judged from the host.

One run, in order (../shared/SANDBOX.md, "What held"):

1. requirements, if any, are resolved *outside* into a cached virtual environment, mounted
   read-only at ``/deps`` (deps.py);
2. a fresh size-capped tmpfs work directory receives the input files;
3. fresh ``memory``, ``pids`` (and ``cpuacct``) cgroups are created; the started process
   joins them and takes its rlimits before it executes bubblewrap (launch.py);
4. bubblewrap starts the program with the seccomp filter; stdout and stderr are read up to a
   cap while a wall-clock deadline runs;
5. at the end (exit, deadline or output overflow) the bubblewrap process is killed if needed:
   its PID namespace dies with it, taking every descendant, ``setsid`` daemons included; the
   cgroups are then emptied by SIGKILL whatever is left (the last net) and removed;
6. the outcome is read on the host side: the exit status, the wall clock, the CPU time of the
   whole tree (``cpuacct``), ``memory.oom_control`` and ``pids.events``, the work directory's
   usage, and the collected files, read without following links after every process is dead.

Nothing the program prints decides the outcome: harnesses pass results out as lines tagged
with a per-run nonce (:func:`tagged_lines`) and judge them outside.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llm_trainer.core.errors import ConfigError
from llm_trainer.sandbox import deps, launch, seccomp_filter
from llm_trainer.sandbox.cgroups import (
    ACCOUNTING,
    CONTROLLERS,
    CgroupStats,
    RunCgroups,
    probe_controller,
)
from llm_trainer.sandbox.config import SandboxConfig
from llm_trainer.sandbox.isolation import IsolationReport, check_level, detect_isolation
from llm_trainer.sandbox.workdir import WorkDir

KillReason = Literal["timeout", "memory", "cpu", "output", "pids"]

#: After the program exits, how long output still held by a straggler is drained.
_DRAIN_AFTER_EXIT_S = 1.0


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one run, established on the host side.

    Attributes:
        returncode: The program's exit status (128 + N when signal N ended it), or None when
            the sandbox ended it (timeout, output overflow).
        stdout: Its standard output (UTF-8, undecodable bytes replaced), at most
            ``max_output_bytes``.
        stderr: Its standard error, likewise.
        truncated: Whether stdout or stderr went past ``max_output_bytes``.
        files: The collected output files (relative path -> bytes), read after the run.
        timed_out: Whether the wall-clock limit ended it.
        killed: Which limit ended it, from host-side evidence only: ``"timeout"`` (the wall
            clock), ``"output"`` (the output cap), ``"memory"`` (the cgroup's OOM kill
            counter), ``"cpu"`` (SIGXCPU or SIGKILL with the tree's CPU time near the rlimit),
            ``"pids"`` (a failing exit after ``pids.events`` counted a refused fork); None.
        level: The isolation level it ran at.
        layers: The isolation layers in force.
        wall_s: Wall-clock seconds, start-up included.
        limits_hit: Every limit with host-side evidence of having been hit, whether or not it
            ended the run (``"disk"``: the work tmpfs filled up).
        peak_memory_bytes: The memory cgroup's peak (None without it).
        cpu_s: CPU seconds of the whole process tree, from the run's ``cpuacct`` cgroup (or
            ``wait4`` where that cgroup is unavailable); None if neither could measure it.
        work_bytes: Bytes used on the work tmpfs at the end (None without it).
        stragglers_killed: Processes still alive in the run's cgroups after it ended
            (killed then; 0 whenever the PID namespace did its job).
    """

    returncode: int | None
    stdout: str
    stderr: str
    truncated: bool
    files: dict[str, bytes]
    timed_out: bool
    killed: KillReason | None
    level: str
    layers: tuple[str, ...]
    wall_s: float
    limits_hit: tuple[str, ...] = ()
    peak_memory_bytes: int | None = None
    cpu_s: float | None = None
    work_bytes: int | None = None
    stragglers_killed: int = 0

    @property
    def ok(self) -> bool:
        """Exit status 0 and no limit ended the run (still not proof of a correct answer)."""
        return self.returncode == 0 and self.killed is None


class Sandbox:
    """Runs untrusted Python programs under the strongest isolation this machine gives.

    Args:
        config: Limits, the minimum level and the requirements allow-list.

    Raises:
        SandboxUnavailable: The machine reaches a level below ``config.min_level`` (or lacks
            a layer of ``config.required_layers``); the message names what is missing and how
            to install it.

    Example:
        >>> sandbox = Sandbox(SandboxConfig(wall_s=10))   # doctest: +SKIP
        >>> sandbox.run(files={"main.py": "print(6 * 7)"}).stdout   # doctest: +SKIP
        '42\\n'
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.report: IsolationReport = detect_isolation(self.config)
        check_level(self.report, self.config)
        controllers = [c for layer, c in CONTROLLERS.items() if self.report.has(layer)]
        if probe_controller(ACCOUNTING) is None:
            controllers.append(ACCOUNTING)
        self._controllers = tuple(controllers)
        interpreter, self._executable = launch.interpreter_binds()
        self._binds = (*interpreter, *((p, p) for p in self.config.ro_paths))
        # The project's site directories, as requirement environments see them inside.
        self._site_dirs = tuple(
            (host, launch.inside_path(host, interpreter) if self._bwrap else host)
            for host in deps.host_site_dirs()
        )

    @property
    def _bwrap(self) -> bool:
        return self.report.backend == "bwrap"

    @property
    def level(self) -> str:
        """The isolation level every run of this sandbox gets (``"L3"``...)."""
        return self.report.level

    def run(
        self,
        files: Mapping[str, str | bytes] | None = None,
        argv: Sequence[str] = ("main.py",),
        stdin: str | bytes | None = None,
        requirements: str | None = None,
        collect: Sequence[str] = (),
        wall_s: float | None = None,
    ) -> SandboxResult:
        """Run ``python *argv`` in a fresh sandbox whose ``/work`` holds ``files``.

        Args:
            files: Input files by path relative to ``/work`` (the program's cwd).
            argv: The interpreter's arguments (``("main.py", "--flag")``, ``("-c", code)``).
            stdin: Standard input (none when None).
            requirements: A requirements.txt text; every project named (and pulled in) must be
                in ``allowed_requirements``. Installed outside, mounted read-only.
            collect: Output files to return: relative paths or globs (``"out/*.json"``).
            wall_s: This run's wall-clock limit (default ``config.wall_s``).

        Raises:
            ConfigError: A bad path, argv or wall_s.
            DisallowedDependencyError: ``requirements`` names a project outside the allow-list.
            DependencyError: pip could not install an allowed requirement set.
        """
        cfg = self.config
        wall = cfg.wall_s if wall_s is None else wall_s
        if not isinstance(wall, int | float) or not wall > 0:
            raise ConfigError(f"run(wall_s={wall_s!r}): must be a positive number of seconds")
        if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
            raise ConfigError(
                f"run(argv={argv!r}): must be a non-empty sequence of strings, the "
                "interpreter's arguments, e.g. ('main.py',)"
            )
        deps_dir = None
        if requirements is not None and requirements.strip():
            deps_dir = self.resolve_requirements(requirements)
        stdin_bytes = stdin.encode() if isinstance(stdin, str) else stdin

        start = time.perf_counter()
        with contextlib.ExitStack() as stack:
            work = WorkDir(
                size_bytes=cfg.work_mb << 20, require_tmpfs=self.report.has("work_tmpfs")
            )
            stack.callback(work.close)
            work.write_files(files or {})
            groups = RunCgroups(self._controllers, memory_bytes=cfg.memory_mb << 20, pids=cfg.pids)
            stack.callback(groups.remove)
            outcome = self._execute(work, groups, argv, stdin_bytes, deps_dir, wall)
            stragglers = groups.kill_all()
            stats = groups.stats()
            files_out = work.collect(collect, ignore=self._mount_points()) if collect else {}
            work_bytes = work.used_bytes()
            disk_full = work.full()
        return self._result(outcome, stats, files_out, work_bytes, disk_full, stragglers, start)

    def resolve_requirements(self, requirements: str) -> Path:
        """Install (or find in the cache) the environment for ``requirements`` now, outside
        the sandbox: to warm the cache before a batch of runs. Returns its root on the host.

        Raises:
            DisallowedDependencyError: A project named or pulled in is not allowed.
            DependencyError: pip failed.
        """
        return deps.resolve(requirements, self.config, self._site_dirs)

    # -- internals ---------------------------------------------------------------------------

    def _mount_points(self) -> tuple[str, ...]:
        return launch.mount_points_in_work(self._binds)

    def _command(
        self, work: WorkDir, argv: Sequence[str], deps_dir: Path | None, seccomp_fd: int | None
    ) -> tuple[list[str], dict[str, str], str]:
        """(argv, env, cwd) of the process to start: bubblewrap, or the bare interpreter.

        With requirements, the interpreter is the one of their environment (``/deps``).
        """
        if self._bwrap:
            exe = self._executable if deps_dir is None else f"{launch.DEPS}/bin/python"
            command = launch.bwrap_argv(
                self.config.bwrap,
                work_dir=work.path,
                tmp_bytes=self.config.work_mb << 20,
                seccomp_fd=seccomp_fd,
                ro_binds=self._binds,
                deps_dir=deps_dir,
                env=launch.program_env(executable=exe),
                command=[exe, *argv],
                version=self.report.bwrap_version or (0, 8, 0),
            )
            # bubblewrap's own environment is readable inside as /proc/1/environ: give it
            # nothing of ours.
            return command, {"PATH": "/usr/bin:/bin"}, tempfile.gettempdir()
        # L0: no namespaces; the program sees the host (only trusted code runs here).
        exe = sys.executable if deps_dir is None else str(deps_dir / "bin" / "python")
        env = launch.program_env(executable=exe)
        env.update(HOME=str(work.path), TMPDIR=str(work.path))
        return [exe, *argv], env, str(work.path)

    def _execute(
        self,
        work: WorkDir,
        groups: RunCgroups,
        argv: Sequence[str],
        stdin: bytes | None,
        deps_dir: Path | None,
        wall: float,
    ) -> _Outcome:
        cfg = self.config
        with contextlib.ExitStack() as fds:
            seccomp_fd = None
            if self._bwrap and self.report.has("seccomp"):
                seccomp_fd = seccomp_filter.memfd_with_filter()
                fds.callback(os.close, seccomp_fd)
            stdin_fd: int = subprocess.DEVNULL
            if stdin is not None:
                stdin_fd = os.memfd_create("llm-trainer-sandbox-stdin", os.MFD_CLOEXEC)
                fds.callback(os.close, stdin_fd)
                os.write(stdin_fd, stdin)
                os.lseek(stdin_fd, 0, os.SEEK_SET)
            command, env, cwd = self._command(work, argv, deps_dir, seccomp_fd)
            limits = launch.rlimits(
                cpu_s=cfg.cpu_s,
                address_space=cfg.address_space_bytes,
                fsize=cfg.work_mb << 20,
                nofile=cfg.nofile,
            )
            limited = launch.limited_command(command, limits, groups.procs_files())
            preexec = None
            if limited is None:
                cgroup_fds = groups.open_procs_fds()
                for fd in cgroup_fds:
                    fds.callback(os.close, fd)
                # Safe despite threads: the function only writes and sets rlimits.
                preexec = launch.make_preexec(limits, cgroup_fds)
            proc = subprocess.Popen(
                limited or command,
                stdin=stdin_fd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=cwd,
                pass_fds=() if seccomp_fd is None else (seccomp_fd,),
                preexec_fn=preexec,
                start_new_session=True,
            )
        return _supervise(proc, groups, wall=wall, max_output=cfg.max_output_bytes)

    def _result(
        self,
        outcome: _Outcome,
        stats: CgroupStats,
        files: dict[str, bytes],
        work_bytes: int | None,
        disk_full: bool,
        stragglers: int,
        start: float,
    ) -> SandboxResult:
        rc = outcome.returncode
        cpu_s = stats.cpu_s
        if cpu_s is None and self.report.backend == "plain":
            # wait4's usage includes every descendant the child reaped: right at L0 only, since
            # bubblewrap's monitor never reaps the PID namespace's init.
            cpu_s = outcome.cpu_s
        cpu_limit = max(1, int(-(-self.config.cpu_s // 1)))
        hit: list[KillReason | Literal["disk"]] = []
        if outcome.overflow:
            hit.append("output")
        if outcome.timed_out:
            hit.append("timeout")
        if stats.oom_kills:
            hit.append("memory")
        # The kernel checks RLIMIT_CPU on tick-sampled time; cpuacct counts exact runtime: they
        # were seen ~7% apart. A program that raises SIGXCPU itself without the CPU time to
        # show for it is not counted as stopped by the limit.
        # Without a measurement, only SIGXCPU (the soft limit's signal) counts.
        if cpu_s is not None:
            by_cpu = rc in (128 + signal.SIGXCPU, 128 + signal.SIGKILL) and (
                cpu_s >= cpu_limit * 0.75
            )
        else:
            by_cpu = rc == 128 + signal.SIGXCPU
        if by_cpu:
            hit.append("cpu")
        if stats.pids_max_hits:
            hit.append("pids")
        if disk_full:
            hit.append("disk")
        killed: KillReason | None = None
        if outcome.overflow:
            killed = "output"
        elif outcome.timed_out:
            killed = "timeout"
        elif rc != 0 and stats.oom_kills:
            killed = "memory"
        elif "cpu" in hit:
            killed = "cpu"
        elif rc != 0 and stats.pids_max_hits:
            killed = "pids"
        return SandboxResult(
            returncode=None if (outcome.overflow or outcome.timed_out) else rc,
            stdout=outcome.stdout.decode(errors="replace"),
            stderr=outcome.stderr.decode(errors="replace"),
            truncated=outcome.truncated,
            files=files,
            timed_out=outcome.timed_out,
            killed=killed,
            level=self.report.level,
            layers=self.report.present,
            wall_s=time.perf_counter() - start,
            limits_hit=tuple(hit),
            peak_memory_bytes=stats.peak_memory_bytes,
            cpu_s=cpu_s,
            work_bytes=work_bytes,
            stragglers_killed=stragglers,
        )


@dataclass
class _Outcome:
    """What the supervision loop saw (filled in as it goes)."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    truncated: bool
    overflow: bool
    timed_out: bool
    cpu_s: float | None


def _supervise(
    proc: subprocess.Popen[bytes], groups: RunCgroups, *, wall: float, max_output: int
) -> _Outcome:
    """Read the output under the caps until the program ends, the clock runs out, or the
    output overflows; kill what remains; reap the process.

    Whatever happens here (an exception, a KeyboardInterrupt), the process is killed and
    reaped before this returns or raises.
    """
    assert proc.stdout is not None
    assert proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    buffers = {out_fd: bytearray(), err_fd: bytearray()}
    state = _Outcome(None, b"", b"", truncated=False, overflow=False, timed_out=False, cpu_s=None)
    try:
        _pump(proc, groups, buffers, state, deadline=time.monotonic() + wall, cap=max_output)
    finally:
        if state.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)  # its PID namespace dies with it
            groups.kill_all()
            state.returncode, state.cpu_s = _reap(proc)
            state.timed_out = not state.overflow
        # The child led its own process group (start_new_session): at L0 without cgroups this
        # is the only net for children it left behind (a setsid daemon still escapes: L0 is
        # not isolation). The group id stays reserved while any member lives.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
        proc.stderr.close()
    state.stdout, state.stderr = bytes(buffers[out_fd]), bytes(buffers[err_fd])
    return state


def _pump(
    proc: subprocess.Popen[bytes],
    groups: RunCgroups,
    buffers: dict[int, bytearray],
    state: _Outcome,
    *,
    deadline: float,
    cap: int,
) -> None:
    """The event loop of one run: output pipes and the process's pidfd, until both pipes are
    closed and the process is reaped, or the deadline, or an overflow."""
    pidfd = os.pidfd_open(proc.pid)
    try:
        with selectors.DefaultSelector() as sel:
            for fd in buffers:
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ)
            sel.register(pidfd, selectors.EVENT_READ)
            open_pipes = len(buffers)
            until = deadline
            while open_pipes or state.returncode is None:
                now = time.monotonic()
                if now >= until:
                    return  # the deadline (or the drain after the exit) has passed
                for key, _ in sel.select(timeout=until - now):
                    if key.fd == pidfd:
                        sel.unregister(pidfd)
                        state.returncode, state.cpu_s = _reap(proc)
                        # The tree died with bubblewrap's PID namespace; at L0 the cgroups
                        # are the kill-all. Output a straggler still holds is read a little
                        # longer, then abandoned.
                        groups.kill_all(timeout_s=0.5)
                        until = min(deadline, time.monotonic() + _DRAIN_AFTER_EXIT_S)
                        continue
                    try:
                        chunk = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(key.fd)
                        open_pipes -= 1
                        continue
                    buf = buffers[key.fd]
                    room = cap - len(buf)
                    buf += chunk[:room]
                    if len(chunk) > room:
                        state.truncated = state.overflow = True
                        return
    finally:
        os.close(pidfd)


def _reap(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Wait for ``proc`` with ``wait4``: the exit status (128 + N for signal N, as a shell
    reports it and bubblewrap passes it on) and the CPU seconds of it and of the descendants
    it reaped (the whole tree at L0; not under bubblewrap, whose monitor never reaps its init:
    the cpuacct cgroup measures that case)."""
    _, raw, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(raw)
    if code < 0:
        code = 128 - code
    proc.returncode = code  # so Popen never waits for (or reports) it again
    return code, usage.ru_utime + usage.ru_stime
