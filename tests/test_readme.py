"""The README's Python example runs and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_prints_what_it_says() -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert block is not None
    code = block.group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    expected = [
        line.split("# ", 1)[1].split(":")[-1].strip()
        for line in code.splitlines()
        if line.startswith("print(") and "# " in line
    ]
    printed = out.getvalue().splitlines()
    assert len(printed) == len(expected)
    for got, want in zip(printed, expected, strict=True):
        assert got.strip() == want


def test_readme_shows_the_best_of_n_plugin_exactly_as_it_ships() -> None:
    example = (README.parent / "examples" / "best_of_n.py").read_text()
    assert f"```python\n{example}```" in README.read_text()
