"""The per-run work directory: a size-capped tmpfs on the host, mounted at ``/work`` inside.

``RLIMIT_FSIZE`` is per file (2 GiB across 11 files got through every rlimit-only set-up of
../shared/SANDBOX.md): only a file system of a fixed size stops a disk bomb, with ``ENOSPC``.
The tmpfs is mounted on the host (not inside bubblewrap) so that the output files can be read
from the host side after every process of the run is dead, which is also why collecting them
cannot race with the program: nothing inside can swap a file for a symlink any more.
"""

from __future__ import annotations

import contextlib
import ctypes
import fnmatch
import functools
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from llm_trainer.core.errors import ConfigError

_MS_NOSUID = 2
_MS_NODEV = 4
_MNT_DETACH = 2
_PREFIX = "llm-trainer-sandbox-"


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = (
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    )
    libc.mount.restype = ctypes.c_int
    libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
    libc.umount2.restype = ctypes.c_int
    return libc


def base_dir() -> Path:
    """Where the per-run directories are made (the host's temporary directory)."""
    return Path(tempfile.gettempdir())


def probe_tmpfs() -> str | None:
    """None when a size-capped tmpfs can be mounted here (root, or CAP_SYS_ADMIN); else why."""
    try:
        work = WorkDir(size_bytes=1 << 20)
    except OSError as exc:
        return (
            f"cannot mount a size-capped tmpfs ({exc.strerror}): needs root (or CAP_SYS_ADMIN); "
            "without it a program can fill the host disk through many files"
        )
    work.close()
    return None


class WorkDir:
    """A fresh host directory, with a ``size_bytes`` tmpfs mounted on it when possible.

    Args:
        size_bytes: The tmpfs size (``ENOSPC`` past it).
        require_tmpfs: If false, a plain directory is used when mounting fails (``capped`` is
            then false and the caller records the layer as missing).
    """

    def __init__(self, *, size_bytes: int, require_tmpfs: bool = True) -> None:
        prefix = f"{_PREFIX}{os.getpid()}-"  # the pid says whose it is
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir()))
        self.capped = False
        options = f"size={size_bytes},mode=0755".encode()
        rc = _libc().mount(
            b"tmpfs", os.fsencode(self.path), b"tmpfs", _MS_NOSUID | _MS_NODEV, options
        )
        if rc == 0:
            self.capped = True
        else:
            err = ctypes.get_errno()
            if require_tmpfs:
                self.path.rmdir()
                raise OSError(err, os.strerror(err), str(self.path))
            self.path.chmod(0o755)

    def write_files(self, files: Mapping[str, str | bytes]) -> None:
        """Write the program's input files (relative paths; subdirectories are created)."""
        for name, content in files.items():
            target = self.path / safe_relative(name, what="files")
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                data = content.encode()
            elif isinstance(content, bytes | bytearray | memoryview):
                data = bytes(content)
            else:
                raise ConfigError(
                    f"files[{name!r}] is a {type(content).__name__}; give the file's content "
                    "as str or bytes"
                )
            target.write_bytes(data)

    def used_bytes(self) -> int | None:
        """Bytes used on the tmpfs (host-side evidence of a disk bomb), None if not a tmpfs."""
        if not self.capped:
            return None
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def full(self) -> bool:
        """Whether the tmpfs ran out of space (or inodes) during the run."""
        if not self.capped:
            return False
        st = os.statvfs(self.path)
        # A tmpfs leaves no reserve: a full one has no free block (at most a partial page).
        return st.f_bavail * st.f_frsize < 64 * 1024 or st.f_favail == 0

    def collect(self, patterns: Sequence[str], *, ignore: tuple[str, ...] = ()) -> dict[str, bytes]:
        """Regular files matching ``patterns`` (relative paths or globs), read from the host.

        Symlinks, FIFOs, sockets and devices are skipped without being followed or opened: a
        program must not turn "collect out.txt" into "read /etc/shadow on the host".
        """
        wanted = [safe_relative(p, what="collect").as_posix() for p in patterns]
        out: dict[str, bytes] = {}
        for rel in self._regular_files(ignore):
            if any(rel == w or fnmatch.fnmatchcase(rel, w) for w in wanted):
                data = self._read_no_follow(rel)
                if data is not None:
                    out[rel] = data
        return out

    def _regular_files(self, ignore: tuple[str, ...]) -> list[str]:
        found: list[str] = []
        for root, dirs, files in os.walk(self.path, followlinks=False):
            rel_root = Path(root).relative_to(self.path)
            dirs[:] = [d for d in dirs if (rel_root / d).as_posix() not in ignore]
            for name in files:
                rel = (rel_root / name).as_posix()
                st = os.lstat(Path(root) / name)
                if stat.S_ISREG(st.st_mode):
                    found.append(rel)
        return sorted(found)

    def _read_no_follow(self, rel: str) -> bytes | None:
        dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            parts = rel.split("/")
            for part in parts[:-1]:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
                os.close(dir_fd)
                dir_fd = nxt
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            return None
        finally:
            os.close(dir_fd)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            return f.read()

    def close(self) -> None:
        """Unmount (lazily: a straggler cannot keep it busy) and remove the directory."""
        if self.capped:
            _libc().umount2(os.fsencode(self.path), _MNT_DETACH)
            self.capped = False
        shutil.rmtree(self.path, ignore_errors=True)


def safe_relative(name: str, *, what: str) -> PurePosixPath:
    """``name`` as a relative path inside the work directory, or a ConfigError naming it."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\0" in name:
        raise ConfigError(
            f"{what}: {name!r} is not a relative path inside the work directory "
            "(no leading '/', no '..', not empty)"
        )
    return path


def leftover_workdirs(pid: int | None = None) -> list[Path]:
    """Work directories (or their mounts) made by process ``pid`` (default: this one) still
    present; tests assert none remain."""
    prefix = f"{_PREFIX}{os.getpid() if pid is None else pid}-"
    found = [p for p in base_dir().iterdir() if p.name.startswith(prefix)]
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            mount_point = line.split()[1]
            if Path(mount_point).name.startswith(prefix) and Path(mount_point) not in found:
                found.append(Path(mount_point))
    return found
