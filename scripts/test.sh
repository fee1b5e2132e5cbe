#!/usr/bin/env bash
# Set up a fresh machine (the .venv, torch CPU, the project) and run every check:
# ruff (lint + format), mypy (strict), and the test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"

echo "[test] ruff"
ruff check .
ruff format --check .
echo "[test] mypy"
MYPYPATH="$ROOT/.venv/typecheck" mypy -p llm_trainer
echo "[test] pytest"
python -m pytest "$@"
