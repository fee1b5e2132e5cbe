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
# The leaderboard's HTML is tested in real headless Chromium (tests marked `browser`). CI runs
# on a fresh machine, so install Debian's chromium and its driver when they are missing.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "[test] installing chromium and chromium-driver (apt-get)"
        SUDO=""
        if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "[test] WARNING: no chromium and no apt-get: the browser tests will be skipped"
    fi
fi
echo "[test] pytest"
python -m pytest "$@"
