"""Requirements of generated code: allow-listed, resolved outside, cached, mounted read-only.

The install tests fetch ``text-unidecode`` (a pure-Python wheel, 78 kB) and ``python-slugify``
(which needs it) from PyPI; they skip where PyPI cannot be reached. Neither may be in the
project's own venv (``six`` was, once Ray's extra pulled it in: the tests say so if that happens
again). ``text-unidecode`` goes to the default cache, so a second test session does not download
it again.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import numpy
import pytest

from llm_trainer.sandbox import DisallowedDependencyError, Sandbox, SandboxConfig
from llm_trainer.sandbox.deps import cache_key, default_cache_dir, normalised, resolve
from tests.sandbox.conftest import needs_l3


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


needs_pypi = pytest.mark.skipif(not _pypi_reachable(), reason="PyPI (pypi.org:443) unreachable")


def _not_in_the_project_venv(*names: str) -> None:
    """The install tests need packages the project's venv lacks (else pip installs nothing)."""
    import importlib.metadata

    for name in names:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        raise AssertionError(
            f"{name} {version} is installed in the project's venv: pick another package here"
        )


def test_a_project_outside_the_allow_list_is_refused_before_anything_runs(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    sb = Sandbox(SandboxConfig(min_level="L0", allowed_requirements=("six",), deps_cache=cache))
    with pytest.raises(DisallowedDependencyError) as info:
        sb.run(files={"main.py": "print(1)"}, requirements="six\nrequests>=2\n")
    message = str(info.value)
    assert "requirements name requests, not in SandboxConfig.allowed_requirements (six)" in message
    assert "add them there" in message
    assert not cache.exists()  # pip never ran


@pytest.mark.parametrize(
    "line",
    [
        "--index-url https://evil.example/simple",
        "-e git+https://example.com/x.git",
        "six @ https://example.com/six-1.0-py3-none-any.whl",
        "./six",
        "/tmp/six.whl",
        "six; python_version > '3'",
        "six==1.17.0 --hash=sha256:abc",
    ],
)
def test_requirement_lines_that_are_not_plain_requirements_are_refused(line: str) -> None:
    config = SandboxConfig(allowed_requirements=("six",))
    with pytest.raises(DisallowedDependencyError, match=r"line 2 .* is not 'name\[extras\]"):
        resolve(f"# comment\n{line}\n", config)


def test_equivalent_requirement_texts_share_one_cache_entry() -> None:
    a = "Six == 1.17.0  # the comment\n\nattrs[tests]>=23,<26\n"
    b = "attrs[TESTS] <26, >=23\nsix==1.17.0"
    assert normalised(a) == normalised(b) == "attrs[tests]<26,>=23\nsix==1.17.0\n"
    assert cache_key(a) == cache_key(b)
    assert cache_key(a) != cache_key("six==1.16.0\nattrs[tests]>=23,<26")


@needs_l3
@needs_pypi
def test_an_allowed_requirement_is_installed_outside_cached_and_read_only_inside() -> None:
    _not_in_the_project_venv("text-unidecode")
    sb = Sandbox(SandboxConfig(allowed_requirements=("text-unidecode",), wall_s=30))
    code = (
        "import importlib.metadata, sys, text_unidecode\n"
        "print(importlib.metadata.version('text-unidecode'), text_unidecode.__file__, sys.prefix)\n"
        "try:\n"
        "    open('/deps/pwned.py', 'w')\n"
        "except OSError as exc:\n"
        "    print(exc.strerror)\n"
    )
    res = sb.run(files={"main.py": code}, requirements="text-unidecode==1.3\n")
    assert res.ok, res.stderr
    site = f"/deps/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    assert res.stdout.splitlines() == [
        f"1.3 {site}/text_unidecode/__init__.py /deps",
        "Read-only file system",
    ]
    entry = sb.resolve_requirements("text-unidecode==1.3").parent
    assert entry.parent == default_cache_dir()
    record = json.loads((entry / "complete.json").read_text())
    assert record["installed"] == {"text-unidecode": "1.3"}
    stamp = (entry / "complete.json").stat().st_mtime_ns
    start = time.perf_counter()
    again = sb.run(files={"main.py": code}, requirements="Text_Unidecode == 1.3  # same set\n")
    assert again.stdout == res.stdout
    assert time.perf_counter() - start < 5.0  # no pip (the stamp below is the proof)
    assert (entry / "complete.json").stat().st_mtime_ns == stamp
    assert not (entry / "venv" / "pwned.py").exists()


@needs_l3
def test_a_requirement_the_project_already_satisfies_is_not_downloaded(tmp_path: Path) -> None:
    """numpy is in the project's venv: the run's environment layers on it (pip installs
    nothing), and the program imports the project's numpy."""
    sb = Sandbox(SandboxConfig(allowed_requirements=("numpy",), deps_cache=tmp_path))
    res = sb.run(
        files={"main.py": "import numpy\nprint(numpy.__version__)\n"}, requirements="numpy>=1\n"
    )
    assert res.ok, res.stderr
    assert res.stdout.strip() == numpy.__version__
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert json.loads((entry / "complete.json").read_text())["installed"] == {}


@needs_pypi
def test_a_dependency_pulled_in_from_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    """python-slugify needs text-unidecode: allowing only the former publishes nothing to the
    cache."""
    _not_in_the_project_venv("python-slugify", "text-unidecode")
    config = SandboxConfig(allowed_requirements=("python-slugify",), deps_cache=tmp_path)
    with pytest.raises(
        DisallowedDependencyError, match="the requirements pull in text-unidecode, not in"
    ):
        resolve("python-slugify==8.0.4\n", config)
    assert [p for p in tmp_path.iterdir() if (p / "complete.json").exists()] == []
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == []  # the staging dir is gone
