"""The arena: round robins of two-player matches, OpenSkill ratings with bootstrap intervals,
arena suites in registry.yaml, result files, and the arena board on the leaderboard."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from llm_trainer.agents.factory import make_agent
from llm_trainer.benchmarks.arena import ArenaConfig, run_arena
from llm_trainer.benchmarks.arena_results import (
    MatchRecord,
    load_arena_result,
    schedule,
    standings,
)
from llm_trainer.benchmarks.leaderboard import load_results, write_leaderboard
from llm_trainer.benchmarks.ratings import Game, RatingConfig, rate
from llm_trainer.benchmarks.suites import (
    ArenaSuiteSpec,
    arena_suite_spec,
    arena_suites,
    locked_arena_hashes,
    locked_hashes,
    parse_arena_suites,
    parse_suites,
    suite_spec,
    suites,
)
from llm_trainer.cli import app
from llm_trainer.core.errors import ConfigError, RegistryError
from llm_trainer.envs.multiagent.kuhn_solver import (
    INFO_SETS,
    SCRIPTED_STRATEGIES,
    Strategy,
    expected_value,
)

ARENA = "kuhn-arena-v0"
SCRIPTED = ("kuhn:equilibrium", "kuhn:always_bet", "kuhn:random", "random")
runner = CliRunner()


def small_suite(seeds: Sequence[int] = (0, 1, 2, 3), deals: int = 5) -> ArenaSuiteSpec:
    """The published arena's env and scoring with fewer rounds and deals (a test's own id)."""
    return dataclasses.replace(
        arena_suite_spec(ARENA), id="kuhn-test-v0", seeds=tuple(seeds), episodes_per_seating=deals
    )


def crashing_player(env: Any) -> Any:
    """A ``python:`` entrant whose every move raises."""

    class Crashing:
        def reset(self, *, seed: int | None = None) -> None:
            pass

        def act(self, observation: str, info: Mapping[str, Any]) -> str:
            raise RuntimeError("this player always crashes")

        def act_batch(
            self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
        ) -> list[str]:
            return [self.act(o, i) for o, i in zip(observations, infos, strict=True)]

    return Crashing()


@pytest.fixture(scope="module")
def scripted_arena(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The published kuhn-arena-v0 played by the three scripted Kuhn players and the text
    ``random`` agent (its answers are never moves: it always plays the default check/fold)."""
    out = tmp_path_factory.mktemp("arena") / "arena.json"
    return run_arena(ArenaConfig(ARENA, SCRIPTED, out=out, progress=False)).path


# -- suites ------------------------------------------------------------------------------------


def test_the_arena_suite_hash_is_pinned_and_the_grid_suites_keep_theirs() -> None:
    arena = arena_suite_spec(ARENA)
    assert locked_arena_hashes() == {i: s.hash for i, s in arena_suites().items()}
    assert arena.hash == locked_arena_hashes()[ARENA]
    assert arena.env == "LLMTrainer/KuhnPoker-v0"
    assert arena.score_key == "chips"
    assert len(arena.seeds) == 20
    assert arena.episodes_per_match == 2 * arena.episodes_per_seating == 100
    # the single-agent suites are untouched by the new kind
    assert ARENA not in suites()
    assert {i: s.hash for i, s in suites().items()} == locked_hashes()
    assert ArenaSuiteSpec.from_definition(arena.definition()) == arena
    with pytest.raises(RegistryError, match=r"arena suite.*llm-trainer arena"):
        suite_spec(ARENA)
    with pytest.raises(RegistryError, match=r"single-agent suite.*llm-trainer bench"):
        arena_suite_spec("tooluse-v0")


ENVS = """
version: 1
envs:
  - id: LLMTrainer/KuhnPoker-v0
    entry_point: llm_trainer.envs.multiagent.kuhn:KuhnPokerEnv
    description: kuhn
    capabilities: {api: pettingzoo-aec, multi_agent: true}
  - id: LLMTrainer/Calculator-v0
    entry_point: llm_trainer.envs.tooluse.calculator:CalculatorEnv
    description: calc
    max_episode_steps: 6
    capabilities: {difficulties: [1, 2, 3]}
"""
SUITE = """
suites:
  - id: duel-v0
    kind: arena
    description: a duel
    env: LLMTrainer/KuhnPoker-v0
    seeds: [0, 1, 2]
    episodes_per_seating: 4
    score_key: chips
"""


def test_arena_suites_parse_strictly_and_hash_every_field() -> None:
    duel = parse_arena_suites(ENVS + SUITE)["duel-v0"]
    assert duel.seeds == (0, 1, 2)
    assert parse_suites(ENVS + SUITE) == {}  # the grids alone
    variants = [
        SUITE.replace("seeds: [0, 1, 2]", "seeds: [0, 1, 3]"),
        SUITE.replace("episodes_per_seating: 4", "episodes_per_seating: 5"),
        SUITE.replace("    score_key: chips\n", ""),
    ]
    hashes = {parse_arena_suites(ENVS + v)["duel-v0"].hash for v in variants}
    assert duel.hash not in hashes
    assert len(hashes) == 3


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (("score_key: chips", "score_kye: chips"), r"duel-v0.*unknown key 'score_kye'"),
        (("seeds: [0, 1, 2]", "seeds: [0, 1]"), r"duel-v0.*at least 3 seeds"),
        (("kind: arena", "kind: arean"), r"'kind' must be 'arena'"),
        (("KuhnPoker-v0\n    seeds", "Calculator-v0\n    seeds"), r"a gymnasium env"),
        (("KuhnPoker-v0\n    seeds", "KuhnPokr-v0\n    seeds"), r"unknown env id .*did you mean"),
        (("episodes_per_seating: 4", "episodes_per_seating: 0"), r"positive integer"),
        (("score_key: chips", "score_key: 3"), r"'score_key' must be an info key"),
    ],
)
def test_malformed_arena_suites_are_errors_naming_the_suite(
    patch: tuple[str, str], message: str
) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_arena_suites(ENVS + SUITE.replace(*patch))


def test_arena_and_grid_suites_share_one_id_namespace() -> None:
    grid = "\n  - id: duel-v0\n    description: d\n    envs: [LLMTrainer/Calculator-v0]\n"
    grid += "    difficulties: [1]\n    seeds: [0, 1, 2]\n    episodes_per_cell: 3\n"
    with pytest.raises(RegistryError, match="duplicate suite id 'duel-v0'"):
        parse_suites(ENVS + SUITE + grid)


# -- ratings -----------------------------------------------------------------------------------


def test_scripted_players_are_rated_in_the_order_their_expected_chips_give(
    scripted_arena: Path,
) -> None:
    """Exact expected chips per hand, averaged over the two seats (kuhn_solver): equilibrium
    wins against every player, always_bet against kuhn:random and the text random agent (which
    plays the default move, check or fold: the all-passive strategy), kuhn:random against it.
    The ratings follow that order, with intervals far apart."""
    strategies = {f"kuhn:{n}": make() for n, make in SCRIPTED_STRATEGIES.items()}
    strategies["random"] = Strategy(dict.fromkeys(INFO_SETS, 0.0))

    def chips(a: str, b: str) -> float:
        sa, sb = strategies[a], strategies[b]
        return (expected_value(sa, sb) - expected_value(sb, sa)) / 2

    for better, worse in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]:
        assert chips(SCRIPTED[better], SCRIPTED[worse]) > 0.1
    assert chips("kuhn:equilibrium", "kuhn:always_bet") == pytest.approx(1 / 9)

    result = load_arena_result(scripted_arena)
    rows, head = standings(result, reuse=True)
    ratings = {row.name: row.player.rating for row in rows}
    assert sorted(ratings, key=lambda n: -ratings[n].mean) == list(SCRIPTED)
    for better, worse in itertools.pairwise(SCRIPTED):
        assert ratings[better].low > ratings[worse].high, (better, worse)
    # the measured chips per hand match the exact values (duplicate deals, 2,000 hands a pair)
    for a in SCRIPTED:
        for b in SCRIPTED:
            if a != b:
                assert head[a][b] == pytest.approx(chips(a, b), abs=0.05), (a, b)
    by_name = {row.name: row for row in rows}
    assert by_name["random"].invalid_episodes == by_name["random"].episodes == 6000
    assert by_name["kuhn:equilibrium"].invalid_episodes == 0
    assert all(row.player.games == 60 for row in rows)


def test_bootstrap_intervals_contain_the_point_estimate(scripted_arena: Path) -> None:
    result = load_arena_result(scripted_arena)
    for entrant in result.summary["entrants"].values():
        assert entrant["ci_low"] <= entrant["rating"] <= entrant["ci_high"]
    run = run_arena(
        ArenaConfig(
            "kuhn-test-v0",
            ("kuhn:equilibrium", "kuhn:always_bet", "kuhn:random"),
            out=scripted_arena.parent / "mixed.json",
            progress=False,
        ),
        small_suite(range(8), deals=5),  # few deals a match: many upsets and draws
    )
    for entrant in run.result.summary["entrants"].values():
        assert entrant["ci_low"] <= entrant["rating"] <= entrant["ci_high"]
        assert entrant["ci_low"] < entrant["ci_high"]


def _games(rounds: int, seed: int) -> list[Game]:
    """Round robins of three players whose chances follow a logistic model (0 < 1 < 2)."""
    rng = np.random.default_rng(seed)
    strength = [0.0, 0.7, 1.4]
    games = []
    for _ in range(rounds):
        for a, b in [(0, 1), (0, 2), (1, 2)]:
            p = 1 / (1 + np.exp(strength[a] - strength[b]))  # b's chance
            games.append(Game(a, b, 0.0 if rng.random() < p else 1.0))
    return games


def test_bootstrap_intervals_shrink_with_more_games() -> None:
    config = RatingConfig(n_resamples=200, seed=0)
    few = rate(["a", "b", "c"], _games(10, seed=1), config)
    many = rate(["a", "b", "c"], _games(80, seed=1), config)
    for small, large in zip(few, many, strict=True):
        assert large.rating.low <= large.rating.mean <= large.rating.high
        assert large.rating.half_width < 0.7 * small.rating.half_width, small.name
    assert many[0].rating.mean < many[1].rating.mean < many[2].rating.mean
    assert many[0].rating.high < many[2].rating.low


def test_ratings_use_their_own_generator_and_repeat_for_a_seed() -> None:
    games = _games(10, seed=2)
    state = np.random.get_state()
    first = rate(["a", "b", "c"], games, RatingConfig(n_resamples=100, seed=5))
    assert rate(["a", "b", "c"], games, RatingConfig(n_resamples=100, seed=5)) == first
    assert rate(["a", "b", "c"], games, RatingConfig(n_resamples=100, seed=6)) != first
    assert np.all(np.random.get_state()[1] == state[1])
    with pytest.raises(ValueError, match="distinct"):
        rate(["a", "a"], [], RatingConfig())


# -- playing -----------------------------------------------------------------------------------


def test_same_seeds_give_the_same_result_for_any_batch_size(tmp_path: Path) -> None:
    entrants = ("kuhn:equilibrium", "kuhn:random", "random")
    suite = small_suite()
    runs = [
        run_arena(
            ArenaConfig("kuhn-test-v0", entrants, out=tmp_path / f"{n}.json", num_envs=n), suite
        )
        for n in (1, 7)
    ]

    def deterministic(path: Path) -> dict[str, Any]:
        data = json.loads(path.read_text())
        data.pop("provenance")
        for match in data["matches"]:
            match.pop("seconds")
        return data

    assert deterministic(runs[0].path) == deterministic(runs[1].path)
    result = runs[0].result
    assert [(m.round, *m.players) for m in result.matches] == schedule(suite, result.names)
    assert all(m.episodes == 10 for m in result.matches)
    assert all(sum(m.scores) == 0 for m in result.matches)  # chips are zero-sum


def test_results_json_round_trips_and_a_finished_result_is_reused(tmp_path: Path) -> None:
    suite = small_suite(deals=2)
    config = ArenaConfig(
        "kuhn-test-v0", ("eq=kuhn:equilibrium", "kuhn:always_bet"), out=tmp_path / "a.json"
    )
    first = run_arena(config, suite)
    data = json.loads(first.path.read_text())
    assert data["schema"] == "llm-trainer/arena-result"
    assert data["suite_hash"] == suite.hash
    assert [e["name"] for e in data["entrants"]] == ["eq", "kuhn:always_bet"]
    loaded = load_arena_result(first.path)
    assert loaded.to_json() == data
    assert loaded == first.result
    again = run_arena(config, suite)
    assert again.reused
    other = dataclasses.replace(config, entrants=("kuhn:equilibrium", "kuhn:random"))
    with pytest.raises(ConfigError, match=r"another configuration.*--fresh"):
        run_arena(other, suite)
    assert not run_arena(dataclasses.replace(other, fresh=True), suite).reused
    # a truncated or tampered file is refused
    data["matches"] = data["matches"][:-1]
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="not the round robin"):
        load_arena_result(tmp_path / "short.json")
    data = json.loads(first.path.read_text())
    data["matches"][0]["scores"] = [1, "x"]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"matches\[0\]: malformed match record"):
        load_arena_result(tmp_path / "bad.json")


def test_a_player_whose_policy_fails_loses_its_matches(tmp_path: Path) -> None:
    crash = "crash=python:llm_trainer.tests.benchmarks.test_arena:crashing_player"
    run = run_arena(
        ArenaConfig("kuhn-test-v0", ("kuhn:random", crash), out=tmp_path / "c.json"),
        small_suite(deals=2),
    )
    for match in run.result.matches:
        assert match.outcome == 1.0
        assert match.errors == (0, 4)
        assert match.error is not None
        assert "always crashes" in match.error
    assert run.result.summary["entrants"]["crash"]["losses"] == 4
    assert run.result.summary["errors"] == 16
    record = MatchRecord(0, ("a", "b"), (3.0, -3.0), (1.0, -1.0), 4, (0, 0), (1, 1))
    assert record.outcome == 0.5  # both failed: a draw, whatever the chips


def test_stored_intervals_are_reused_only_when_they_are_of_these_matches(tmp_path: Path) -> None:
    entrants = ("kuhn:equilibrium", "kuhn:always_bet", "kuhn:random")
    run = run_arena(
        ArenaConfig("kuhn-test-v0", entrants, out=tmp_path / "r.json"), small_suite(deals=3)
    )
    fresh, _ = standings(run.result)
    reused, _ = standings(run.result, reuse=True)
    assert fresh == reused
    stale = {
        n: {**e, "rating": e["rating"] + 1, "ci_low": -99.0}
        for n, e in run.result.summary["entrants"].items()
    }
    tampered = dataclasses.replace(run.result, summary={**run.result.summary, "entrants": stale})
    assert standings(tampered, reuse=True)[0] == fresh


def test_bad_entrants_are_one_line_errors(tmp_path: Path) -> None:
    out = str(tmp_path / "x.json")
    for entrants, expected in [
        (["kuhn:bluff", "random"], "unknown Kuhn poker player"),
        (["orcale", "random"], "did you mean 'oracle'"),
        (["oracle", "random"], "plays single-agent envs"),
        (["random"], "at least two entrants"),
        (["random", "random"], "appear twice"),
    ]:
        args = ["arena", "--out", out, *(x for e in entrants for x in ("--entrant", e))]
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.output
        assert expected in errors[0]
    assert not Path(out).exists()
    result = runner.invoke(app, ["bench", "--suite", ARENA, "--agent", "random"])
    assert result.exit_code == 2
    assert "llm-trainer arena" in result.output


@pytest.mark.slow  # builds the tiny model (imports torch): about 10 s on two cores
def test_an_llm_agent_plays_in_the_arena(tmp_path: Path) -> None:
    from llm_trainer.agents.backends import SamplingConfig
    from llm_trainer.agents.llm_agent import LLMAgent, LLMAgentConfig
    from llm_trainer.agents.tinylm import create_tiny_model

    model = create_tiny_model(tmp_path / "model", seed=0)
    config = LLMAgentConfig(
        backend=f"transformers:{model}", sampling=SamplingConfig(temperature=0, max_new_tokens=6)
    )
    saved = LLMAgent(config).save(tmp_path / "agent")
    env = __import__("llm_trainer").make_multiagent("LLMTrainer/KuhnPoker-v0")
    assert type(make_agent(str(saved), env)).__name__ == "LLMAgent"
    run = run_arena(
        ArenaConfig("kuhn-test-v0", (f"tiny={saved}", "kuhn:always_bet"), out=tmp_path / "l.json"),
        small_suite(deals=1),
    )
    assert run.result.entrants[0].fingerprint is not None  # the saved agent's files
    tiny = run.result.summary["entrants"]["tiny"]
    assert tiny["episodes"] == 8
    assert tiny["errors"] == 0
    assert tiny["invalid_episodes"] > 0  # random weights write no moves


# -- the leaderboard ---------------------------------------------------------------------------


def test_the_leaderboard_renders_the_arena_table_beside_the_suite_boards(
    tmp_path: Path, scripted_arena: Path, smoke_results: dict[str, Path]
) -> None:
    files = [smoke_results["oracle"], scripted_arena]
    assert len(load_results(files)) == 1  # the single-agent results alone, no warning
    written = write_leaderboard(files, tmp_path / "board")
    assert [b.suite.id for b in written.boards] == ["tooluse-smoke-v0"]
    (arena,) = written.arenas
    assert [row.name for row in arena.rows] == list(SCRIPTED)
    assert arena.ranks == ["1", "2", "3", "4"]
    markdown = written.markdown.read_text()
    assert "## tooluse-smoke-v0" in markdown
    assert "## kuhn-arena-v0 (arena)" in markdown
    assert "| rank | entrant | rating [95% CI] | games | W-D-L | win rate | chips/episode |" in (
        markdown
    )
    interval = r"-?\d+\.\d \[-?\d+\.\d, -?\d+\.\d\]"
    for rank, name in enumerate(SCRIPTED, start=1):
        row = (
            rf"^\| {rank} \| {re.escape(name)} \| {interval} \| 60 \| \d+-\d+-\d+ \| \d\.\d{{3}} \|"
        )
        assert re.search(row, markdown, re.MULTILINE), name
    assert "### Head to head (chips/episode, row against column)" in markdown
    page = written.html.read_text()
    assert 'class="sortable arena"' in page
    assert page.count('class="name entrant"') == 4
    assert written.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(
        app, ["leaderboard", str(scripted_arena), "--out-dir", str(tmp_path / "cli"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert "kuhn-arena-v0 (arena)" in result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    assert payload["boards"] == []
    assert [e["entrant"] for e in payload["arenas"][0]["entrants"]] == list(SCRIPTED)


def test_two_results_of_one_arena_are_refused(tmp_path: Path, scripted_arena: Path) -> None:
    copy = tmp_path / "copy.json"
    copy.write_text(scripted_arena.read_text())
    with pytest.raises(ConfigError, match="both arena results of kuhn-arena-v0"):
        write_leaderboard([scripted_arena, copy], tmp_path / "board")
