"""Hostile programs (../shared/SANDBOX.md, "The hostile programs that define contained").

Every program is contained, and each test checks that *from the host side*: listeners that
must not have been reached, files that must not exist, a host process that must still be
alive and untraced, ``/proc`` scans for survivors, the run's cgroup counters as recorded in the
result, the namespaces of the live program read from the host's ``/proc``. What a program
prints is used only to make failures readable (or, for secrets, as the place a leak would
show). ``host_clean`` (conftest.py) checks after every test that no cgroup, work dir or mount
was left behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llm_trainer.sandbox import Sandbox, SandboxConfig, SandboxResult, launch
from tests.sandbox.conftest import needs_l3, processes_with

pytestmark = needs_l3


@pytest.fixture
def sleeper(marker: str) -> Iterator[subprocess.Popen[bytes]]:
    """A host process the hostile programs try to kill and trace."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", marker])
    yield proc
    proc.kill()
    proc.wait()


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _nothing_arrived(sock: socket.socket) -> bool:
    """True when a listening or datagram socket has nothing pending (checked without waiting)."""
    sock.setblocking(False)
    try:
        if sock.type == socket.SOCK_STREAM:
            conn, _ = sock.accept()
            conn.close()
        else:
            sock.recvfrom(65536)
    except BlockingIOError:
        return True
    return False


# -- network ----------------------------------------------------------------------------------

NETWORK = r"""
import json, socket, sys
tcp, udp, abstract, path = sys.argv[1:5]
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "REACHED"
    except OSError as exc:
        out[name] = exc.errno
def unix(address):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    s.connect(address)
attempt("tcp4", lambda: socket.create_connection(("127.0.0.1", int(tcp)), timeout=1))
attempt("tcp6", lambda: socket.create_connection(("::1", int(tcp)), timeout=1))
def datagram(payload, address):
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(payload, address)
attempt("udp", lambda: datagram(b"x", ("127.0.0.1", int(udp))))
attempt("dns_udp", lambda: datagram(b"\0" * 12, ("127.0.0.1", 53)))
attempt("dns", lambda: socket.getaddrinfo("pypi.org", 443))
attempt("abstract_unix", lambda: unix("\0" + abstract))
attempt("path_unix", lambda: unix(path))
attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))
attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
try:
    out["interfaces"] = [name for _, name in socket.if_nameindex()]
except OSError as exc:
    out["interfaces"] = exc.errno
print(json.dumps(out))
"""


def test_network_tcp_udp_dns_and_unix_sockets_to_the_host_are_unreachable(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    abstract_name = f"llm-sandbox-{secrets.token_hex(6)}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0" + abstract_name)
    abstract.listen()
    path = str(tmp_path / "host.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(path)
    unix.listen()
    listeners = [tcp, udp, abstract, unix]
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # a stand-in resolver where glibc looks without /etc/resolv.conf (port 53 free?)
        dns.bind(("127.0.0.1", 53))
        listeners.append(dns)
    except OSError:
        dns.close()
    try:
        res = sandbox.run(
            files={"main.py": NETWORK},
            argv=(
                "main.py",
                str(tcp.getsockname()[1]),
                str(udp.getsockname()[1]),
                abstract_name,
                path,
            ),
        )
        assert res.ok, res.stderr
        # Host side: nothing connected, nothing was received.
        for sock in listeners:
            assert _nothing_arrived(sock), f"{sock} was reached from the sandbox"
    finally:
        for sock in listeners:
            sock.close()
    # The reasons: a private network namespace and the seccomp filter (recorded per result).
    assert {"netns", "seccomp"} <= set(res.layers)
    report = res.stdout
    assert "REACHED" not in report
    host_interfaces = {name for _, name in socket.if_nameindex()} - {"lo"}
    assert not any(name in report for name in host_interfaces)


# -- secrets ----------------------------------------------------------------------------------

SECRETS = r"""
import glob, os, sys
out = []
def grab(path):
    try:
        with open(path, "rb") as f:
            out.append(f.read().decode(errors="replace"))
    except OSError as exc:
        out.append(f"{path}: {exc.strerror}")
for path in sys.argv[1:]:
    grab(path)
for d in ("/", "/root", "/home", "/etc", "/work/..", "/proc"):
    try:
        out.append(f"{d}: {sorted(os.listdir(d))}")
    except OSError as exc:
        out.append(f"{d}: {exc.strerror}")
for proc in glob.glob("/proc/[0-9]*"):
    for name in ("environ", "cmdline"):
        grab(f"{proc}/{name}")
out.append(repr(dict(os.environ)))
text = "\n".join(out)
open("loot.txt", "w").write(text)
print(text)
print(text, file=sys.stderr)
"""


def test_secrets_of_the_host_cannot_be_read(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marker: str
) -> None:
    env_secret = f"env-secret-{secrets.token_hex(8)}"
    file_secret = f"file-secret-{secrets.token_hex(8)}"
    root_secret = f"root-secret-{secrets.token_hex(8)}"
    argv_secret = f"argv-secret-{secrets.token_hex(8)}"
    monkeypatch.setenv("LLM_SANDBOX_TEST_SECRET", env_secret)  # the parent's environment
    world_readable = tmp_path / "secret.txt"
    world_readable.write_text(file_secret)
    world_readable.chmod(0o644)
    tmp_path.chmod(0o755)
    in_root = Path.home() / f".llm-sandbox-secret-{marker}"
    in_root.write_text(root_secret)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", argv_secret])
    try:
        targets = [
            str(world_readable),
            str(in_root),
            "/etc/shadow",
            "/root/.bash_history",
            f"/proc/{os.getpid()}/environ",
            f"/proc/{holder.pid}/cmdline",
            "/proc/1/environ",
            str(Path(__file__)),  # a file of the checkout, outside the work dir
        ]
        res = sandbox.run(files={"main.py": SECRETS}, argv=("main.py", *targets), collect=("*",))
    finally:
        holder.kill()
        holder.wait()
        in_root.unlink()
    assert res.ok, res.stderr
    leaked_into = [
        res.stdout,
        res.stderr,
        *(b.decode(errors="replace") for b in res.files.values()),
    ]
    assert "loot.txt" in res.files  # the program did run and dump what it could see
    for secret in (env_secret, file_secret, root_secret, argv_secret):
        assert not any(secret in text for text in leaked_into), f"{secret} leaked"
    assert "test_secrets_of_the_host_cannot_be_read" not in res.stdout  # this file's text
    shadow = Path("/etc/shadow")
    if shadow.exists():
        root_line = shadow.read_text().splitlines()[0]
        assert root_line not in res.stdout


# -- writing outside the work dir ------------------------------------------------------------

WRITER = r"""
import sys
for path in sys.argv[1:]:
    try:
        with open(path, "w") as f:
            f.write("pwned")
        print("wrote", path)
    except OSError as exc:
        print("refused", path, exc.strerror)
"""


def test_writes_outside_the_work_dir_never_reach_the_host(
    sandbox: Sandbox, tmp_path: Path, marker: str
) -> None:
    tmp_path.chmod(0o777)
    targets = [
        f"/tmp/{marker}",  # the sandbox's own /tmp: allowed inside, invisible on the host
        f"/dev/shm/{marker}",  # likewise
        f"/work/../{marker}",
        f"/usr/{marker}",
        f"/etc/{marker}",
        f"/root/{marker}",
        f"/var/tmp/{marker}",
        f"/{marker}",  # bubblewrap's root tmpfs: remounted read-only
        f"/opt/{marker}",
        f"/dev/{marker}",
        f"{sys.prefix}/{marker}",
        f"{sys.base_prefix}/{marker}",
        str(tmp_path / marker),
        str(Path(__file__).parent / marker),
    ]
    res = sandbox.run(files={"main.py": WRITER}, argv=("main.py", *targets))
    assert res.ok, res.stderr
    for target in targets:
        host_path = Path(target.replace("/work/../", "/"))
        assert not host_path.exists(), f"{host_path} was written from the sandbox"
    # Inside, only the sandbox's own size-capped /tmp and /dev/shm took a write; the rest
    # (/work/.. is the root) is read-only or absent.
    wrote = {line.split()[1] for line in res.stdout.splitlines() if line.startswith("wrote")}
    assert wrote == {f"/tmp/{marker}", f"/dev/shm/{marker}"}


# -- other processes ---------------------------------------------------------------------------

KILLER = r"""
import ctypes, os, signal, sys
pid = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, fn):
    try:
        result = fn()
        print(name, "returned", result, os.strerror(ctypes.get_errno()))
    except OSError as exc:
        print(name, exc.strerror)
attempt("kill", lambda: os.kill(pid, signal.SIGKILL))
attempt("ptrace_attach", lambda: libc.ptrace(16, pid, 0, 0))
attempt("ptrace_seize", lambda: libc.ptrace(0x4206, pid, 0, 0))
attempt("pidfd_open", lambda: os.pidfd_open(pid))
attempt("process_vm_readv", lambda: libc.process_vm_readv(pid, 0, 0, 0, 0, 0))
attempt("kill_all", lambda: os.kill(-1, signal.SIGKILL))
"""


def test_host_processes_cannot_be_killed_or_traced(
    sandbox: Sandbox, sleeper: subprocess.Popen[bytes]
) -> None:
    res = sandbox.run(files={"main.py": KILLER}, argv=("main.py", str(sleeper.pid)))
    time.sleep(0.05)
    assert sleeper.poll() is None, "the host process was killed"
    status = _status(sleeper.pid)
    assert status["TracerPid"] == "0"
    assert not status["State"].startswith(("t", "T"))
    assert res.killed is None, res.stdout
    assert {"pidns", "seccomp", "cap_drop"} <= set(res.layers)


# -- escaping the namespaces ------------------------------------------------------------------

UNSHARE = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID = 0x20000, 0x10000000, 0x40000000, 0x20000000
for name, flags in (("user", CLONE_NEWUSER), ("mnt", CLONE_NEWNS), ("net", CLONE_NEWNET),
                    ("user+mnt", CLONE_NEWUSER | CLONE_NEWNS), ("pid", CLONE_NEWPID)):
    print("unshare", name, libc.unshare(flags), os.strerror(ctypes.get_errno()))
print("mount", libc.mount(b"none", b"/work", b"tmpfs", 0, None), os.strerror(ctypes.get_errno()))
print("io_uring_setup", libc.syscall(425, 1, None), os.strerror(ctypes.get_errno()))
print("bpf", libc.syscall(321, 0, None, 0), os.strerror(ctypes.get_errno()))
print("keyctl", libc.syscall(250, 0, 0, 0, 0, 0), os.strerror(ctypes.get_errno()))
print("clone3", libc.syscall(435, None, 0), os.strerror(ctypes.get_errno()))
sys.stdout.flush()
time.sleep(30)  # stay alive: the host inspects this process's namespaces now
"""


def _namespaces(pid: int | str) -> dict[str, str]:
    return {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in ("user", "mnt", "net", "pid")}


def _during_run(
    sandbox: Sandbox,
    files: dict[str, str],
    argv: tuple[str, ...],
    wall_s: float,
    observe: Callable[[], None],
) -> SandboxResult:
    """Run in a thread and call ``observe`` on the host while the program is alive."""
    box: dict[str, SandboxResult] = {}
    thread = threading.Thread(
        target=lambda: box.setdefault("res", sandbox.run(files=files, argv=argv, wall_s=wall_s))
    )
    thread.start()
    try:
        observe()
    finally:
        thread.join()
    return box["res"]


def test_new_namespaces_mounts_io_uring_and_bpf_are_refused(sandbox: Sandbox, marker: str) -> None:
    seen: dict[str, object] = {}

    def observe() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = [p for p in processes_with(marker) if "python" in _status(p)["Name"]]
            if pids:
                break
            time.sleep(0.01)
        time.sleep(0.7)  # past the attempts (they take milliseconds)
        (pid,) = pids
        seen["ns"] = {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in ("user", "mnt", "net", "pid")}
        parent = int(_status(pid)["PPid"])  # bubblewrap's init inside the sandbox
        seen["parent_ns"] = {
            n: os.readlink(f"/proc/{parent}/ns/{n}") for n in ("user", "mnt", "net", "pid")
        }
        seen["host_ns"] = {
            n: os.readlink(f"/proc/self/ns/{n}") for n in ("user", "mnt", "net", "pid")
        }
        seen["status"] = _status(pid)
        os.kill(pid, signal.SIGKILL)  # seen enough: end the run now

    res = _during_run(sandbox, {"main.py": UNSHARE}, ("main.py", marker), 15.0, observe)
    # Host side: the live program is still in the namespaces bubblewrap made, not in new ones
    # (an unshare that worked would show a namespace its parent does not have).
    assert seen["ns"] == seen["parent_ns"]
    ns, host = seen["ns"], seen["host_ns"]
    assert isinstance(ns, dict)
    assert isinstance(host, dict)
    assert all(ns[n] != host[n] for n in ns)
    status = seen["status"]
    assert isinstance(status, dict)
    assert status["Seccomp"] == "2"
    assert status["NoNewPrivs"] == "1"
    assert status["CapEff"] == "0000000000000000"
    assert res.returncode == 128 + signal.SIGKILL  # the host ended it
    assert "unshare user 0" not in res.stdout, res.stdout


@pytest.mark.parametrize("launcher", ["sh+prlimit", "preexec_fn"])
def test_limits_and_cgroups_are_in_force_on_the_live_program(
    sandbox: Sandbox, marker: str, launcher: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read on the host from /proc/<pid>/limits and /proc/<pid>/cgroup while the program runs,
    through either way of starting it (the preexec_fn one is the fallback without prlimit)."""
    if launcher == "preexec_fn":
        monkeypatch.setattr(launch, "_prlimit", lambda: None)
    seen: dict[str, str] = {}

    def observe() -> None:
        pid = _wait_for_python(marker)
        seen["limits"] = Path(f"/proc/{pid}/limits").read_text()
        seen["cgroup"] = Path(f"/proc/{pid}/cgroup").read_text()
        os.kill(pid, signal.SIGKILL)

    code = "import time\ntime.sleep(30)\n"
    _during_run(sandbox, {"main.py": code}, ("main.py", marker), 15.0, observe)
    limits = {line[:26].strip(): line[26:].split()[:2] for line in seen["limits"].splitlines()[1:]}
    cfg = sandbox.config
    assert limits["Max cpu time"] == [str(int(cfg.cpu_s)), str(int(cfg.cpu_s) + 1)]
    assert limits["Max file size"] == [str(cfg.work_mb << 20)] * 2
    assert limits["Max open files"] == [str(cfg.nofile)] * 2
    assert limits["Max core file size"] == ["0", "0"]
    assert limits["Max address space"] == [str(cfg.address_space_bytes)] * 2
    groups = dict(line.split(":", 2)[1:] for line in seen["cgroup"].splitlines())
    for controller in ("memory", "pids"):
        assert f"/llm-trainer-sandbox-{os.getpid()}-" in groups[controller]


def _wait_for_python(marker: str, timeout_s: float = 5.0) -> int:
    """The pid of the sandboxed interpreter whose command line holds ``marker``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = [p for p in processes_with(marker) if "python" in _status(p)["Name"]]
        if pids:
            time.sleep(0.3)  # past its start-up
            (pid,) = pids
            return pid
        time.sleep(0.01)
    raise AssertionError(f"no process with {marker} appeared")


INT80 = r"""
import ctypes, mmap
# mov eax, 20 (getpid in the 32-bit table); int 0x80; ret
code = bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3])
buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
buf.write(code)
func = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))
print("32-bit syscall returned", func())
"""


def test_a_32_bit_syscall_kills_the_process(sandbox: Sandbox) -> None:
    """int 0x80 reaches the 32-bit syscall table, which the filter never names: libseccomp's
    architecture check kills the process (SIGSYS, exit status 128 + 31)."""
    res = sandbox.run(files={"main.py": INT80})
    assert res.returncode == 128 + 31, (res.stdout, res.stderr)
    assert "returned" not in res.stdout


# -- processes that outlive the run -------------------------------------------------------------

DAEMON = r"""
import os, sys, time
def daemonize(close_stdio):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            if close_stdio:
                for fd in (0, 1, 2):
                    os.close(fd)
            time.sleep(3600)
        os._exit(0)
    os.wait()
daemonize(close_stdio=True)
daemonize(close_stdio=False)  # this one keeps the output pipe open
print("parent exits")
"""


def test_setsid_daemons_do_not_outlive_the_run(sandbox: Sandbox, marker: str) -> None:
    res = sandbox.run(files={"main.py": DAEMON}, argv=("main.py", marker))
    assert res.ok, res.stderr
    assert res.stdout == "parent exits\n"
    assert res.wall_s < 10  # the run ended with its main process, not with the daemon
    assert processes_with(marker) == [], "a daemon survived the run"
    assert res.stragglers_killed == 0  # the PID namespace took them; the cgroup had nothing left


FORK_BOMB = r"""
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""


def test_a_fork_bomb_is_capped_by_the_pids_cgroup_and_leaves_nothing(
    sandbox: Sandbox, marker: str
) -> None:
    peak = 0

    def observe() -> None:
        nonlocal peak
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            peak = max(peak, len(processes_with(marker)))
            time.sleep(0.02)

    res = _during_run(sandbox, {"main.py": FORK_BOMB}, ("main.py", marker), 2.5, observe)
    assert 0 < peak <= sandbox.config.pids  # counted on the host while it ran
    assert "pids" in res.limits_hit
    assert res.killed in ("timeout", "pids")
    assert processes_with(marker) == []


# -- resource bombs -----------------------------------------------------------------------------

MEMORY_BOMB = r"""
chunks = []
for _ in range(256):  # 8 GiB in 32 MiB pieces, every page written
    chunks.append(b"x" * (32 << 20))
print("allocated 8 GiB")
"""


def test_a_memory_bomb_is_killed_by_the_memory_cgroup(sandbox: Sandbox) -> None:
    res = sandbox.run(files={"main.py": MEMORY_BOMB})
    assert res.killed == "memory", (res.returncode, res.stderr)
    assert res.returncode == 128 + 9
    assert res.peak_memory_bytes is not None
    assert res.peak_memory_bytes <= sandbox.config.memory_mb << 20
    assert "allocated" not in res.stdout


def test_an_address_space_bomb_fails_inside_the_rlimit(sandbox: Sandbox) -> None:
    res = sandbox.run(files={"main.py": "x = bytearray(8 << 30)\nprint('got 8 GiB')\n"})
    assert res.returncode != 0
    assert "MemoryError" in res.stderr
    assert res.peak_memory_bytes is not None
    assert res.peak_memory_bytes < 128 << 20


def test_a_busy_loop_is_stopped_by_the_cpu_limit() -> None:
    sb = Sandbox(SandboxConfig(cpu_s=1.0, wall_s=30.0))
    res = sb.run(files={"main.py": "while True:\n    pass\n"})
    assert res.killed == "cpu"
    assert res.returncode == 128 + 24  # SIGXCPU
    assert res.cpu_s is not None
    assert res.cpu_s >= 0.75  # measured by the cpuacct cgroup
    assert res.wall_s < 25  # SIGXCPU after 1 s of CPU, long before the wall clock


def test_sleeping_past_the_wall_clock_is_killed(sandbox: Sandbox, marker: str) -> None:
    start = time.monotonic()
    res = sandbox.run(
        files={"main.py": "import time\ntime.sleep(10**6)\n"}, argv=("main.py", marker), wall_s=1.0
    )
    assert res.killed == "timeout"
    assert res.timed_out
    assert res.returncode is None
    assert 1.0 <= time.monotonic() - start < 6.0
    assert processes_with(marker) == []


DISK_BOMB = r"""
import errno, os, sys
mode, target = sys.argv[1], sys.argv[2]
os.makedirs(target, exist_ok=True)
block = b"\0" * (1 << 20)
written = 0
last_error = None
files = ["big"] if mode == "one" else [f"part{i}" for i in range(11)]
per_file = 2048 if mode == "one" else 200  # 2 GiB in one file, or 11 x 200 MiB
try:
    for name in files:
        with open(os.path.join(target, name), "ab") as f:
            try:
                for _ in range(per_file):
                    f.write(block)
                    f.flush()
                    written += len(block)
            except OSError as exc:
                last_error = exc
                if exc.errno != errno.EFBIG:  # RLIMIT_FSIZE is per file: go on to the next
                    raise
except OSError:
    pass
if last_error is None:
    print("wrote", written)
else:
    print("stopped", written, errno.errorcode[last_error.errno])
"""


@pytest.mark.parametrize("mode", ["one", "many"])
@pytest.mark.parametrize("target", ["/work/out", "/tmp/out", "/dev/shm/out"])
def test_a_disk_bomb_stops_at_the_tmpfs_cap(sandbox: Sandbox, mode: str, target: str) -> None:
    """2 GiB into one file or 11 x 200 MiB: ENOSPC at the size cap (the work dir's is
    measured on the host; /tmp's and /dev/shm's pages count in the memory cgroup)."""
    disk_before = shutil.disk_usage("/").used
    res = sandbox.run(files={"main.py": DISK_BOMB}, argv=("main.py", mode, target))
    cap = sandbox.config.work_mb << 20
    assert res.ok, res.stderr
    assert res.stdout.startswith("stopped"), res.stdout
    assert int(res.stdout.split()[1]) <= cap
    # Many files: the size cap stops it, not the per-file rlimit; one file meets both at once.
    assert res.stdout.split()[2] in (("ENOSPC",) if mode == "many" else ("ENOSPC", "EFBIG"))
    assert res.work_bytes is not None
    assert res.work_bytes <= cap
    if target.startswith("/work"):
        assert "disk" in res.limits_hit
    assert res.peak_memory_bytes is not None
    assert res.peak_memory_bytes <= sandbox.config.memory_mb << 20
    assert shutil.disk_usage("/").used - disk_before < 64 << 20  # the host disk was untouched


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_huge_output_is_cut_at_the_cap_and_the_run_killed(sandbox: Sandbox, stream: str) -> None:
    code = f"import sys\nwhile True:\n    sys.{stream}.write('x' * 65536)\n"
    res = sandbox.run(files={"main.py": code})
    assert res.killed == "output"
    assert res.truncated
    assert res.returncode is None
    assert len(getattr(res, stream)) == sandbox.config.max_output_bytes
    assert res.wall_s < 10
