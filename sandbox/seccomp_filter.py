"""The seccomp filter of the sandbox, compiled with libseccomp and handed to bubblewrap.

bubblewrap loads a classic-BPF program from a file descriptor (``--seccomp FD``) right before
it executes the sandboxed program. We build that program with libseccomp (``libseccomp.so.2``,
the C library under Debian's ``python3-seccomp`` binding), called through ``ctypes``: Debian's
binding is compiled for Debian's own Python, not for the project's interpreter, and libseccomp's
C ABI is stable where a CPython extension's is not.

Why each rule exists (see ../shared/SANDBOX.md, "What failed, and why it matters"):

- seccomp cannot read pointer arguments, so there is no "loopback only" rule: every socket
  family but ``AF_UNIX`` fails with ``EAFNOSUPPORT`` (the network namespace already has no
  route out; this is the second wall).
- ``clone3`` passes its flags through a pointer the filter cannot inspect: it fails with
  ``ENOSYS`` so glibc falls back to ``clone``, whose flags are checked (no new namespaces).
- io_uring performs socket and file operations without the syscalls a filter sees: blocked.
- 32-bit ``int 0x80`` syscalls work from 64-bit processes on this kind of kernel: libseccomp's
  default architecture check kills any process that uses a foreign syscall table (and x32).
- ptrace, process_vm_*, mount, namespace, BPF, keyring, module and kexec calls: nothing a
  generated program needs, each a known step of container escapes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import threading

#: ``SCMP_ACT_ALLOW``: the default action (an allow-list of syscalls breaks numpy and torch
#: with every new glibc; the deny-list below is the study's, which contained every program).
_ACT_ALLOW = 0x7FFF0000
_ACT_KILL_PROCESS = 0x80000000
_FLTATR_ACT_BADARCH = 2  # enum scmp_filter_attr (1 is the read-only default action)

#: Calls that fail with ``EPERM``: none is needed by a program that computes and writes files.
DENIED_SYSCALLS: tuple[str, ...] = (
    # Tracing and reading other processes' memory.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    # File-system topology.
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    # Namespaces (bubblewrap's --disable-userns is the first wall for user namespaces).
    "unshare",
    "setns",
    # Kernel attack surface with a history of escapes.
    "bpf",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "perf_event_open",
    "add_key",
    "request_key",
    "keyctl",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    # Host-wide state.
    "reboot",
    "swapon",
    "swapoff",
    "syslog",
    "acct",
    "quotactl",
    "quotactl_fd",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "vhangup",
    "lookup_dcookie",
    "fanotify_init",
    "nfsservctl",
)

_AF_UNIX = 1
_TIOCSTI = 0x5412
# The namespace bits of clone(2)'s flags (CLONE_NEWTIME shares its bit with CSIGNAL there).
_CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

# enum scmp_compare
_CMP_NE = 1
_CMP_MASKED_EQ = 7


class _ArgCmp(ctypes.Structure):
    """``struct scmp_arg_cmp``: one comparison on a syscall argument."""

    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class SeccompUnavailableError(RuntimeError):
    """libseccomp cannot be loaded or the filter cannot be compiled; the message says why."""


def _act_errno(code: int) -> int:
    """``SCMP_ACT_ERRNO(code)``: the syscall returns -1 with ``errno = code``."""
    return 0x00050000 | (code & 0xFFFF)


@functools.cache
def _libseccomp() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailableError(
            f"libseccomp could not be loaded ({exc}); install it with "
            "`apt-get install libseccomp2` (scripts/setup.sh installs python3-seccomp, which "
            "depends on it)"
        ) from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_release.restype = None
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    # The array form, not the variadic seccomp_rule_add: ctypes cannot pass structs through
    # C varargs portably.
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    )
    lib.seccomp_attr_set.restype = ctypes.c_int
    lib.seccomp_attr_set.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32)
    lib.seccomp_export_bpf.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    return lib


_lock = threading.Lock()


@functools.cache
def compiled_filter() -> bytes:
    """The filter as a BPF program (an array of ``struct sock_filter``), for ``--seccomp``.

    Compiled once per process; every run writes these bytes to a fresh memfd.

    Raises:
        SeccompUnavailableError: libseccomp is missing or rejected a rule.
    """
    lib = _libseccomp()
    with _lock:
        ctx = lib.seccomp_init(_ACT_ALLOW)
        if not ctx:
            raise SeccompUnavailableError("seccomp_init failed (libseccomp refused ALLOW)")
        try:
            # A foreign syscall table (int 0x80, x32) kills the whole process, not the thread.
            rc = lib.seccomp_attr_set(ctx, _FLTATR_ACT_BADARCH, _ACT_KILL_PROCESS)
            if rc < 0:
                raise SeccompUnavailableError(f"seccomp_attr_set failed: {os.strerror(-rc)}")
            _add_rules(lib, ctx)
            read_fd, write_fd = os.pipe()
            try:
                # A BPF program is at most 4096 instructions of 8 bytes: it fits a pipe buffer.
                rc = lib.seccomp_export_bpf(ctx, write_fd)
                os.close(write_fd)
                write_fd = -1
                if rc < 0:
                    raise SeccompUnavailableError(f"seccomp_export_bpf failed: {os.strerror(-rc)}")
                chunks = []
                while chunk := os.read(read_fd, 65536):
                    chunks.append(chunk)
            finally:
                os.close(read_fd)
                if write_fd >= 0:
                    os.close(write_fd)
        finally:
            lib.seccomp_release(ctx)
    program = b"".join(chunks)
    if not program or len(program) % 8:
        raise SeccompUnavailableError(
            f"libseccomp exported a malformed program ({len(program)} bytes)"
        )
    return program


def _add_rules(lib: ctypes.CDLL, ctx: int) -> None:
    def rule(action: int, name: str, *cmps: tuple[int, int, int, int]) -> None:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:  # not a syscall of this architecture (or older than this libseccomp)
            return
        array = (_ArgCmp * max(1, len(cmps)))(*(_ArgCmp(*c) for c in cmps))
        rc = lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
        if rc < 0:
            raise SeccompUnavailableError(
                f"libseccomp rejected the rule on {name}: {os.strerror(-rc)}"
            )

    for name in DENIED_SYSCALLS:
        rule(_act_errno(errno.EPERM), name)
    rule(_act_errno(errno.ENOSYS), "clone3")
    rule(_act_errno(errno.EAFNOSUPPORT), "socket", (0, _CMP_NE, _AF_UNIX, 0))
    for flag in _CLONE_NAMESPACE_FLAGS:
        rule(_act_errno(errno.EPERM), "clone", (0, _CMP_MASKED_EQ, flag, flag))
    # Pushing characters into the controlling terminal's input (bubblewrap's --new-session is
    # the first wall).
    rule(_act_errno(errno.EPERM), "ioctl", (1, _CMP_MASKED_EQ, 0xFFFFFFFF, _TIOCSTI))


def memfd_with_filter() -> int:
    """A fresh memfd holding :func:`compiled_filter`, positioned at 0 (the caller closes it)."""
    program = compiled_filter()
    fd = os.memfd_create("llm-trainer-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, program)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
