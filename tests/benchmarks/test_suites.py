"""Suites in registry.yaml: strict parsing, versioning by hash, seed derivation."""

from __future__ import annotations

import pytest

from llm_trainer.benchmarks.suites import (
    MIN_SEEDS,
    REGISTRY_PATH,
    EpisodeKey,
    SuiteSpec,
    episode_env_seed,
    locked_hashes,
    parse_suites,
    suite_spec,
    suites,
)
from llm_trainer.core.errors import RegistryError

ENVS = """
version: 1
envs:
  - id: LLMTrainer/Calculator-v0
    entry_point: llm_trainer.envs.tooluse.calculator:CalculatorEnv
    description: calc
    max_episode_steps: 6
    capabilities: {difficulties: [1, 2, 3]}
"""
SUITE = """
suites:
  - id: calc-v0
    description: calculator only
    envs: [LLMTrainer/Calculator-v0]
    difficulties: [1, 2]
    seeds: [0, 1, 2]
    episodes_per_cell: 6
"""


def test_tooluse_v0_covers_the_four_tooluse_envs_at_every_difficulty() -> None:
    suite = suite_spec("tooluse-v0")
    assert suite.envs == (
        "LLMTrainer/Calculator-v0",
        "LLMTrainer/Weather-v0",
        "LLMTrainer/Search-v0",
        "LLMTrainer/MultiTool-v0",
    )
    assert suite.difficulties == (1, 2, 3)
    assert len(suite.seeds) >= MIN_SEEDS
    keys = suite.episode_keys()
    assert len(keys) == len(set(keys)) == 12 * suite.episodes_per_cell
    cells = suite.cells()
    assert keys == sorted(keys, key=lambda k: (cells.index(k.cell), k.seed, k.index))


def test_every_published_suite_matches_its_locked_hash() -> None:
    """A suite never changes in place: edit one and this fails (add name-v(N+1) instead)."""
    locked = locked_hashes()
    assert set(locked) == set(suites()), "every suite needs its hash in suites.lock.json"
    for suite_id, suite in suites().items():
        assert suite.hash == locked[suite_id], (
            f"suite {suite_id} changed; published suites are immutable: add a new version"
        )


def test_changing_any_field_or_an_env_spec_changes_the_hash() -> None:
    base = parse_suites(ENVS + SUITE)["calc-v0"]
    variants = [
        SUITE.replace("seeds: [0, 1, 2]", "seeds: [0, 1, 3]"),
        SUITE.replace("episodes_per_cell: 6", "episodes_per_cell: 9"),
        SUITE.replace("difficulties: [1, 2]", "difficulties: [1, 3]"),
    ]
    hashes = {parse_suites(ENVS + v)["calc-v0"].hash for v in variants}
    changed_env = ENVS.replace("max_episode_steps: 6", "max_episode_steps: 7")
    hashes.add(parse_suites(changed_env + SUITE)["calc-v0"].hash)
    assert base.hash not in hashes
    assert len(hashes) == 4


def test_definition_round_trips_as_stored_in_result_files() -> None:
    suite = suite_spec("tooluse-smoke-v0")
    again = SuiteSpec.from_definition(suite.definition())
    assert again.hash == suite.hash
    assert again.episode_keys() == suite.episode_keys()
    with pytest.raises(RegistryError, match="malformed suite definition"):
        SuiteSpec.from_definition({"id": "x-v0"})


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (("episodes_per_cell: 6", "episodes_per_cel: 6"), r"unknown key 'episodes_per_cel'"),
        (("seeds: [0, 1, 2]", "seeds: [0, 1]"), r"calc-v0.*at least 3 seeds"),
        (("seeds: [0, 1, 2]", "seeds: [0, 1, 1]"), r"calc-v0.*'seeds' has duplicates"),
        (("Calculator-v0]", "Calculater-v0]"), r"unknown env id .*did you mean"),
        (("difficulties: [1, 2]", "difficulties: [1, 4]"), r"does not declare difficulties \[4\]"),
        (("episodes_per_cell: 6", "episodes_per_cell: 7"), r"multiple of the number of seeds"),
        (("id: calc-v0", "id: Calc"), r"must look like 'name-v0'"),
        (("    description: calculator only\n", ""), r"calc-v0.*missing 'description'"),
        (("episodes_per_cell: 6", "episodes_per_cell: 6\n    env_specs: {}"), r"derived"),
    ],
)
def test_malformed_suites_are_errors_naming_the_suite(patch: tuple[str, str], message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_suites(ENVS + SUITE.replace(*patch))


def test_duplicate_suite_ids_and_unknown_suites_are_errors() -> None:
    entry = SUITE.split("suites:\n")[1]
    with pytest.raises(RegistryError, match="duplicate suite id 'calc-v0'"):
        parse_suites(ENVS + SUITE + entry)
    with pytest.raises(RegistryError, match=r"unknown suite 'tooluse-v9'.*did you mean"):
        suite_spec("tooluse-v9")


def test_the_shipped_registry_still_parses_its_envs_beside_the_suites() -> None:
    from llm_trainer.envs.registration import parse_registry

    text = REGISTRY_PATH.read_text()
    assert "suites:" in text
    assert set(parse_suites(text)) == set(suites())
    assert "LLMTrainer/Calculator-v0" in parse_registry(text)


def test_episode_env_seeds_are_distinct_and_independent_of_other_cells() -> None:
    suite = suite_spec("tooluse-v0")
    seeds = [episode_env_seed(k) for k in suite.episode_keys()]
    assert len(set(seeds)) == len(seeds)
    # The seed of an episode depends on its key only (not on the suite's other cells).
    key = EpisodeKey("LLMTrainer/Weather-v0", 2, 3, 7)
    assert episode_env_seed(key) == episode_env_seed(EpisodeKey("LLMTrainer/Weather-v0", 2, 3, 7))
    assert episode_env_seed(key) != episode_env_seed(EpisodeKey("LLMTrainer/Weather-v0", 2, 3, 8))
