"""pass^k over suites that repeat their tasks (``trials``), task-level resampling, and the
minimum detectable effect beside the noise floor on the leaderboard."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llm_trainer.benchmarks.compare import compare_results
from llm_trainer.benchmarks.leaderboard import (
    build_boards,
    load_results,
    render_markdown,
    write_leaderboard,
)
from llm_trainer.benchmarks.results import (
    EpisodeRecord,
    cell_strata,
    load_result,
    metric_matrix,
    pass_hat_k_intervals,
    task_clusters,
)
from llm_trainer.benchmarks.runner import BenchConfig, run_bench
from llm_trainer.benchmarks.stats import (
    Resampler,
    StratifiedBootstrap,
    bootstrap_ci,
    minimum_detectable_effect,
    pass_hat_k,
    pass_hat_k_per_task,
    stratified_variance,
)
from llm_trainer.benchmarks.suites import (
    MIN_TRIALS,
    EpisodeKey,
    SuiteSpec,
    episode_env_seed,
    episode_policy_seed,
    locked_hashes,
    parse_suites,
    suite_spec,
)
from llm_trainer.cli import app
from llm_trainer.core.errors import RegistryError

TRIALS = "tooluse-trials-v0"
POLICIES = "python:llm_trainer.tests.benchmarks.policies"
CI = r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]"
ENVS = """
version: 1
envs:
  - id: LLMTrainer/Calculator-v0
    entry_point: llm_trainer.envs.tooluse.calculator:CalculatorEnv
    description: calc
    capabilities: {difficulties: [1, 2]}
suites:
  - id: calc-v0
    description: calculator only
    envs: [LLMTrainer/Calculator-v0]
    difficulties: [1, 2]
    seeds: [0, 1, 2]
"""


@pytest.fixture(scope="module")
def trials_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{name: result file}`` on the suite with 4 trials per task: the oracle, an agent right
    on half the tasks every time (``consistent``), one right half the time on every task
    (``coin``: a coin flip per trial) and the random agent."""
    out = tmp_path_factory.mktemp("trials-results")
    specs = {
        "oracle": "oracle",
        "consistent": f"{POLICIES}:task_half_oracle",
        "coin": f"{POLICIES}:half_oracle",
        "random": "random",
    }
    return {
        name: run_bench(
            BenchConfig(TRIALS, spec, name=name, out=out / f"{name}.json", workers=1)
        ).path
        for name, spec in specs.items()
    }


# -- the estimators ----------------------------------------------------------------------------


def test_pass_hat_k_is_the_share_of_k_of_n_trials_that_all_succeed() -> None:
    rng = np.random.default_rng(0)
    successes = rng.integers(0, 2, size=(30, 5))
    for k in range(1, 6):
        brute = [
            np.mean([all(row[list(pick)]) for pick in itertools.combinations(range(5), k)])
            for row in successes
        ]
        assert pass_hat_k_per_task(successes, k) == pytest.approx(brute)
        assert pass_hat_k(successes, k) == pytest.approx(np.mean(brute))
    assert pass_hat_k(successes, 1) == pytest.approx(successes.mean())


@pytest.mark.parametrize(("n", "k"), [(4, 1), (4, 2), (4, 4), (8, 3)])
def test_pass_hat_k_is_unbiased_for_p_to_the_k(n: int, k: int) -> None:
    # E[C(c, k) / C(n, k)] over c ~ Binomial(n, p) is exactly p^k
    for p in (0.1, 0.5, 0.83):
        expected = sum(
            math.comb(n, c) * p**c * (1 - p) ** (n - c) * pass_hat_k([[1] * c + [0] * (n - c)], k)
            for c in range(n + 1)
        )
        assert expected == pytest.approx(p**k)


def test_pass_hat_k_refuses_what_it_cannot_estimate() -> None:
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        pass_hat_k([[1, 0, 1, 1]], 5)
    with pytest.raises(ValueError, match="0 or 1"):
        pass_hat_k([[1, 0.5, 1, 1]], 1)


def test_the_minimum_detectable_effect_is_detected_with_the_promised_power() -> None:
    n, base = 400, 0.5
    mde = minimum_detectable_effect(base * (1 - base), n)
    assert mde == pytest.approx((1.959964 + 0.841621) * math.sqrt(2 * 0.25 / n), rel=1e-5)
    # two agents whose success rates differ by the MDE, compared on the same n episodes
    rng = np.random.default_rng(7)
    a = rng.random((4000, n)) < base + mde
    b = rng.random((4000, n)) < base
    d = a.astype(float) - b
    z = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    assert np.mean(np.abs(z) > 1.959964) == pytest.approx(0.8, abs=0.03)
    # at half the MDE, most such differences are missed
    a = rng.random((4000, n)) < base + mde / 2
    d = a.astype(float) - b
    z = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    assert np.mean(np.abs(z) > 1.959964) < 0.4
    assert minimum_detectable_effect(0.25, n, alpha=0.01, power=0.9) > mde
    with pytest.raises(ValueError, match="alpha and power"):
        minimum_detectable_effect(0.25, n, power=1.0)


def test_the_stratified_variance_of_tasks_is_that_of_their_trial_means() -> None:
    rng = np.random.default_rng(3)
    strata = np.repeat([0, 1], 40)  # two cells of 10 tasks x 4 trials
    clusters = np.repeat(np.arange(20), 4)
    values = rng.random(80)
    means = values.reshape(20, 4).mean(1)
    pooled, units = stratified_variance(values, strata, clusters)
    assert units == 20
    assert pooled == pytest.approx((means[:10].var(ddof=1) + means[10:].var(ddof=1)) / 2)
    by_episode, episodes = stratified_variance(values, strata)
    assert episodes == 80
    assert by_episode == pytest.approx((values[:40].var(ddof=1) + values[40:].var(ddof=1)) / 2)


def test_resampling_whole_tasks_keeps_repeated_trials_from_narrowing_the_interval() -> None:
    rng = np.random.default_rng(5)
    task_success = (rng.random(200) < 0.5).astype(float)  # each task: always or never solved
    values = np.repeat(task_success, 4)  # four identical trials each
    strata = np.zeros(800, dtype=np.int64)
    clusters = np.repeat(np.arange(200), 4)
    naive = bootstrap_ci(values, strata)  # as if the 800 episodes were independent
    whole = bootstrap_ci(task_success)  # what 200 independent tasks support
    clustered = StratifiedBootstrap(values, resampler=Resampler(strata, clusters=clusters))
    interval = clustered.interval()
    assert interval.mean == pytest.approx(task_success.mean())
    assert interval.half_width == pytest.approx(whole.half_width, rel=0.1)
    assert interval.half_width == pytest.approx(2 * naive.half_width, rel=0.15)
    uneven = clusters.copy()
    uneven[-1] = 999  # one task with three trials, another with one
    with pytest.raises(ValueError, match="equal sizes"):
        Resampler(strata, clusters=uneven)


# -- suites with trials ------------------------------------------------------------------------


def test_a_suite_with_trials_replays_each_task_with_its_own_policy_seed() -> None:
    suite = suite_spec(TRIALS)
    assert suite.trials == 4
    assert suite.tasks_per_seed == 4
    keys = suite.episode_keys()
    assert len(keys) == 12 * 48
    assert [k.trial for k in keys[:8]] == [0, 1, 2, 3, 0, 1, 2, 3]
    for task, group in itertools.groupby(keys, key=lambda k: k.task):
        trials = list(group)
        assert len({episode_env_seed(k) for k in trials}) == 1, task  # the same task
        assert len({episode_policy_seed(k) for k in trials}) == 4, task  # fresh attempts
    tasks = {episode_env_seed(k) for k in keys}
    assert len(tasks) == len(keys) // 4
    # without trials the policy is seeded as before: with the env seed
    plain = EpisodeKey("LLMTrainer/Calculator-v0", 1, 0, 3)
    assert episode_policy_seed(plain) == episode_env_seed(plain)


def test_trials_leave_the_published_suites_and_their_hashes_as_they_were() -> None:
    locked = locked_hashes()
    for suite_id in ("tooluse-v0", "tooluse-smoke-v0"):
        suite = suite_spec(suite_id)
        assert suite.trials == 1
        assert "trials" not in suite.definition()
        assert suite.hash == locked[suite_id]
        assert all(k.trial is None for k in suite.episode_keys())
    trials = suite_spec(TRIALS)
    assert trials.hash == locked[TRIALS]
    assert SuiteSpec.from_definition(trials.definition()) == trials


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("episodes_per_cell: 24\n    trials: 2", f"at least {MIN_TRIALS}"),
        ("episodes_per_cell: 24\n    trials: 0", "positive integer"),
        ("episodes_per_cell: 18\n    trials: 4", r"multiple of seeds x trials \(3 x 4\)"),
    ],
)
def test_bad_trials_are_errors_naming_the_suite(fields: str, message: str) -> None:
    with pytest.raises(RegistryError, match=rf"suite calc-v0.*{message}"):
        parse_suites(ENVS + f"    {fields}\n")
    assert parse_suites(ENVS + "    episodes_per_cell: 24\n    trials: 4\n")["calc-v0"].trials == 4


# -- result files, summaries, boards -----------------------------------------------------------


def test_result_files_record_each_trial_and_its_pass_hat_k(
    trials_results: dict[str, Path],
) -> None:
    data = json.loads(trials_results["coin"].read_text())
    assert data["suite"]["trials"] == 4
    first = data["episodes"][:4]
    assert [e["trial"] for e in first] == [0, 1, 2, 3]
    assert len({(e["seed"], e["index"], e["env_seed"]) for e in first}) == 1
    summary = data["summary"]
    assert summary["trials"] == 4
    assert set(summary["pass_hat_k"]) == {"1", "2", "3", "4"}
    assert summary["pass_hat_k"]["1"]["mean"] == pytest.approx(
        summary["metrics"]["success"]["mean"]
    )
    assert "resampling whole tasks" in summary["bootstrap"]["method"]
    result = load_result(trials_results["coin"])  # and it reads back, trials and all
    assert [r.trial for r in result.episodes[:4]] == [0, 1, 2, 3]


def test_pass_hat_k_separates_a_consistent_agent_from_a_coin_flipper(
    trials_results: dict[str, Path],
) -> None:
    consistent = pass_hat_k_intervals(*_suite_and_records(trials_results["consistent"]))
    coin = pass_hat_k_intervals(*_suite_and_records(trials_results["coin"]))
    oracle = pass_hat_k_intervals(*_suite_and_records(trials_results["oracle"]))
    # about as successful once...
    assert 0.3 < consistent[1].mean < 0.7
    assert 0.3 < coin[1].mean < 0.7
    # ...but only the consistent agent succeeds on every try: its pass^4 stays its pass^1,
    # while the coin flipper's falls towards 0.5^4
    assert consistent[4].mean == pytest.approx(consistent[1].mean, abs=0.02)
    assert coin[4].mean < 0.2
    assert coin[4].high < consistent[4].low
    assert all(coin[k].mean >= coin[k + 1].mean for k in (1, 2, 3))
    assert [oracle[k].mean for k in (1, 2, 3, 4)] == [1.0] * 4


def _suite_and_records(path: Path) -> tuple[SuiteSpec, tuple[EpisodeRecord, ...]]:
    result = load_result(path)
    return result.suite, result.episodes


def test_the_board_shows_pass_hat_k_and_the_mde_in_markdown_html_and_json(
    tmp_path: Path, trials_results: dict[str, Path]
) -> None:
    files = write_leaderboard(trials_results.values(), tmp_path / "board")
    (board,) = files.boards
    coin = next(e for e in board.entries if e.name == "coin")
    assert sorted(coin.pass_hat_k) == [1, 2, 3, 4]
    assert coin.pass_hat_k[1].mean == pytest.approx(coin.metrics["success"].mean)
    markdown = files.markdown.read_text()
    assert "### pass^k over 4 trials per task" in markdown
    assert "| agent | pass^1 | pass^2 | pass^3 | pass^4 |" in markdown
    for name in trials_results:
        assert re.search(rf"^\| {name} \| {CI} \| {CI} \| {CI} \| {CI} \|$", markdown, re.M)
    assert "Minimum detectable effect of success" in markdown
    assert "n the tasks (trials averaged) per entry" in markdown
    page = files.html.read_text()
    assert 'class="sortable pass-k"' in page
    assert "MDE (paired)" in page
    data = board.as_dict()
    assert data["trials"] == 4
    assert set(data["entries"][0]["pass_hat_k"]) == {"1", "2", "3", "4"}
    assert data["mde"]["success"] == pytest.approx(board.mde["success"])
    assert data["mde_alpha"] == 0.05
    assert data["mde_power"] == 0.8


def test_the_mde_is_the_formula_over_the_entries_pooled_per_task_variance(
    trials_results: dict[str, Path], smoke_results: dict[str, Path]
) -> None:
    (board,) = build_boards(load_results(trials_results.values()))
    variances = []
    for path in trials_results.values():
        result = load_result(path)
        available, matrix = metric_matrix(result.episodes)
        column = matrix[:, [m.name for m in available].index("success")]
        strata = cell_strata(result.suite, result.episodes)
        per_task = column.reshape(-1, 4).mean(1)
        task_strata = strata[::4]
        variances.append(sum(per_task[task_strata == c].var(ddof=1) for c in range(12)) / 12)
    tasks = 12 * 3 * 4
    assert board.mde["success"] == pytest.approx(
        (1.959964 + 0.841621) * math.sqrt(2 * np.mean(variances) / tasks), rel=1e-5
    )
    # the clustered variance is what the intervals use as well
    result = load_result(trials_results["coin"])
    clusters = task_clusters(result.suite, result.episodes)
    assert clusters is not None
    assert len(set(clusters.tolist())) == tasks

    # a suite without trials: per-episode variance, and no pass^k section
    (smoke,) = build_boards(load_results(smoke_results.values()))
    assert smoke.mde["success"] > smoke.noise_floor["success"].noise_floor > 0
    assert all(not e.pass_hat_k for e in smoke.entries)
    markdown = render_markdown([smoke])
    assert "pass^k" not in markdown
    assert re.search(r"^\| success \| \d\.\d{3} \| \d\.\d{3} \| \d\.\d{3} \|$", markdown, re.M)
    assert "MDE (paired)" in markdown


def test_comparing_results_of_a_suite_with_trials_resamples_whole_tasks(
    trials_results: dict[str, Path],
) -> None:
    coin, consistent = (load_result(trials_results[n]) for n in ("coin", "consistent"))
    report = compare_results(consistent, coin, metrics=["success"])
    [check] = report.checks
    a, b = coin.values("success"), consistent.values("success")
    assert a is not None
    assert b is not None
    episode_level = bootstrap_ci(a - b, cell_strata(coin.suite, coin.episodes))
    # trials of a task move together: the task-level interval is wider than the naive one
    assert check.comparison.difference.half_width > 1.2 * episode_level.half_width


def test_the_leaderboard_cli_json_carries_pass_hat_k_and_the_mde(
    tmp_path: Path, trials_results: dict[str, Path]
) -> None:
    result = CliRunner().invoke(
        app,
        ["leaderboard", *map(str, trials_results.values()), "--out-dir", str(tmp_path), "--json"],
    )
    assert result.exit_code == 0, result.output
    (board,) = json.loads(result.output.strip().splitlines()[-1])["boards"]
    assert board["mde"]["success"] > 0
    assert {e["agent"] for e in board["entries"] if "pass_hat_k" in e} == set(trials_results)
