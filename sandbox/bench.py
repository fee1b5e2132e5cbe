"""Start-up cost and throughput of the sandbox against a plain subprocess, in the same run.

Each workload (a trivial program, the same without ``site``, ``import numpy``) runs as a
plain ``subprocess.run`` of the same interpreter, with the same environment, in a temporary
directory, and through ``Sandbox.run``; the two alternate in blocks so that both see the
same machine load, and the report gives the ratios. ``scripts/bench_sandbox.py`` is the
command line.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llm_trainer.sandbox import launch
from llm_trainer.sandbox.config import SandboxConfig
from llm_trainer.sandbox.isolation import detect_isolation
from llm_trainer.sandbox.runner import Sandbox

#: name -> (files, argv): what each workload runs.
WORKLOADS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "print(1)": ({"main.py": "print(1)\n"}, ("main.py",)),
    "print(1), python -S": ({}, ("-S", "-c", "print(1)")),
    "import numpy": ({"main.py": "import numpy\nprint(numpy.__version__)\n"}, ("main.py",)),
}


@dataclass(frozen=True)
class Row:
    """One workload's figures: plain subprocess vs sandbox."""

    workload: str
    plain_ms: float
    sandbox_ms: float
    plain_runs_per_s: float
    sandbox_runs_per_s: float

    @property
    def startup_ratio(self) -> float:
        """Sandbox start-up time over the plain subprocess's (median per run)."""
        return self.sandbox_ms / self.plain_ms

    @property
    def throughput_ratio(self) -> float:
        """Sandbox runs/s over the plain subprocess's."""
        return self.sandbox_runs_per_s / self.plain_runs_per_s


def _plain(work: Path, files: dict[str, str], argv: tuple[str, ...]) -> Callable[[], None]:
    for name, text in files.items():
        (work / name).write_text(text)

    # The sandbox's environment (one BLAS thread...), so that only the isolation differs.
    env = launch.program_env(executable=sys.executable)
    env.update(HOME=str(work), TMPDIR=str(work))

    def run() -> None:
        proc = subprocess.run(
            [sys.executable, *argv], cwd=work, env=env, capture_output=True, check=False, timeout=60
        )
        if proc.returncode != 0:
            raise RuntimeError(f"plain run of {argv} failed: {proc.stderr[-500:]!r}")

    return run


def _sandboxed(
    sandbox: Sandbox, files: dict[str, str], argv: tuple[str, ...]
) -> Callable[[], None]:
    def run() -> None:
        res = sandbox.run(files=files, argv=argv)
        if not res.ok:
            raise RuntimeError(f"sandboxed run of {argv} failed: {res.killed} {res.stderr[-500:]}")

    return run


def _block(fn: Callable[[], None], seconds: float) -> tuple[list[float], float]:
    """Run ``fn`` back to back for about ``seconds``: each run's ms, and runs per second."""
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and len(times) >= 3:
            return times, len(times) / elapsed


def _compare(
    name: str, plain: Callable[[], None], boxed: Callable[[], None], seconds: float, repeats: int
) -> Row:
    plain()  # warm the page cache for both
    boxed()
    plain_ms: list[float] = []
    boxed_ms: list[float] = []
    plain_rate: list[float] = []
    boxed_rate: list[float] = []
    for _ in range(repeats):
        times, rate = _block(plain, seconds)
        plain_ms += times
        plain_rate.append(rate)
        times, rate = _block(boxed, seconds)
        boxed_ms += times
        boxed_rate.append(rate)
    return Row(
        workload=name,
        plain_ms=statistics.median(plain_ms),
        sandbox_ms=statistics.median(boxed_ms),
        plain_runs_per_s=statistics.median(plain_rate),
        sandbox_runs_per_s=statistics.median(boxed_rate),
    )


def measure(
    seconds: float = 3.0,
    repeats: int = 3,
    config: SandboxConfig | None = None,
    workloads: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Each workload (default: all of :data:`WORKLOADS`), plain and sandboxed, alternating
    ``repeats`` blocks of ``seconds``.

    Returns:
        ``{"level", "layers", "probe_ms", "rows": [Row as dict + ratios]}``; per-run times are
        medians over all runs, runs/s the median over blocks.
    """
    sandbox = Sandbox(config or SandboxConfig())
    report = detect_isolation(sandbox.config)
    rows: list[Row] = []
    for name in workloads or tuple(WORKLOADS):
        files, argv = WORKLOADS[name]
        with tempfile.TemporaryDirectory(prefix="llm-trainer-bench-") as work:
            rows.append(
                _compare(
                    name,
                    _plain(Path(work), files, argv),
                    _sandboxed(sandbox, files, argv),
                    seconds,
                    repeats,
                )
            )
    return {
        "level": sandbox.level,
        "layers": list(report.present),
        "probe_ms": report.probe_ms,
        "seconds": seconds,
        "repeats": repeats,
        "rows": [
            {
                **asdict(row),
                "startup_ratio": row.startup_ratio,
                "throughput_ratio": row.throughput_ratio,
            }
            for row in rows
        ],
    }


def format_table(result: dict[str, Any]) -> str:
    """The result as a few aligned lines."""
    lines = [
        f"isolation {result['level']} ({', '.join(result['layers'])}); "
        f"probe {result['probe_ms']:.0f} ms once per process; "
        f"{result['repeats']} alternating blocks of {result['seconds']} s",
        f"{'workload':22} {'plain ms':>9} {'sandbox ms':>11} {'x':>6} "
        f"{'plain runs/s':>13} {'sandbox runs/s':>15} {'x':>6}",
    ]
    for row in result["rows"]:
        lines.append(
            f"{row['workload']:22} {row['plain_ms']:9.1f} {row['sandbox_ms']:11.1f} "
            f"{row['startup_ratio']:6.2f} {row['plain_runs_per_s']:13.1f} "
            f"{row['sandbox_runs_per_s']:15.1f} {row['throughput_ratio']:6.2f}"
        )
    return "\n".join(lines)
