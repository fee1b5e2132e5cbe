"""Wall time of the benchmark pipeline, for ``scripts/bench_leaderboard.py``.

Measures (targets from issue 6, on a 2-core machine):

* the whole ``tooluse-v0`` suite with the oracle, as ``llm-trainer bench`` runs it (two worker
  processes started, every episode played, the result file written): target <= 10 s;
* building the leaderboard (markdown, HTML and PNG) from the stored result files of the board's
  entries: target <= 1 s, measured in-process once matplotlib is imported, and also as a cold
  ``llm-trainer leaderboard`` process (interpreter start and imports included) for reference.

It also puts the three baselines on the board: the oracle, the random agent and the
stable-baselines3 PPO tool-choice agent (trained here, seeded), and reports their success.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llm_trainer.algorithms.sb3_baseline import SB3BaselineConfig, train_ppo_baseline
from llm_trainer.benchmarks.leaderboard import write_leaderboard
from llm_trainer.benchmarks.runner import BenchConfig, default_workers, run_bench

SUITE = "tooluse-v0"
SUITE_TARGET_S = 10.0
LEADERBOARD_TARGET_S = 1.0


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def time_suite(out_dir: Path, agent: str = "oracle", repeats: int = 3) -> dict[str, Any]:
    """Median (and every) wall time of a fresh run of the whole suite."""
    times = []
    for i in range(repeats):
        config = BenchConfig(SUITE, agent, out=out_dir / f"suite-run-{i}.json", fresh=True)
        start = time.perf_counter()
        run = run_bench(config)
        times.append(time.perf_counter() - start)
        assert run.episodes_played == len(run.result.episodes)
    return {
        "agent": agent,
        "workers": default_workers(),
        "episodes": len(run.result.episodes),
        "median_s": statistics.median(times),
        "runs_s": [round(t, 3) for t in times],
    }


def time_leaderboard(files: list[Path], out_dir: Path, repeats: int = 5) -> dict[str, Any]:
    """Median in-process build time (after a warm-up), and one cold CLI process."""
    write_leaderboard(files, out_dir)  # warm-up: imports matplotlib
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        written = write_leaderboard(files, out_dir)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "llm_trainer.cli", "leaderboard", *map(str, files),
         "--out-dir", str(out_dir)],
        check=True, capture_output=True,
    )  # fmt: skip
    cold = time.perf_counter() - start
    return {
        "entries": [e.name for e in written.boards[0].entries],
        "median_s": statistics.median(times),
        "runs_s": [round(t, 3) for t in times],
        "cold_cli_process_s": round(cold, 3),
        "files": [str(written.markdown), str(written.html), str(written.png)],
    }


def run_all(out_dir: Path, repeats: int = 3) -> dict[str, Any]:
    """Every measurement of ``scripts/bench_leaderboard.py``, as one JSON-ready dict.

    The timed suite runs go to a temporary folder; the model (``out_dir/models/``), the
    baselines' result files (``out_dir/<suite>/``) and the board (``out_dir/leaderboard/``) go
    to ``out_dir`` (fresh each time). Only result files end in ``.json`` there, so
    ``llm-trainer leaderboard`` can read ``out_dir`` like ``results/``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        suite = time_suite(Path(tmp), repeats=repeats)
    start = time.perf_counter()
    model = train_ppo_baseline(SB3BaselineConfig(), out_dir / "models" / "ppo_multitool.zip")
    train_s = time.perf_counter() - start
    files, success = [], {}
    for spec in ("oracle", "random", f"sb3:{model}"):
        name = spec.split(":")[0]
        config = BenchConfig(SUITE, spec, out=out_dir / SUITE / f"{name}.json", fresh=True)
        run = run_bench(config)
        files.append(run.path)
        success[run.result.agent] = run.result.summary["metrics"]["success"]
    board = time_leaderboard(files, out_dir / "leaderboard")
    return {
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": _load(),
        "suite": {**suite, "target_s": SUITE_TARGET_S, "ok": suite["median_s"] <= SUITE_TARGET_S},
        "leaderboard": {
            **board,
            "target_s": LEADERBOARD_TARGET_S,
            "ok": board["median_s"] <= LEADERBOARD_TARGET_S,
        },
        "sb3_train_s": round(train_s, 2),
        "success": success,
    }
