"""The leaderboard: built from result files only; ties, intervals, markdown, HTML, PNG."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_trainer.benchmarks.leaderboard import (
    ForeignFileWarning,
    build_boards,
    load_results,
    write_leaderboard,
)
from llm_trainer.benchmarks.suites import SuiteSpec
from llm_trainer.cli import app
from llm_trainer.core.errors import ConfigError

runner = CliRunner()
CI = r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]"


def _copy_as(source: Path, target: Path, *, agent: str | None = None, **suite: object) -> Path:
    data = json.loads(source.read_text())
    if agent:
        data["agent"]["name"] = agent
    if suite:
        data["suite"].update(suite)
        data["suite_hash"] = SuiteSpec.from_definition(data["suite"]).hash
    target.write_text(json.dumps(data))
    return target


def test_board_ranks_by_success_and_statistical_ties_share_a_rank(
    smoke_results: dict[str, Path],
) -> None:
    (board,) = build_boards(load_results(smoke_results.values()))
    ranks = {e.name: e.rank for e in board.entries}
    assert ranks == {"oracle": "1", "half-oracle": "2", "random": "3=", "random-again": "3="}
    assert [e.name for e in board.entries][:2] == ["oracle", "half-oracle"]
    oracle, half = board.entries[0], board.entries[1]
    assert oracle.metrics["success"].low == oracle.metrics["success"].high == 1.0
    assert half.metrics["success"].low < half.metrics["success"].mean < half.metrics["success"].high
    assert not half.metrics["success"].overlaps(oracle.metrics["success"])
    first = board.neighbours[0]
    assert (first.better, first.worse) == ("oracle", "half-oracle")
    assert first.comparison.p_value < 0.001
    tie = board.neighbours[-1]
    assert tie.comparison.p_value == 1.0
    assert tie.comparison.difference.mean == 0.0
    assert board.noise_floor["success"].n_seeds == 3


def test_markdown_html_and_png_show_every_entry_with_intervals(
    tmp_path: Path, smoke_results: dict[str, Path]
) -> None:
    files = write_leaderboard(smoke_results.values(), tmp_path / "board")
    markdown = files.markdown.read_text()
    for name in smoke_results:
        assert re.search(rf"^\| \d=? \| {name} \| {CI} \|", markdown, re.MULTILINE), name
    assert "| 3= | random |" in markdown
    assert "Noise floor of success" in markdown
    assert "### success by env and difficulty" in markdown
    page = files.html.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"(src|href)=\"https?:", page), "the page must not need the network"
    assert page.count('class="name agent"') == 4
    assert re.search(r"1\.000 <span class=ci>\[1\.000, 1\.000\]</span>", page)
    png = files.png.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 1000
    assert height >= 200
    assert "data:image/png;base64," in page  # the chart travels inside the page


def test_leaderboard_cli_builds_from_the_files_it_is_given(
    tmp_path: Path, smoke_results: dict[str, Path]
) -> None:
    result = runner.invoke(
        app,
        ["leaderboard", *map(str, smoke_results.values()), "--out-dir", str(tmp_path), "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    (board,) = summary["boards"]
    assert next(e["agent"] for e in board["entries"]) == "oracle"
    assert board["entries"][0]["success"] == {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    assert Path(summary["files"]["html"]).exists()
    assert Path(summary["files"]["png"]).exists()
    missing = runner.invoke(app, ["leaderboard", str(tmp_path / "none.json")])
    assert missing.exit_code == 2
    assert "no such result file" in missing.output


def test_duplicates_and_changed_suites_are_refused_and_unknown_suites_still_build(
    tmp_path: Path, smoke_results: dict[str, Path]
) -> None:
    oracle = smoke_results["oracle"]
    with pytest.raises(ConfigError, match="both results of agent 'oracle'"):
        build_boards(load_results([oracle, _copy_as(oracle, tmp_path / "dup.json")]))
    changed = _copy_as(oracle, tmp_path / "changed.json", agent="o2", description="edited")
    with pytest.raises(ConfigError, match=r"different definitions of suite.*new version"):
        build_boards(load_results([oracle, changed]))
    # A suite that registry.yaml does not have (any more): the files carry their definition.
    retired = _copy_as(oracle, tmp_path / "retired.json", id="retired-v3")
    boards = build_boards(load_results([oracle, retired]))
    assert [b.suite.id for b in boards] == ["tooluse-smoke-v0", "retired-v3"]
    with pytest.raises(ConfigError, match="no result files"):
        build_boards([])


def test_a_foreign_json_file_is_skipped_with_a_warning_and_the_board_still_builds(
    tmp_path: Path, smoke_results: dict[str, Path]
) -> None:
    files = [smoke_results["oracle"], smoke_results["random"]]
    info = tmp_path / "ppo_multitool.json"  # e.g. a model's metadata beside the results
    info.write_text(json.dumps({"tools": ["calculator"], "n_hash": 64}))
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2, 3]")
    garbage = tmp_path / "torn.json"
    garbage.write_text('{"schema": "llm-trainer/bench-res')
    with pytest.warns(ForeignFileWarning) as caught:
        written = write_leaderboard([*files, info, listing, garbage], tmp_path / "board")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3
    for path, message in zip([info, listing, garbage], messages, strict=True):
        assert str(path) in message
        assert "move it out of the results folder" in message
    assert [e.name for e in written.boards[0].entries] == ["oracle", "random"]
    # A broken result of ours is still an error, and so is a board of foreign files only.
    future = tmp_path / "future.json"
    future.write_text(json.dumps({**json.loads(files[0].read_text()), "schema_version": 99}))
    with pytest.raises(ConfigError, match="schema version 99"):
        load_results([*files, future])
    with pytest.warns(ForeignFileWarning), pytest.raises(ConfigError, match="no result files"):
        write_leaderboard([info], tmp_path / "board")


def test_the_leaderboard_cli_prints_which_foreign_file_it_skipped_in_results(
    tmp_path: Path, smoke_results: dict[str, Path]
) -> None:
    """The default glob, ``results/**/*.json``, in a real CLI process."""
    suite_dir = tmp_path / "results" / "tooluse-smoke-v0"
    suite_dir.mkdir(parents=True)
    for name in ("oracle", "random"):
        shutil.copy(smoke_results[name], suite_dir / f"{name}.json")
    (tmp_path / "results" / "training_info.json").write_text('{"steps": 100}')
    proc = subprocess.run(
        [sys.executable, "-m", "llm_trainer.cli", "leaderboard", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped results/training_info.json: not an llm-trainer benchmark result" in (
        proc.stderr
    )
    board = json.loads(proc.stdout.strip().splitlines()[-1])["boards"][0]
    assert [e["agent"] for e in board["entries"]] == ["oracle", "random"]
