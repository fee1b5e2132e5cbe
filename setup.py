"""Build script: finds every subpackage, so that none is ever listed by hand.

The repository root *is* the package ``llm_trainer`` (DESIGN.md, "Layout"). pyproject.toml's
``[tool.setuptools.packages.find]`` cannot express that layout: run on the root it finds
``core`` and ``envs``, not ``llm_trainer.core`` and ``llm_trainer.envs``, and it has no option
to prefix the names. So this file finds the packages and prefixes them; everything else
(metadata, dependencies, ``package-dir``, package data) stays in pyproject.toml. A hand-written
list once left two subpackages out of the wheel; ``tests/test_packaging.py`` builds and installs
the wheel and fails, naming the module, when one is missing.

This file sits in the package's folder, so it is also ``llm_trainer.setup`` in an editable
install: importing it does nothing (setuptools' build backend runs it as ``__main__``), and
``script_name`` tells setuptools which file is the setup script, which it leaves out of the
wheel (the backend's ``sys.argv[0]`` is not this file, so setuptools cannot tell by itself).
"""

from __future__ import annotations

from pathlib import Path

import setuptools

ROOT = Path(__file__).resolve().parent
#: Folders of the checkout that are no part of the package (``examples/`` is code written
#: outside the package, as a user would). Folders whose names contain a dot (``.venv``,
#: ``.git``, ``llm_trainer.egg-info``) and folders without ``__init__.py`` (``build``,
#: ``configs``, ``scripts``) are never packages to setuptools; they are listed too, in case one
#: ever gets an ``__init__.py``.
EXCLUDED = ("tests", "scripts", "examples", "build", "dist", "docs", "runs", "results")


def find_packages(root: Path = ROOT) -> list[str]:
    """``llm_trainer`` and every package below ``root``, named ``llm_trainer.<path>``.

    >>> "llm_trainer.agents.backends" in find_packages()
    True
    >>> [p for p in find_packages() if p.startswith("llm_trainer.tests")]
    []
    """
    exclude = [pattern for name in EXCLUDED for pattern in (name, f"{name}.*")]
    found = setuptools.find_packages(str(root), exclude=exclude)
    return ["llm_trainer", *sorted(f"llm_trainer.{name}" for name in found)]


if __name__ == "__main__":
    setuptools.setup(
        packages=find_packages(), package_dir={"llm_trainer": "."}, script_name=__file__
    )
