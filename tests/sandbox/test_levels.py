"""A sandbox below its configured minimum level refuses to run, and says what to install."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_trainer.core.errors import ConfigError
from llm_trainer.sandbox import Sandbox, SandboxConfig, SandboxUnavailable, detect_isolation
from llm_trainer.sandbox.launch import bwrap_argv, bwrap_version
from tests.sandbox.conftest import needs_l3


def test_l4_is_refused_with_what_is_missing_on_this_machine() -> None:
    """No runner here drives gVisor: asking for L4 must fail before anything runs."""
    with pytest.raises(SandboxUnavailable) as info:
        Sandbox(SandboxConfig(min_level="L4"))
    message = str(info.value)
    assert "needs isolation level L4 (gVisor" in message
    assert f"this machine reaches {detect_isolation().level}" in message
    assert "L4: gVisor" in message or "L4: gVisor's runsc" in message
    assert "lower SandboxConfig.min_level" in message
    assert isinstance(info.value, RuntimeError)


def test_missing_bubblewrap_refuses_l3_and_names_the_package(tmp_path: Path) -> None:
    """A real missing layer (the bubblewrap executable is not there): the probe falls to L0
    and the default minimum (L3) is refused with the install command."""
    absent = str(tmp_path / "bwrap")
    report = detect_isolation(SandboxConfig(bwrap=absent))
    assert report.level == "L0"
    assert report.backend == "plain"
    assert "bwrap" in report.missing
    with pytest.raises(SandboxUnavailable) as info:
        Sandbox(SandboxConfig(bwrap=absent))
    message = str(info.value)
    assert "needs isolation level L3" in message
    assert "this machine reaches L0 (rlimits, cgroups and a wall-clock timeout only" in message
    assert "userns, netns, pidns" in message  # the unverified layers, listed once
    assert f"bwrap: bubblewrap ({absent!r}) was not found" in message
    assert "apt-get install -y bubblewrap python3-seccomp" in message
    assert "scripts/setup.sh" in message


def test_a_broken_bubblewrap_is_reported_with_its_error(tmp_path: Path) -> None:
    """An executable that exists but fails (as bwrap does without user namespaces) is a
    missing layer with the failure quoted, not an L3 claim."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    report = detect_isolation(SandboxConfig(bwrap=str(fake)))
    assert report.level == "L0"
    assert "No permissions to create new namespace" in report.missing["bwrap"]
    assert "user namespaces may be disabled" in report.missing["bwrap"]
    with pytest.raises(SandboxUnavailable, match="No permissions to create new namespace"):
        Sandbox(SandboxConfig(bwrap=str(fake)))


def test_required_layers_are_enforced_whatever_the_level(tmp_path: Path) -> None:
    """Even at an explicitly lowered minimum, a required layer that is missing refuses."""
    absent = str(tmp_path / "bwrap")
    with pytest.raises(SandboxUnavailable) as info:
        Sandbox(SandboxConfig(min_level="L0", bwrap=absent, required_layers=("netns", "rlimits")))
    message = str(info.value)
    assert message.startswith("The sandbox requires the layers netns (SandboxConfig.required")
    assert "though this machine reaches L0" in message
    assert "netns: not verified: bubblewrap did not run" in message
    with pytest.raises(ConfigError, match="'gvisor_kernel' is not a layer; use some of bwrap"):
        SandboxConfig(required_layers=("gvisor_kernel",))


@needs_l3
def test_required_layers_that_are_present_let_the_sandbox_run() -> None:
    sb = Sandbox(SandboxConfig(required_layers=("seccomp", "netns", "pidns")))
    assert sb.level == "L3"
    assert sb.run(argv=("-c", "print(1)")).stdout == "1\n"


@needs_l3
def test_the_level_reached_is_recorded_on_every_result(sandbox: Sandbox) -> None:
    res = sandbox.run(files={"main.py": "pass"})
    assert res.level == sandbox.level == "L3"
    assert res.layers == sandbox.report.present


def _argv(version: tuple[int, ...]) -> list[str]:
    return bwrap_argv(
        "bwrap",
        work_dir=Path("/tmp/w"),
        tmp_bytes=1 << 20,
        seccomp_fd=3,
        ro_binds=(),
        deps_dir=None,
        env={"HOME": "/work"},
        command=["python", "main.py"],
        version=version,
    )


def test_older_bubblewraps_get_only_the_flags_they_know() -> None:
    """Debian 11 ships bubblewrap 0.4: no --disable-userns (0.8) and no --size (0.5); the
    seccomp filter and the memory cgroup stand in for them."""
    assert "--disable-userns" in _argv((0, 8, 0))
    assert _argv((0, 8, 0)).count("--size") == 2
    old = _argv((0, 4, 1))
    assert "--disable-userns" not in old
    assert "--size" not in old
    assert old[-5:] == ["--seccomp", "3", "--", "python", "main.py"]


@needs_l3
def test_the_installed_bubblewrap_version_is_read() -> None:
    version = bwrap_version("bwrap")
    assert version is not None
    assert version >= (0, 8)
    assert detect_isolation().bwrap_version == version
