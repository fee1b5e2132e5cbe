"""Work the Ray tests run in Ray workers, imported there by name
(``llm_trainer.tests.distributed.helpers``) as a user's code would be."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import gymnasium as gym

from llm_trainer.agents import RandomAgent

KILL_DIR_VARIABLE = "LLM_TRAINER_TEST_KILL_DIR"


def _kill_dir() -> Path:
    return Path(os.environ[KILL_DIR_VARIABLE])


def die_once(marker: Path) -> None:
    """SIGKILL this process the first time ``marker`` is seen (creating it first, atomically:
    of two racing workers only one dies)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def square_killing_once(run: str, n: int) -> tuple[int, int]:
    """``(n, n * n)``; the first attempt at every multiple of 7 kills its worker. Each call that
    returns is logged (one line, one ``write`` on an ``O_APPEND`` file)."""
    directory = _kill_dir() / run
    directory.mkdir(exist_ok=True)
    if n % 7 == 0:
        die_once(directory / f"kill-{n}")
    fd = os.open(directory / "calls.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{n}\n".encode())
    finally:
        os.close(fd)
    return n, n * n


def fail_on_three(n: int) -> int:
    if n == 3:
        raise KeyError("three")
    return n


class KillingRandom(RandomAgent):
    """The random agent; the first two episodes it is asked to play with a policy seed
    divisible by 5 kill their worker (each once: a marker per kill, two at most in all)."""

    def reset(self, *, seed: int | None = None) -> None:
        super().reset(seed=seed)
        if seed is not None and seed % 5 == 0:
            directory = _kill_dir() / "bench"
            directory.mkdir(exist_ok=True)
            kills = sorted(directory.glob("kill-*"))
            if len(kills) < 2 and not (directory / f"kill-{seed}").exists():
                die_once(directory / f"kill-{seed}")


def killing_random(env: gym.Env[Any, Any]) -> KillingRandom:
    return KillingRandom()
