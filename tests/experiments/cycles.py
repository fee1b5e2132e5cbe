"""The default cycle file, and overrides that shrink it to seconds per stage (shared by the
cycle's tests here and in tests/distributed)."""

from __future__ import annotations

from pathlib import Path

CYCLE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "cycle.yaml"


def small_cycle(model: Path, out: Path, **extra: str) -> list[str]:
    """Overrides that shrink the default cycle to seconds per stage, from ``model``."""
    items = {
        "output_dir": str(out),
        "model.path": str(model),
        "bootstrap": "null",
        "eval.episodes": "40",
        "stages.expert_iteration.expert_iteration.tasks_per_round": "16",
        "stages.expert_iteration.expert_iteration.samples_per_task": "2",
        "stages.expert_iteration.train.max_steps": "4",
        "stages.expert_iteration.train.batch_size": "8",
        "benchmark.seeds": "[0, 1, 2]",
        "benchmark.episodes_per_cell": "30",
        "benchmark.workers": "1",
        **extra,
    }
    return [f"{k}={v}" for k, v in items.items()]
