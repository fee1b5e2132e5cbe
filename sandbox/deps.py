"""Dependencies of generated code: resolved outside the sandbox, cached, mounted read-only.

The sandboxed program has no network, so a ``requirements.txt`` it comes with is installed
*before* it runs, by pip on the host, into a virtual environment of its own, cached under the
hash of the normalised requirements (and of the interpreter and of the project's installed
distributions), then bound read-only at ``/deps``; the program runs with ``/deps/bin/python``.
A second run with the same requirements reuses the environment.

That environment sees the project's own packages (a ``.pth`` file adds the project's site
directories after its own), so pip counts numpy or torch as already satisfied instead of
downloading them again, and a requirement pip does install (another version, a new project)
takes precedence inside the sandbox. pip never modifies the project's environment: it does not
uninstall distributions outside the environment it installs into.

What keeps the host safe while pip runs on it for untrusted input:

- every project named must be in ``SandboxConfig.allowed_requirements``, checked before pip
  starts; every project pip then installs (dependencies, extras) must be too, checked from
  pip's installation report before the directory is published to the cache;
- only wheels are accepted (``--only-binary=:all:``): building an sdist runs its build code
  on the host; installing a wheel runs nothing;
- no pip option, URL, path or environment marker is accepted in the text: one project name,
  optional extras and version specifiers per line.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import site
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from llm_trainer.sandbox.config import (
    DependencyError,
    DisallowedDependencyError,
    SandboxConfig,
    canonical_name,
)

#: Bumped when the layout or the pip options change, so old cache entries are not reused.
_CACHE_VERSION = "2"
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_SPEC = r"(?:~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_LINE = re.compile(
    rf"^(?P<name>{_NAME})\s*(?:\[(?P<extras>\s*{_NAME}(?:\s*,\s*{_NAME})*\s*)\])?"
    rf"\s*(?P<specs>{_SPEC}(?:\s*,\s*{_SPEC})*)?$"
)


def parse_requirements(text: str) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """``(canonical name, extras, specifiers)`` per requirement, sorted; comments dropped.

    Raises:
        DisallowedDependencyError: A line that is not ``name[extras] specifiers`` (an option, a URL,
            a path, a marker), with the line quoted.
    """
    out: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise DisallowedDependencyError(
                f"requirements line {number} ({raw.strip()!r}) is not 'name[extras] "
                "specifiers' (e.g. 'six==1.17.0'): pip options, URLs, paths and environment "
                "markers are refused, since pip runs outside the sandbox"
            )
        name = canonical_name(match["name"])
        extras = tuple(
            sorted(canonical_name(e.strip()) for e in (match["extras"] or "").split(",") if e)
        )
        specs = tuple(sorted(re.sub(r"\s+", "", s) for s in (match["specs"] or "").split(",") if s))
        if name in out:
            raise DisallowedDependencyError(
                f"requirements name {name!r} twice (line {number}); give it once, with every "
                "specifier on that line"
            )
        out[name] = (name, extras, specs)
    return [out[k] for k in sorted(out)]


def normalised(text: str) -> str:
    """The canonical requirements text (what the cache key hashes and pip receives)."""
    lines = []
    for name, extras, specs in parse_requirements(text):
        extra = f"[{','.join(extras)}]" if extras else ""
        lines.append(f"{name}{extra}{','.join(specs)}")
    return "\n".join(lines) + "\n"


def cache_key(text: str, site_dirs: Sequence[tuple[str, str]] = ()) -> str:
    """The hash of the normalised requirements and of what they are resolved against: the
    interpreter, the platform, and the project's site directories and distributions."""
    ident = "\n".join(
        (
            _CACHE_VERSION,
            normalised(text),
            sys.implementation.cache_tag or "",
            platform.machine(),
            sys.platform,
            repr(sorted(site_dirs)),
            _installed_fingerprint(tuple(host for host, _ in site_dirs)),
        )
    )
    return hashlib.sha256(ident.encode()).hexdigest()[:24]


@functools.cache
def _installed_fingerprint(dirs: tuple[str, ...]) -> str:
    """The ``*.dist-info`` names (project and version) in ``dirs``: a cached environment that
    was resolved against other versions of the project's packages must not be reused."""
    names: list[str] = []
    for path in dirs:
        with contextlib.suppress(OSError):
            names += sorted(n for n in os.listdir(path) if n.endswith((".dist-info", ".egg-info")))
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def host_site_dirs() -> tuple[str, ...]:
    """The site directories of this interpreter (the project's venv): what the per-run
    environments are layered on."""
    return tuple(dict.fromkeys(os.path.realpath(p) for p in site.getsitepackages()))


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/llm_trainer/sandbox_deps`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llm_trainer" / "sandbox_deps"


def check_allowed(text: str, config: SandboxConfig) -> None:
    """Raise :class:`DisallowedDependencyError` if a named project is not in the allow-list."""
    allowed = config.allowed
    refused = [name for name, _, _ in parse_requirements(text) if name not in allowed]
    if refused:
        raise DisallowedDependencyError(
            f"requirements name {', '.join(refused)}, not in "
            f"SandboxConfig.allowed_requirements ({', '.join(sorted(allowed)) or 'empty'}); "
            "add them there if generated code may use them"
        )


def resolve(
    requirements: str, config: SandboxConfig, site_dirs: Sequence[tuple[str, str]] | None = None
) -> Path:
    """The virtual environment for ``requirements`` (its root), installed now or cached.

    Args:
        requirements: A requirements.txt text.
        config: The allow-list, the cache directory and pip's time limit.
        site_dirs: The project's site directories as ``(host path, path inside the
            sandbox)``; default: this interpreter's, at the same paths.

    Raises:
        DisallowedDependencyError: A project (named or pulled in) is outside the allow-list, or
            a line is not a plain requirement.
        DependencyError: pip failed (no matching wheel, no network, timeout).
    """
    check_allowed(requirements, config)
    if site_dirs is None:
        site_dirs = [(p, p) for p in host_site_dirs()]
    root = config.deps_cache or default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(requirements, site_dirs)
    entry = root / key
    if (entry / "complete.json").is_file():
        return entry / "venv"
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install per key, even across processes
        if (entry / "complete.json").is_file():
            return entry / "venv"
        staging = root / f".{key}.{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            text = normalised(requirements)
            installed = _install(text, staging, site_dirs, config)
            (staging / "complete.json").write_text(
                json.dumps({"requirements": text, "installed": installed}, indent=1)
            )
            shutil.rmtree(entry, ignore_errors=True)  # an incomplete leftover of a crash
            staging.rename(entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return entry / "venv"


def _install(
    text: str, staging: Path, site_dirs: Sequence[tuple[str, str]], config: SandboxConfig
) -> dict[str, str]:
    venv = staging / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "create a venv", config)
    purelib = Path(sysconfig.get_path("purelib", "venv", vars={"base": str(venv)}))
    # One line, executed by `site` at start-up (a .pth line that starts with "import"): each
    # project site directory is added after the environment's own, where it exists (the
    # inside path in the sandbox, the host path while pip resolves on the host).
    adds = [
        f"os.path.isdir({path!r}) and site.addsitedir({path!r})"
        for host, inside in site_dirs
        for path in dict.fromkeys((inside, host))
    ]
    (purelib / "_llm_trainer_project.pth").write_text(f"import os, site; {'; '.join(adds)}\n")
    (staging / "requirements.txt").write_text(text)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--only-binary=:all:",
            "--report",
            str(staging / "report.json"),
            "-r",
            str(staging / "requirements.txt"),
        ],
        f"install {text.split()}",
        config,
    )
    report = json.loads((staging / "report.json").read_text())
    installed = {
        canonical_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in report.get("install", [])
    }
    extra = sorted(set(installed) - config.allowed)
    if extra:
        raise DisallowedDependencyError(
            f"the requirements pull in {', '.join(extra)}, not in "
            "SandboxConfig.allowed_requirements; add them there, or choose requirements "
            "that do not need them"
        )
    return installed


def _run(command: list[str], what: str, config: SandboxConfig) -> None:
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=config.pip_timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DependencyError(
            f"could not {what} within {config.pip_timeout_s} s (SandboxConfig.pip_timeout_s)"
        ) from exc
    if proc.returncode != 0:
        raise DependencyError(
            f"could not {what} (pip accepts wheels only): {proc.stderr.strip()[-1500:]}"
        )
