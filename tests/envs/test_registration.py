"""registry.yaml: strict loading, registration with gymnasium, ``make`` and its errors."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import textwrap

import gymnasium as gym
import pytest

import llm_trainer
import llm_trainer.envs
from llm_trainer.core.errors import RegistryError, UnknownEnvError
from llm_trainer.envs.registration import (
    REGISTRY_PATH,
    multi_agent_ids,
    parse_registry,
    single_agent_ids,
)

ENTRY = """
version: 1
envs:
  - id: LLMTrainer/Calculator-v0
    entry_point: llm_trainer.envs.tooluse.calculator:CalculatorEnv
    description: calc
    max_episode_steps: 6
"""


def test_every_concrete_env_class_under_envs_is_registered() -> None:
    registered = {spec.entry_point for spec in llm_trainer.registry().values()}
    found = set()
    for module_info in pkgutil.walk_packages(llm_trainer.envs.__path__, "llm_trainer.envs."):
        module = importlib.import_module(module_info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, gym.Env)
                and not issubclass(cls, gym.Wrapper)  # wrappers (envs/wrappers/) are not envs
                and cls.__module__ == module.__name__
                and not inspect.isabstract(cls)
                and not name.startswith("_")
            ):
                found.add(f"{cls.__module__}:{name}")
    assert found, "no env classes found under envs/"
    assert found <= registered, f"env classes missing from registry.yaml: {found - registered}"


def test_every_entry_point_imports_and_names_a_documented_env() -> None:
    # Multi-agent envs (PettingZoo) document agents instead: tests/envs/multiagent/.
    for env_id in single_agent_ids():
        spec = llm_trainer.spec(env_id)
        cls = spec.load()
        doc = inspect.getdoc(cls) or ""
        for section in ("## Description", "## Difficulty", "## Arguments", "## Version History"):
            assert section in doc, f"{spec.id}: class docstring lacks {section!r}"
        assert set(spec.capabilities.difficulties) == {1, 2, 3}


def test_import_registers_every_single_agent_id_with_gymnasium() -> None:
    for env_id in llm_trainer.registry():
        if env_id in multi_agent_ids():  # PettingZoo envs: llm_trainer.make_multiagent
            assert env_id not in gym.registry
            continue
        assert env_id in gym.registry
        env = gym.make(env_id)
        assert env.spec is not None
        assert env.spec.max_episode_steps == llm_trainer.spec(env_id).max_episode_steps


def test_make_overlays_kwargs_like_gymnasium() -> None:
    env = llm_trainer.make("LLMTrainer/Search-v0", difficulty=3, corpus_seed=4)
    assert env.unwrapped.difficulty == 3
    assert env.unwrapped.corpus_seed == 4
    assert llm_trainer.make("LLMTrainer/Search-v0").unwrapped.difficulty == 1


def test_unknown_id_raises_typed_error_with_suggestion() -> None:
    with pytest.raises(UnknownEnvError, match=r"Did you mean 'LLMTrainer/Calculator-v0'"):
        llm_trainer.make("LLMTrainer/Calculater-v0")
    with pytest.raises(KeyError):  # UnknownEnvError is also a KeyError and a ValueError
        llm_trainer.spec("nope")


def test_registry_entry_with_a_typo_in_a_key_fails_naming_it() -> None:
    text = ENTRY.replace("max_episode_steps", "max_episode_step")
    with pytest.raises(
        RegistryError,
        match=r"LLMTrainer/Calculator-v0.*unknown key "
        r"'max_episode_step' \(did you mean 'max_episode_steps'\?\)",
    ):
        parse_registry(text)


def test_registry_entry_with_a_typo_in_the_entry_point_fails_naming_it() -> None:
    text = ENTRY.replace("CalculatorEnv", "CalculatorEnvv")
    spec = parse_registry(text)["LLMTrainer/Calculator-v0"]
    with pytest.raises(
        RegistryError,
        match=r"'LLMTrainer/Calculator-v0'.*has no attribute "
        r"'CalculatorEnvv' \(did you mean 'CalculatorEnv'\?\)",
    ):
        spec.load()
    bad_module = parse_registry(ENTRY.replace("tooluse.calculator", "tooluse.calculater"))
    with pytest.raises(RegistryError, match="cannot import module"):
        bad_module["LLMTrainer/Calculator-v0"].load()
    with pytest.raises(RegistryError, match="entry_point must be"):
        parse_registry(ENTRY.replace("tooluse.calculator:CalculatorEnv", "not an entry point"))


def test_duplicate_ids_and_duplicate_yaml_keys_are_errors() -> None:
    entry = ENTRY.split("envs:\n")[1]
    with pytest.raises(RegistryError, match="duplicate env id 'LLMTrainer/Calculator-v0'"):
        parse_registry(ENTRY + entry)
    with pytest.raises(RegistryError, match="duplicate key 'description'"):
        parse_registry(ENTRY + "    description: again\n")


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ("    max_episode_steps: 0\n", "max_episode_steps"),
        ("    tags: tooluse\n", "tags"),
        ("    capabilities: {api: gym}\n", "capabilities.api must be one of"),
        ("    capabilities: {snapshot: maybe}\n", "capabilities.snapshot"),
        ("    capabilities: {tool: [x]}\n", "unknown key 'tool' \\(did you mean 'tools'\\?\\)"),
        ("    capabilities: {api: pettingzoo-aec}\n", "multi_agent must be true exactly when"),
        ("    capabilities: {multi_agent: true}\n", "multi_agent must be true exactly when"),
    ],
)
def test_malformed_fields_are_errors_naming_the_entry(patch: str, message: str) -> None:
    text = ENTRY.replace("    max_episode_steps: 6\n", patch)
    with pytest.raises(RegistryError, match=message):
        parse_registry(text)


def test_the_shipped_registry_parses_and_specs_are_frozen() -> None:
    specs = parse_registry(REGISTRY_PATH.read_text())
    spec = specs["LLMTrainer/Calculator-v0"]
    with pytest.raises(AttributeError):
        spec.max_episode_steps = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.kwargs["difficulty"] = 3  # type: ignore[index]


def test_import_llm_trainer_stays_light() -> None:
    code = textwrap.dedent("""
        import sys, llm_trainer, gymnasium
        gymnasium.make("LLMTrainer/Calculator-v0")
        heavy = ("torch", "transformers", "vllm", "trl", "rank_bm25", "pettingzoo")
        heavy = [m for m in heavy if m in sys.modules]
        print(",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_envs_lists_every_id() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "llm_trainer.cli", "envs", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    import json

    assert json.loads(out.stdout.strip().splitlines()[-1])["envs"] == list(llm_trainer.registry())
    for env_id in llm_trainer.registry():
        assert env_id.split("/")[1][:8] in out.stdout
