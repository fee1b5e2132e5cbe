"""scripts/nat_study.py runs end to end on its quick grid and reports every cell with an
interval, every comparison paired on the same held-out episodes, the transfer env apart, and the
failure modes before and after training (issue 15, item 5); the success rates themselves are
measured, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "nat_study.py"
PNG = b"\x89PNG\r\n\x1a\n"


def test_quick_grid_writes_every_cell_paired_comparisons_charts_and_failure_modes(
    tmp_path: Path,
) -> None:
    out = tmp_path / "nat"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--transfer-envs",
            "LLMTrainer/MultiTool-v0",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((out / "results.json").read_text())
    grid = result["grid"]
    seeds, episodes = grid["seeds"], result["settings"]["eval_episodes"]
    assert grid["methods"] == ["sft", "nat", "naive", "dpo"]
    assert grid["ratios"] == [0.0, 1.0]
    assert grid["positives"] == [20]
    # every method x ratio x data size: ratio 0 is the positive-only model every method shares
    expected = {
        f"{m}/r{r:g}/n{n}"
        for n in grid["positives"]
        for r in grid["ratios"]
        for m in (["sft"] if r == 0 else ["nat", "naive", "dpo"])
    }
    families = [result["held_out"], *result["transfer"].values()]
    assert list(result["transfer"]) == ["LLMTrainer/MultiTool-v0"]
    for family in families:
        assert set(family["cells"]) == expected == set(grid["cells"])
        for numbers in [family["start"], *(c["success"] for c in family["cells"].values())]:
            assert 0.0 <= numbers["ci_low"] <= numbers["mean"] <= numbers["ci_high"] <= 1.0
            assert len(numbers["per_seed"]) == seeds
        for cell in family["cells"].values():
            assert cell["episodes"] == seeds * episodes
            assert cell["examples"] >= cell["positives"]
            assert set(cell["sample_efficiency"]) == {
                "success_per_1k_examples",
                "success_per_1k_positives",
                "gain_per_1k_examples",
            }
            assert cell["train_seconds"]["mean"] > 0
            assert len(cell["train_seconds"]["per_seed"]) == seeds
        # five comparisons per (data size, ratio > 0), paired on the same held-out rows
        assert len(family["comparisons"]) == 5
        for comparison in family["comparisons"]:
            assert comparison["n_pairs"] == seeds * episodes
            assert 0.0 <= comparison["p_value"] <= comparison["p_holm"] <= 1.0
    # the same negatives for every method at a ratio and seed (so the comparisons are paired)
    for seed in range(seeds):
        runs = [result["training"][f"{m}/r1/n20"][seed] for m in ("nat", "naive", "dpo")]
        assert len({r["negatives_digest"] for r in runs}) == 1
        assert runs[0]["negatives"] > 0
    modes = result["failure_modes"]
    assert modes["before"]["episodes"] == seeds * episodes
    assert set(modes["after"]) == expected
    for report in modes["after"].values():
        assert report["episodes"] == seeds * episodes
        assert sum(m["count"] for m in report["modes"].values()) == report["episodes"]
    assert set(modes["transfer"]["LLMTrainer/MultiTool-v0"]["after"]) == expected
    rows = [json.loads(line) for line in (out / "per_episode.jsonl").read_text().splitlines()]
    models = 1 + len(expected)  # the starting model and every trained one
    assert len(rows) == models * seeds * episodes * 2  # two envs
    assert sum(not r["held_out"] for r in rows) == len(rows) // 2
    for name in ("success.png", "failure_modes.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert "nat/r1/n20 - sft/r0/n20" in done.stdout


def test_a_rerun_reuses_finished_cells_and_trains_only_what_is_new(tmp_path: Path) -> None:
    """A study resumes: the cells of a first run (1 seed) are recorded with their fingerprint;
    a second run with 2 seeds trains only seed 1 and reports seed 0's cells unchanged; a cell
    whose recorded settings differ is trained again."""
    out = tmp_path / "nat"

    def study(*extra: str) -> tuple[dict, str]:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--quick", "--out", str(out), *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        return json.loads((out / "results.json").read_text()), done.stderr

    first, log = study("--seeds", "1")
    assert "done before" not in log
    cells = sorted((out / "seed0" / "n20").glob("*.json"))
    assert [c.name for c in cells] == ["dpo_r1.json", "naive_r1.json", "nat_r1.json", "sft_r0.json"]
    second, log = study("--seeds", "2")
    assert log.count("done before") == 4  # seed 0's four cells
    assert sorted(p.name for p in (out / "seed1" / "n20").glob("*.json")) == [c.name for c in cells]
    for key, runs in first["training"].items():
        assert second["training"][key][0] == runs[0]  # the recorded run, not a new one
        per_seed = second["held_out"]["cells"][key]["success"]["per_seed"]
        assert per_seed[0] == first["held_out"]["cells"][key]["success"]["per_seed"][0]
    # another learning rate changes every cell's fingerprint: nothing is reused
    _, log = study("--seeds", "1", "--lr", "2e-3")
    assert "done before" not in log
    assert log.count("made with other settings") == 4
