"""Run directories: a resumed run is the run of that exact name, made with the same config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import RunDir, find_runs, first_difference

CONFIG: dict[str, Any] = {
    "name": "quickstart",
    "seed": 0,
    "train": {"learning_rate": 0.001, "max_steps": 200, "betas": [0.9, 0.999]},
    "resume": False,
}


def _create(root: Path, name: str, stamp: str, config: dict[str, Any] | None = None) -> Path:
    """A run of ``name`` made by :meth:`RunDir.create`, its folder renamed to ``stamp`` (so
    tests choose which run is the latest)."""
    run = RunDir.create(root, name, config or CONFIG, 0)
    prefix = run.path.name[: len("2026-01-01_00-00-00")]
    return run.path.rename(run.path.with_name(run.path.name.replace(prefix, stamp, 1)))


def test_resume_finds_the_run_by_its_exact_name_not_by_a_name_that_ends_the_same(
    tmp_path: Path,
) -> None:
    mine = _create(tmp_path, "quickstart", "2026-01-01_10-00-00")
    # Newer, and its folder name ends with "_quickstart" too: the old glob resumed this one.
    other = _create(tmp_path, "my_quickstart", "2026-01-02_10-00-00", {**CONFIG, "seed": 5})
    resumed = RunDir.create(tmp_path, "quickstart", {**CONFIG, "resume": True}, 0, resume=True)
    assert resumed.path == mine
    assert find_runs(tmp_path, "my_quickstart") == [other]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name])


def test_resume_picks_the_latest_run_of_the_name_numbered_folders_included(
    tmp_path: Path,
) -> None:
    stamp = "2026-03-04_05-06-07"
    runs = [_create(tmp_path, "sft", stamp)]
    for _ in range(10):  # same second: sft, sft-2 ... sft-11
        runs.append(RunDir.create(tmp_path, "sft", CONFIG, 0).path)
        runs[-1] = runs[-1].rename(tmp_path / f"{stamp}_sft-{len(runs)}")
    _create(tmp_path, "sft", "2026-03-04_05-06-06")  # a second earlier
    assert [p.name for p in find_runs(tmp_path, "sft")][-3:] == [
        f"{stamp}_sft-9",
        f"{stamp}_sft-10",
        f"{stamp}_sft-11",
    ]
    assert RunDir.create(tmp_path, "sft", CONFIG, 0, resume=True).path == runs[-1]


def test_two_names_with_the_same_folder_slug_stay_apart(tmp_path: Path) -> None:
    spaced = _create(tmp_path, "my run", "2026-01-01_10-00-00")
    underscored = _create(tmp_path, "my_run", "2026-01-01_09-00-00")
    assert spaced.name.endswith("_my_run")
    assert underscored.name.endswith("_my_run")
    assert RunDir.create(tmp_path, "my_run", CONFIG, 0, resume=True).path == underscored
    assert RunDir.create(tmp_path, "my run", CONFIG, 0, resume=True).path == spaced


def test_a_folder_without_a_readable_run_json_is_never_resumed(tmp_path: Path) -> None:
    stray = tmp_path / "2026-01-01_10-00-00_quickstart"
    stray.mkdir()
    (stray / "run.json").write_text("{not json")
    run = RunDir.create(tmp_path, "quickstart", CONFIG, 0, resume=True)
    assert run.path != stray
    assert json.loads((run.path / "run.json").read_text())["name"] == "quickstart"


def test_resume_without_a_previous_run_starts_a_new_one(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "runs", "quickstart", CONFIG, 0, resume=True)
    assert yaml.safe_load((run.path / "config.yaml").read_text()) == CONFIG
    assert RunDir.create(tmp_path / "runs", "quickstart", CONFIG, 0, resume=True).path == run.path


def test_resume_refuses_a_changed_config_naming_the_run_and_the_first_differing_field(
    tmp_path: Path,
) -> None:
    run = _create(tmp_path, "quickstart", "2026-01-01_10-00-00")
    changed = {**CONFIG, "train": {**CONFIG["train"], "learning_rate": 0.01}, "resume": True}
    with pytest.raises(ConfigError) as error:
        RunDir.create(tmp_path, "quickstart", changed, 0, resume=True)
    message = str(error.value)
    assert "\n" not in message
    assert str(run) in message
    assert "train.learning_rate (stored 0.001, now 0.01)" in message
    assert "resume: false" in message
    # The refusal wrote nothing: the stored run is as it was, and no new run was started.
    assert yaml.safe_load((run / "config.yaml").read_text()) == CONFIG
    assert [p.name for p in tmp_path.iterdir()] == [run.name]

    added = {**CONFIG, "eval": {"episodes": 10}}
    with pytest.raises(ConfigError, match=r"differs at eval \(stored <absent>, now \{'episodes"):
        RunDir.create(tmp_path, "quickstart", added, 0, resume=True)
    shorter = {**CONFIG, "train": {**CONFIG["train"], "betas": [0.9]}}
    with pytest.raises(ConfigError, match=r"train\.betas\[1\] \(stored 0\.999, now <absent>\)"):
        RunDir.create(tmp_path, "quickstart", shorter, 0, resume=True)


def test_resume_accepts_the_same_config_with_only_the_resume_field_changed(
    tmp_path: Path,
) -> None:
    run = _create(tmp_path, "quickstart", "2026-01-01_10-00-00")
    # Tuples are stored as YAML lists: the same config either way.
    same = {**CONFIG, "train": {**CONFIG["train"], "betas": (0.9, 0.999)}, "resume": True}
    assert RunDir.create(tmp_path, "quickstart", same, 0, resume=True).path == run


def test_first_difference_tells_types_apart_and_finds_nothing_in_equal_configs() -> None:
    assert first_difference(CONFIG, json.loads(json.dumps(CONFIG))) is None
    assert first_difference({"steps": 1}, {"steps": 1.0}) == ("steps", 1, 1.0)
    assert first_difference({"flag": True}, {"flag": 1}) == ("flag", True, 1)
    assert first_difference([], {}) == ("the whole config", [], {})
