"""Every docstring example in the package runs and gives what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import llm_trainer

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(llm_trainer.__path__, "llm_trainer.")
    if not m.name.startswith("llm_trainer.tests")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
