#!/usr/bin/env bash
# Set up a fresh machine and run the main job (`llm-trainer quickstart`); arguments are passed
# on, so `scripts/run.sh --json` ends with a one-line JSON summary.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec llm-trainer quickstart "$@"
