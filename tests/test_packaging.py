"""The wheel is complete: built from the checkout, installed into a fresh venv, it runs.

``pip install .`` once produced a wheel without ``llm_trainer.agents.backends`` and
``llm_trainer.algorithms.ppo`` (a hand-written package list), which only failed when a user ran
``evaluate --agent transformers:...``. These tests build the wheel the way pip does, install it
(``--no-deps``) into a new virtual environment and use it from there:

* The checkout is copied first (without ``.venv``, ``.git``, ``build``... as ``.gitignore``
  lists them), so the build neither writes into the checkout nor picks up a stale ``build/``.
* The new venv sees the already-installed dependencies through one ``.pth`` file that names
  this interpreter's site-packages: a path line in a ``.pth`` file only adds the folder to
  ``sys.path``; the ``.pth`` files inside that folder (the editable install's import hook of
  the checkout) are not processed. ``test_the_dependency_path_does_not_load_the_editable_install``
  checks that, because the hook would otherwise serve a module missing from the wheel from the
  checkout and hide the bug.

Run with ``-s`` to see the wheel's file count and the commands' output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: What the copy of the checkout leaves out (.gitignore's entries: never part of a build).
IGNORED = (
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "runs",
    "results",
)
#: Folders of the checkout that are no part of the package (examples/: code written outside
#: the package, as a user would; see setup.py's EXCLUDED).
NOT_PACKAGE = ("tests", "scripts", "examples", ".venv", "build")
#: Files of the checkout's root that are no part of the package.
NOT_PACKAGE_FILES = ("setup.py", "README.md", "pyproject.toml")
#: Data files the code reads from its own folder (``Path(__file__).parent / NAME``), by name:
#: they must ship wherever they move (the probe finds them through the modules' constants).
READ_BY_THE_CODE = ("registry.yaml", "suites.lock.json", "toolbench_example.json")
TIMEOUT_S = 300

# Runs in the new venv: imports every module of the installed package and reads its data
# files the way the code does; prints one JSON object.
PROBE = r"""
import importlib, json, pkgutil, sys, traceback
from pathlib import Path
import yaml
import llm_trainer

failures = {}

def failed(name):
    failures[name] = traceback.format_exc(limit=-2).strip()

walked = sorted(
    m.name for m in pkgutil.walk_packages(llm_trainer.__path__, "llm_trainer.", onerror=failed)
)
for name in walked:
    try:
        importlib.import_module(name)
    except Exception:
        failed(name)
# Every path constant of a module that points into the package (REGISTRY_PATH, LOCK_PATH,
# EXAMPLE_PATH...) names a data file that the code reads: it must exist in the installed copy.
package = Path(llm_trainer.__file__).parent
data, absent, configs = {}, [], []
for name in walked:
    module = sys.modules.get(name)
    for attr, value in vars(module).items() if module else ():
        if attr.isupper() and isinstance(value, Path) and value.is_relative_to(package):
            if value.exists():
                data[value.name] = str(value)
            else:
                absent.append(f"{name}.{attr} = {value}")
try:
    from llm_trainer.benchmarks.suites import locked_hashes, suites
    assert set(locked_hashes()) == set(suites()), "suites.lock.json does not list every suite"
except Exception:
    failed("benchmarks/suites.lock.json")
try:
    for path in sorted((package / "configs").iterdir()):
        assert isinstance(yaml.safe_load(path.read_text()), dict), f"{path}: not a config"
        configs.append(path.name)
except Exception:
    failed("configs/*.yaml")
print(json.dumps({
    "file": llm_trainer.__file__,
    "walked": walked,
    "failures": failures,
    "data": data,
    "absent": absent,
    "configs": configs,
    "sys_path": sys.path,
    "editable_hooks": sorted(m for m in sys.modules if m.startswith("__editable__")),
    "meta_path": [getattr(f, "__name__", type(f).__name__) for f in sys.meta_path],
}))
"""


@dataclass(frozen=True)
class Installed:
    """The built wheel and the venv it is installed in."""

    source: Path
    """The copy of the checkout the wheel was built from."""
    wheel: Path
    names: list[str]
    """The wheel's entries."""
    venv: Path
    site_packages: Path
    """The new venv's site-packages."""
    dependency_paths: list[str]
    """This interpreter's site-packages (named by the ``.pth`` file of the new venv)."""

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(self, *args: str | Path, cwd: Path, label: str | None = None) -> str:
        """Run a command of the new venv; its stdout, which is also printed (unless ``label``
        names the command, when only that is printed)."""
        start = time.perf_counter()
        proc = subprocess.run(
            [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S
        )
        command = label or " ".join([Path(args[0]).name, *map(str, args[1:])])
        print(f"$ {command}  ({time.perf_counter() - start:.2f} s, exit {proc.returncode})")
        if label is None:
            print(proc.stdout[-4000:])
        assert proc.returncode == 0, f"{command} failed:\n{proc.stdout[-2000:]}{proc.stderr}"
        return proc.stdout


def _run(*args: str | Path, cwd: Path | None = None) -> None:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout}{proc.stderr}"


def _module_name(relative: Path) -> str:
    """``agents/backends/__init__.py`` -> ``llm_trainer.agents.backends``."""
    parts = relative.with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("llm_trainer", *parts))


def _checkout_modules(source: Path) -> dict[str, Path]:
    """Every ``.py`` file of the checkout that belongs to the package, by module name (all but
    the files and folders of :data:`NOT_PACKAGE` and :data:`NOT_PACKAGE_FILES`)."""
    modules = {}
    for path in source.rglob("*.py"):
        relative = path.relative_to(source)
        if relative.parts[0] in NOT_PACKAGE or str(relative) in NOT_PACKAGE_FILES:
            continue
        modules[_module_name(relative)] = relative
    return modules


def _package_data(source: Path) -> set[str]:
    """The YAML/JSON files inside a package folder of the checkout (pyproject's package-data
    globs), as wheel entries."""
    found = set()
    for pattern in ("*.yaml", "*.yml", "*.json", "*.jsonl"):
        for path in source.rglob(pattern):
            relative = path.relative_to(source)
            if relative.parts[0] in NOT_PACKAGE:
                continue
            folders = [path.parent, *path.parent.parents]
            if all((f / "__init__.py").is_file() for f in folders[: folders.index(source) + 1]):
                found.add(f"llm_trainer/{relative.as_posix()}")
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    # Decoys: folders that are never part of the package, even with an __init__.py and data.
    for decoy in (".venv/lib/decoy", "build", "scripts"):
        (source / decoy).mkdir(parents=True, exist_ok=True)
        (source / decoy / "__init__.py").write_text("raise ImportError('not in the wheel')\n")
        (source / decoy / "decoy.json").write_text("{}\n")

    start = time.perf_counter()
    dist = tmp / "dist"
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
        "-w", dist, source,
    )  # fmt: skip
    (wheel,) = dist.glob("llm_trainer-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    print(f"\nbuilt {wheel.name} in {time.perf_counter() - start:.1f} s: {len(names)} files")

    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    # pip of this interpreter installs into the new venv (which has no pip of its own), before
    # the .pth below exists: pip then sees no other llm-trainer to replace.
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel)
    site_packages = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    dependency_paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (site_packages / "_llm_trainer_test_dependencies.pth").write_text(
        "".join(f"{p}\n" for p in dependency_paths)
    )
    print(f"installed into {venv} in {time.perf_counter() - start:.1f} s (build included)")
    return Installed(source, wheel, names, venv, site_packages, dependency_paths)


def test_the_wheel_ships_every_data_file_and_nothing_outside_the_package(
    installed: Installed,
) -> None:
    names = set(installed.names)
    configs = {f"llm_trainer/configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")}
    assert configs, "no configs/*.yaml in the checkout"
    expected = {"llm_trainer/registry.yaml", "llm_trainer/py.typed"} | configs
    expected |= _package_data(installed.source)
    for name in READ_BY_THE_CODE:
        assert any(n.endswith(f"/{name}") for n in names), f"{name} is missing from the wheel"
    assert not expected - names, f"missing from the wheel: {sorted(expected - names)}"
    foreign = sorted(
        n
        for n in names
        if not n.startswith("llm_trainer-")
        and (
            n.split("/")[1] in NOT_PACKAGE
            or n.removeprefix("llm_trainer/") in NOT_PACKAGE_FILES
            or "decoy" in n
        )
    )
    assert not foreign, f"the wheel ships files that are no part of the package: {foreign}"
    assert all(n.startswith(("llm_trainer/", "llm_trainer-")) for n in names), names
    entry_points = zipfile.ZipFile(installed.wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    )
    assert b"llm-trainer = llm_trainer.cli:app" in entry_points
    data = sorted(n for n in expected if not n.endswith(".yaml") or "/configs/" not in n)
    print(f"{installed.wheel.name}: {len(names)} files; {len(configs)} configs; data {data}")


@pytest.fixture(scope="module")
def probe(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What :data:`PROBE` found, run with the new venv's python outside the checkout."""
    cwd = tmp_path_factory.mktemp("probe")
    out = installed.run(installed.python, "-c", PROBE, cwd=cwd, label="python -c PROBE")
    found: dict[str, Any] = json.loads(out)
    return found


def test_every_checkout_module_is_installed_and_imports_from_the_venv(
    installed: Installed, probe: dict[str, Any]
) -> None:
    package = installed.site_packages / "llm_trainer"
    installed_modules = {_module_name(p.relative_to(package)) for p in package.rglob("*.py")}
    checkout = _checkout_modules(installed.source)
    missing = sorted(set(checkout) - installed_modules)
    assert not missing, (
        "modules of the checkout missing from the installed wheel: "
        + ", ".join(f"{m} ({checkout[m]})" for m in missing)
        + " (does its folder lack an __init__.py? setup.py finds packages by it; a folder that is"
        " no part of the package, like scripts/, belongs in NOT_PACKAGE here and EXCLUDED in"
        " setup.py)"
    )
    assert installed_modules == set(checkout), sorted(installed_modules ^ set(checkout))

    assert Path(probe["file"]).is_relative_to(installed.site_packages), probe["file"]
    assert not Path(probe["file"]).is_relative_to(ROOT)
    assert not probe["failures"], "\n\n".join(
        f"{name}:\n{error}" for name, error in probe["failures"].items()
    )
    assert set(probe["walked"]) == installed_modules - {"llm_trainer"}
    assert not probe["absent"], f"data files the code reads are not installed: {probe['absent']}"
    for name in READ_BY_THE_CODE:
        assert name in probe["data"], f"no module constant names {name}: {probe['data']}"
        assert Path(probe["data"][name]).is_relative_to(installed.site_packages), probe["data"]
    assert probe["configs"] == sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
    print(f"imported {len(probe['walked'])} modules; llm_trainer.__file__ = {probe['file']}")
    print(f"data files read by the code, installed: {sorted(probe['data'])}")


def test_the_dependency_path_does_not_load_the_editable_install(
    installed: Installed, probe: dict[str, Any]
) -> None:
    for path in installed.dependency_paths:
        assert path in probe["sys_path"], f"{path} is not on the new venv's sys.path"
    assert probe["sys_path"].index(str(installed.site_packages)) < min(
        probe["sys_path"].index(p) for p in installed.dependency_paths
    )
    # setuptools' editable install of the checkout is a finder module imported by a .pth file.
    assert not probe["editable_hooks"], probe["editable_hooks"]
    assert all("Editable" not in name for name in probe["meta_path"]), probe["meta_path"]


def test_the_installed_cli_lists_envs_and_evaluates_the_oracle(
    installed: Installed, tmp_path: Path
) -> None:
    cli = installed.venv / "bin" / "llm-trainer"
    listing = installed.run(cli, "envs", "--json", cwd=tmp_path)
    registry = yaml.safe_load((ROOT / "registry.yaml").read_text())
    envs = json.loads(listing.strip().splitlines()[-1])["envs"]
    assert set(envs) == {e["id"] for e in registry["envs"]}
    out = installed.run(
        cli, "evaluate", "--agent", "oracle", "--env", "LLMTrainer/Calculator-v0",
        "--episodes", "3", "--json", cwd=tmp_path,
    )  # fmt: skip
    summary = json.loads(out.strip().splitlines()[-1])
    (result,) = summary["results"]
    assert result["episodes"] == 3
    assert result["success"] == 1.0
