"""A cycle's benchmark on a real local Ray cluster plays the same episodes, with the same
records, as the local worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_trainer.experiments.cycle import Cycle, Member, load_cycle
from tests.experiments.cycles import CYCLE_CONFIG as CONFIG
from tests.experiments.cycles import small_cycle as _small


@pytest.mark.slow
def test_a_cycle_benchmark_on_ray_equals_the_local_one(
    ray_cluster: str, weak_calculator_agent: Path, tmp_path: Path
) -> None:
    results = []
    for name, extra in (("local", {}), ("remote", {"benchmark.ray_address": ray_cluster})):
        overrides = _small(weak_calculator_agent, tmp_path / name, name=name, **extra)
        cycle = Cycle(load_cycle(CONFIG, overrides), log=lambda m: None)
        results.append(cycle._benchmark(0, 0, Member(str(weak_calculator_agent))))
    local, remote = results
    assert remote.provenance["ray_address"] == ray_cluster
    assert len(local.episodes) == len(remote.episodes) == 30

    def records(result: object) -> list[tuple[object, ...]]:
        return [
            (e.key, e.env_seed, dict(e.metrics), e.reward, e.turns, e.failure_mode)
            for e in result.episodes  # type: ignore[attr-defined]
        ]

    assert records(local) == records(remote)
    assert 0 < sum(e.metrics["success"] for e in local.episodes) < 30  # a real, weak agent
