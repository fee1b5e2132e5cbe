"""How one sandboxed process is started: the bubblewrap command line, the environment, and
how the process joins its cgroups and gets its rlimits before anything of it runs.

Kept apart from the runner so the start-up probe (:mod:`llm_trainer.sandbox.isolation`) starts
its probe program exactly the way every run starts the untrusted one.
"""

from __future__ import annotations

import functools
import math
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

#: Where things are inside the sandbox.
WORK = "/work"
TMP = "/tmp"
DEPS = "/deps"

#: What every sandbox sees of the host's system, read-only (SANDBOX.md, layer 4).
_ROOT_DIRS = ("/usr",)
_ROOT_SYMLINKS = (("usr/lib", "/lib"), ("usr/lib64", "/lib64"), ("usr/bin", "/bin"))
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")


#: Where the venv is bound when its own path would fall inside ``/work``, ``/tmp`` or
#: ``/deps`` (bubblewrap would create its mount point inside the program's work directory).
VENV_INSIDE = "/opt/llm-trainer-venv"


def interpreter_paths(executable: str | None = None) -> tuple[str, ...]:
    """Host directories the interpreter needs, bound read-only inside.

    The venv (``sys.prefix``: its ``pyvenv.cfg`` points to its home) and the base installation
    it was made from (``sys.base_prefix``, e.g. pyenv's under /root), minus what ``/usr``
    already covers.
    """
    candidates = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
    exe = executable or sys.executable
    candidates.append(str(Path(os.path.realpath(exe)).parent.parent))
    out: list[str] = []
    for path in sorted({os.path.realpath(p) for p in candidates} | set(candidates), key=len):
        if path in ("/", "") or not Path(path).is_dir():
            continue
        if any(path == b or path.startswith(b.rstrip("/") + "/") for b in (*_ROOT_DIRS, *out)):
            continue
        out.append(path)
    return tuple(out)


def _under(path: str, parents: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in parents)


def interpreter_binds(executable: str | None = None) -> tuple[tuple[tuple[str, str], ...], str]:
    """The read-only binds ``(host, inside)`` of the interpreter, and its path inside.

    Everything is bound at the same path, except a venv that lives under ``/work`` (as this
    checkout's ``.venv`` does), ``/tmp`` or ``/deps``: it goes to :data:`VENV_INSIDE`, so the
    program's work directory holds only its own files. Python finds the venv from the path it
    is started by (``pyvenv.cfg`` beside ``bin/``), so it works from anywhere.
    """
    exe = executable or sys.executable
    reserved = (WORK, TMP, DEPS)
    venv = sys.prefix if sys.prefix != sys.base_prefix else None
    binds: list[tuple[str, str]] = []
    exe_inside = exe
    for path in interpreter_paths(exe):
        inside = path
        if venv is not None and _under(path, reserved) and path in (venv, os.path.realpath(venv)):
            inside = VENV_INSIDE
            if _under(exe, (venv,)):
                exe_inside = VENV_INSIDE + exe[len(venv) :]
        binds.append((path, inside))
    return tuple(binds), exe_inside


def inside_path(host: str, binds: Sequence[tuple[str, str]]) -> str:
    """Where the host path ``host`` appears inside, given the binds (same path if unbound)."""
    for src, dst in sorted(binds, key=lambda b: -len(b[0])):
        if _under(host, (src,)):
            return dst + host[len(src) :]
    return host


def mount_points_in_work(binds: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """Top-level names (relative to the work dir) that binds under ``/work`` create there."""
    inside = [dst for _, dst in binds if dst.startswith(WORK + "/")]
    return tuple(sorted({Path(p).relative_to(WORK).parts[0] for p in inside}))


def program_env(*, executable: str) -> dict[str, str]:
    """The program's whole environment: nothing of the host's (SANDBOX.md: a scrubbed env)."""
    return {
        "PATH": f"{Path(executable).parent}:/usr/local/bin:/usr/bin:/bin",  # its venv's first
        "HOME": WORK,
        "TMPDIR": TMP,
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "LANG": "C.UTF-8",
        "PYTHONUTF8": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        # One BLAS/OpenMP thread: the pids cgroup counts threads, and RLIMIT_AS counts each
        # thread's stack reservation.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
    }


def bwrap_argv(
    bwrap: str,
    *,
    work_dir: Path,
    tmp_bytes: int,
    seccomp_fd: int | None,
    ro_binds: Sequence[tuple[str, str]],
    deps_dir: Path | None,
    env: dict[str, str],
    command: Sequence[str],
    version: tuple[int, ...] = (0, 8, 0),
) -> list[str]:
    """The bubblewrap command line of ../shared/SANDBOX.md, layer 4.

    ``--unshare-all`` gives new user, network, PID, IPC, UTS and cgroup namespaces; the uid
    inside is 65534 with every capability dropped and no way to make a user namespace again;
    ``--die-with-parent`` ties the sandbox to this process and ``--new-session`` detaches it
    from the terminal (no TIOCSTI). Only ``/usr``, the interpreter and the given paths are
    visible, read-only; ``/work`` and ``/tmp`` are size-capped tmpfs.

    Older bubblewraps (``version``, from :func:`bwrap_version`) lack ``--disable-userns``
    (0.8; the seccomp filter still refuses new user namespaces) and ``--size`` (0.5; /tmp and
    /dev/shm are then capped by the memory cgroup only).
    """
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--uid",
        "65534",
        "--gid",
        "65534",
        *(["--disable-userns"] if version >= (0, 8) else []),
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
    ]
    for path in _ROOT_DIRS:
        argv += ["--ro-bind", path, path]
    for target, link in _ROOT_SYMLINKS:
        if Path(link).is_symlink():
            argv += ["--symlink", target, link]
        elif Path(link).is_dir():
            argv += ["--ro-bind", link, link]
    for path in _ETC_FILES:
        if Path(path).exists():
            argv += ["--ro-bind", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    size = ["--size", str(tmp_bytes)] if version >= (0, 5) else []
    argv += [*size, "--tmpfs", TMP, *size, "--tmpfs", "/dev/shm"]
    argv += ["--bind", str(work_dir), WORK]
    for host, inside in ro_binds:
        argv += ["--ro-bind", host, inside]
    if deps_dir is not None:
        argv += ["--ro-bind", str(deps_dir), DEPS]
    # The root and /dev are tmpfs bubblewrap made (mount points live there): writable by the
    # sandbox's uid and not size-capped, so made read-only once everything is mounted. Device
    # nodes still work (/dev/null), and /work, /tmp, /dev/shm are mounts of their own.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    argv += ["--chdir", WORK, "--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    argv += ["--", *command]
    return argv


@functools.cache
def bwrap_version(bwrap: str) -> tuple[int, ...] | None:
    """``bwrap --version`` as numbers (``(0, 8, 0)``), None if it does not answer."""
    try:
        out = subprocess.run(
            [bwrap, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(g or 0) for g in match.groups()) if match else None


def rlimits(
    *, cpu_s: float, address_space: int | None, fsize: int, nofile: int
) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) for the child: CPU, AS, FSIZE, NOFILE and no core dumps.

    Not ``RLIMIT_NPROC``: it is ignored for uid 0, and bubblewrap's sandbox uid maps back to
    root when bubblewrap runs as root (the pids cgroup is the cap).
    """
    cpu = max(1, math.ceil(cpu_s))
    out = [
        # SIGXCPU at the soft limit (exit status 152), SIGKILL one second later.
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_FSIZE, fsize, fsize),
        (resource.RLIMIT_NOFILE, nofile, nofile),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if address_space is not None:
        out.append((resource.RLIMIT_AS, address_space, address_space))
    clamped = []
    for res, soft, hard in out:
        # Without root a hard limit can only go down: never ask above the current one.
        current = resource.getrlimit(res)[1]
        if current != resource.RLIM_INFINITY:
            hard = min(hard, current)
        clamped.append((res, min(soft, hard), hard))
    return clamped


#: ``prlimit`` option of each resource.
_PRLIMIT_OPTIONS = {
    resource.RLIMIT_CPU: "--cpu",
    resource.RLIMIT_FSIZE: "--fsize",
    resource.RLIMIT_NOFILE: "--nofile",
    resource.RLIMIT_CORE: "--core",
    resource.RLIMIT_AS: "--as",
}


@functools.cache
def _prlimit() -> str | None:
    return shutil.which("prlimit") if Path("/bin/sh").exists() else None


def limited_command(
    command: Sequence[str], limits: list[tuple[int, int, int]], cgroup_procs: Sequence[Path]
) -> list[str] | None:
    """``command`` behind a shell that joins the cgroups and util-linux's ``prlimit``.

    Both exec into the next, so the process started is the one that runs ``command``, inside
    its groups and under its limits from its first instruction. This is how runs start, not
    ``preexec_fn``: Python must then fork itself instead of using vfork, which cost 10-25 ms
    per run with a small parent here, and grows with the parent's memory (a trainer's).
    None when /bin/sh or prlimit is missing (then :func:`make_preexec` does it).
    """
    prlimit = _prlimit()
    if prlimit is None:
        return None
    joins = [f'echo 0 >"${i + 1}"' for i in range(len(cgroup_procs))]
    script = " && ".join([*joins, f"shift {len(cgroup_procs)}", 'exec "$@"'])
    options = [f"{_PRLIMIT_OPTIONS[res]}={soft}:{hard}" for res, soft, hard in limits]
    return [
        "/bin/sh",
        "-c",
        script,
        "sh",
        *map(str, cgroup_procs),
        prlimit,
        *options,
        "--",
        *command,
    ]


def make_preexec(limits: list[tuple[int, int, int]], cgroup_fds: list[int]) -> Callable[[], None]:
    """What the child runs between fork and exec (the fallback of :func:`limited_command`):
    join the cgroups, then lower the rlimits.

    Only ``write`` and ``setrlimit`` on values prepared here: nothing that allocates much,
    imports or takes a lock another thread may hold at fork time. Joining first means
    bubblewrap and every descendant are born inside the groups (writing "0" to
    ``cgroup.procs`` moves the writer).
    """

    def preexec() -> None:
        for fd in cgroup_fds:
            os.write(fd, b"0")
        for res, soft, hard in limits:
            resource.setrlimit(res, (soft, hard))

    return preexec
