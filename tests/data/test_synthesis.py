"""Synthetic trajectories (``data/taskspec.py``, ``data/synthesis.py``): the task spec parser,
each quality filter against its kind of bad trajectory, oracle synthesis end to end with the
store, augmentation that stays valid, LLM generators that keep only what the env verifies, and
determinism from the seed."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from llm_trainer.agents.backends import BACKENDS, SamplingConfig
from llm_trainer.agents.backends.base import Backend, ChatPrompt
from llm_trainer.agents.llm_agent import close_shared_backends
from llm_trainer.agents.tinylm import TinyLMConfig, create_tiny_model
from llm_trainer.cli import app
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import Generation, ToolCall
from llm_trainer.core.store import TrajectoryStore, trajectory_hash
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.data import (
    FILTERS,
    Example,
    TaskSpec,
    answer_verified,
    deduplicate,
    length_bounds,
    load_task_spec,
    paraphrase_question,
    parses,
    reexecutes,
    reorder_independent_calls,
    synthesize,
    validate_trajectory,
)
from llm_trainer.data.base import EnvPool, replay_task, solution_actions
from llm_trainer.data.synthesis import Synthesized, call_dependencies, load_synthesized, task_seeds
from llm_trainer.envs.tools import AnswerAction, format_answer, parse_action
from llm_trainer.envs.tooluse.base import Task

ROOT = Path(__file__).resolve().parents[2]
CALCULATOR = "LLMTrainer/Calculator-v0"
MULTITOOL = "LLMTrainer/MultiTool-v0"
#: A tiny model small enough that a few sampled episodes take about a second.
SMALL = TinyLMConfig(n_layers=1, hidden_size=64, n_heads=2, intermediate_size=128)


def oracle_example(env_id: str, seed: int, difficulty: int = 1) -> Example:
    """The oracle's solution of ``reset(seed)``, replayed through the env."""
    env = EnvPool()[env_id]
    env.reset(seed=seed, options={"difficulty": difficulty})
    task = env.task
    trajectory = replay_task(
        env,
        task,
        solution_actions(task),
        env_id=env_id,
        seed=seed,
        source="oracle",
        difficulty=difficulty,
    )
    return Example(task, trajectory)


def replayed(example: Example, actions: Sequence[str]) -> Trajectory:
    t = example.trajectory
    return replay_task(
        EnvPool()[t.env_id],
        example.task,
        actions,
        env_id=t.env_id,
        seed=t.seed,
        source=t.source,
        difficulty=t.difficulty,
    )


# -- the task spec -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("synthesis_*.yaml")), ids=str)
def test_every_shipped_task_spec_loads_and_round_trips(path: Path) -> None:
    spec = load_task_spec(path)
    assert spec.tasks
    assert load_task_spec(spec.to_dict()) == spec


def test_a_spec_reads_the_same_from_yaml_json_and_a_mapping(tmp_path: Path) -> None:
    data = {
        "seed": 3,
        "tasks": [
            {
                "env_id": MULTITOOL,
                "difficulties": [2, 3],
                "count": 4,
                "generators": [
                    "oracle",
                    "templates",
                    {"name": "llm:openai:http://127.0.0.1:8000/v1#tiny", "samples": 3},
                    {"name": "teacher", "model": "/models/tiny", "threshold": 0.2},
                ],
            }
        ],
        "filters": {"max_steps": 6, "grounded": True},
        "augment": {"paraphrases": 2, "reorder": True},
    }
    (tmp_path / "spec.json").write_text(json.dumps(data))
    (tmp_path / "spec.yaml").write_text(
        "seed: 3\ntasks:\n  - env_id: LLMTrainer/MultiTool-v0\n    difficulties: [2, 3]\n"
        "    count: 4\n    generators:\n      - oracle\n      - templates\n"
        "      - {name: 'llm:openai:http://127.0.0.1:8000/v1#tiny', samples: 3}\n"
        "      - {name: teacher, model: /models/tiny, threshold: 0.2}\n"
        "filters: {max_steps: 6, grounded: true}\naugment: {paraphrases: 2, reorder: true}\n"
    )
    spec = load_task_spec(data)
    assert load_task_spec(tmp_path / "spec.json") == spec == load_task_spec(tmp_path / "spec.yaml")
    [entry] = spec.tasks
    assert entry.difficulties == (2, 3)
    assert [g.kind for g in entry.generators] == ["oracle", "templates", "llm", "teacher"]
    assert entry.generators[2].backend == "openai:http://127.0.0.1:8000/v1#tiny"
    assert entry.generators[2].samples == 3
    assert entry.generators[3].model == "/models/tiny"
    assert spec.filters.max_steps == 6
    assert spec.augment.paraphrases == 2
    defaults = load_task_spec({"tasks": [{"env_id": CALCULATOR}]})
    assert defaults.seed == 0
    assert [g.name for g in defaults.tasks[0].generators] == ["oracle"]


ONE = {"env_id": CALCULATOR}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, r"^tasks: expected a non-empty list"),
        ({"tasks": [ONE], "sed": 1}, r"^sed: unknown field \(did you mean 'seed'\?\)"),
        ({"tasks": [ONE], "seed": "x"}, r"^seed: expected an integer"),
        ({"tasks": ["calc"]}, r"^tasks\[0\]: expected a mapping with an env_id"),
        ({"tasks": [{"count": 2}]}, r"^tasks\[0\].env_id: missing"),
        (
            {"tasks": [{"env_id": "LLMTrainer/Calculater-v0"}]},
            r"^tasks\[0\].env_id: Unknown env id .*Did you mean 'LLMTrainer/Calculator-v0'",
        ),
        ({"tasks": [{"env_id": "LLMTrainer/TSP-v0"}]}, r"^tasks\[0\].env_id: synthesis covers"),
        ({"tasks": [{**ONE, "difficulties": [4]}]}, r"^tasks\[0\].difficulties: .* got 4"),
        ({"tasks": [{**ONE, "difficulties": []}]}, r"^tasks\[0\].difficulties: name at least"),
        ({"tasks": [{**ONE, "count": 0}]}, r"^tasks\[0\].count: expected an integer >= 1"),
        ({"tasks": [{**ONE, "cont": 3}]}, r"^tasks\[0\].cont: unknown field \(did you mean"),
        (
            {"tasks": [{**ONE, "generators": ["orcale"]}]},
            r"^tasks\[0\].generators\[0\].name: unknown generator 'orcale' \(did you mean",
        ),
        (
            {"tasks": [{**ONE, "generators": ["oracle", "llm:transfomers:/m"]}]},
            r"^tasks\[0\].generators\[1\].name: .*unknown backend 'transfomers'",
        ),
        (
            {"tasks": [{**ONE, "generators": [{"name": "oracle", "samples": 2}]}]},
            r"^tasks\[0\].generators\[0\].samples: the oracle generator takes no options",
        ),
        (
            {"tasks": [{**ONE, "generators": [{"name": "llm:vllm:/m", "samples": 0}]}]},
            r"^tasks\[0\].generators\[0\].samples: expected an integer >= 1",
        ),
        (
            {"tasks": [{**ONE, "generators": [{"name": "llm:vllm:/m", "temperature": -1}]}]},
            r"^tasks\[0\].generators\[0\].temperature: expected a number >= 0",
        ),
        (
            {"tasks": [{**ONE, "generators": ["teacher"]}]},
            r"^tasks\[0\].generators\[0\].model: the teacher generator needs",
        ),
        (
            {"tasks": [{**ONE, "generators": ["oracle", "oracle"]}]},
            r"^tasks\[0\].generators: 'oracle' is listed twice",
        ),
        ({"tasks": [ONE], "filters": {"max_steps": 0}}, r"^filters.max_steps: expected an int"),
        (
            {"tasks": [ONE], "filters": {"min_steps": 3, "max_steps": 2}},
            r"^filters.max_steps: 2 is below min_steps=3",
        ),
        ({"tasks": [ONE], "filters": {"min_step": 1}}, r"^filters.min_step: unknown field"),
        ({"tasks": [ONE], "augment": {"paraphrases": -1}}, r"^augment.paraphrases: expected"),
        (
            {"tasks": [ONE], "augment": {"paraphrase_strength": 0}},
            r"^augment.paraphrase_strength: expected a number in \(0, 1\]",
        ),
    ],
)
def test_an_invalid_spec_is_a_config_error_naming_the_field(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_task_spec(data)


def test_a_bad_spec_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="task spec not found"):
        load_task_spec(tmp_path / "missing.yaml")
    (tmp_path / "dup.yaml").write_text("seed: 1\nseed: 2\ntasks: []\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: duplicate key 'seed'"):
        load_task_spec(tmp_path / "dup.yaml")
    (tmp_path / "bad.json").write_text("{tasks: ")
    with pytest.raises(ConfigError, match=r"bad.json: invalid JSON"):
        load_task_spec(tmp_path / "bad.json")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"list.yaml: the top level must be a mapping"):
        load_task_spec(tmp_path / "list.yaml")
    (tmp_path / "field.yaml").write_text("tasks: [{env_id: LLMTrainer/Calculator-v0, count: x}]")
    with pytest.raises(ConfigError, match=r"field.yaml: tasks\[0\].count: expected an integer"):
        load_task_spec(tmp_path / "field.yaml")


# -- the quality filters -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good() -> Example:
    return oracle_example(CALCULATOR, seed=0)


def test_every_filter_passes_an_oracle_trajectory(good: Example) -> None:
    t, task = good.trajectory, good.task
    assert parses(t) is None
    assert length_bounds(t, min_steps=2, max_steps=2, max_chars=10_000) is None
    assert reexecutes(t, task) is None
    assert answer_verified(t, task, grounded=True) is None
    assert deduplicate([t]) == [None]


def test_parses_rejects_an_unparseable_action(good: Example) -> None:
    t = good.trajectory
    bad = replace(t, steps=(replace(t.steps[0], action="let me use the calculator"), *t.steps[1:]))
    assert parses(bad) == (
        "step 0: invalid action (expected <tool_call>...</tool_call> or <answer>...</answer>)"
    )
    assert parses(replace(t, steps=t.steps[:1])) == ("step 0: ends with a tool call, not an answer")
    assert parses(replace(t, steps=(t.steps[1], t.steps[1]))) == (
        "step 0: an answer before the last step"
    )
    assert (
        parses(replace(t, error="BackendError: boom")) == "the episode failed: BackendError: boom"
    )


def test_reexecutes_rejects_a_tampered_tool_result(good: Example) -> None:
    t = good.trajectory
    tampered = replace(t, steps=(replace(t.steps[0], observation="999"), *t.steps[1:]))
    assert parses(tampered) is None  # well-formed: only the replay can tell
    assert reexecutes(tampered, good.task) == "step 0: observation differs from the env's replay"
    other = oracle_example(CALCULATOR, seed=1).task
    assert reexecutes(t, other) is not None  # another task's replay differs too
    assert "the prompt is not the task's" in (reexecutes(t, other) or "")


def test_answer_verified_rejects_a_wrong_answer_and_an_ungrounded_one(good: Example) -> None:
    actions = [s.action for s in good.trajectory.steps]
    wrong = replayed(good, [actions[0], format_answer("123456789")])
    assert reexecutes(wrong, good.task) is None  # the env reproduces it: it is just wrong
    assert answer_verified(wrong, good.task) == (
        f"answer '123456789' does not match {good.task.answer!r}"
    )
    # The right answer after a call that does not give it: a success for the env, but the
    # answer is not grounded in any tool result.
    lucky = replayed(good, [ToolCall("calculator", {"expression": "1 + 1"}).to_text(), actions[1]])
    assert lucky.success
    assert answer_verified(lucky, good.task) is None
    assert answer_verified(lucky, good.task, grounded=True) == (
        f"answer {good.task.answer!r} occurs in no tool result"
    )
    # The right answer without the required tool: the env does not count it.
    skipped = replayed(good, [actions[1]])
    assert answer_verified(skipped, good.task) == (
        "the env does not count it a success (tool_correct, exec_ok, success false)"
    )


def test_deduplicate_rejects_every_copy_after_the_first(good: Example) -> None:
    t = good.trajectory
    copy = replace(t, seed=t.seed + 1, source="other")  # same content, other metadata
    other = oracle_example(CALCULATOR, seed=1).trajectory
    first = f"duplicate of {trajectory_hash(t)}"
    assert deduplicate([t, other, copy, t]) == [None, None, first, first]
    seen: dict[str, str] = {}
    assert deduplicate([t], seen) == [None]
    assert deduplicate([copy], seen) == [first]  # the state carries across calls


def test_length_bounds_reject_too_long_and_too_short(good: Example) -> None:
    t = good.trajectory
    chars = len(t.prompt) + sum(len(s.action) + len(s.observation) for s in t.steps)
    assert length_bounds(t, max_steps=1) == "2 steps > max_steps=1"
    assert length_bounds(t, min_steps=3) == "2 steps < min_steps=3"
    assert length_bounds(t, max_chars=chars - 1) == f"{chars} characters > max_chars={chars - 1}"
    assert length_bounds(t, max_chars=chars) is None


# -- augmentation --------------------------------------------------------------------------------


def test_paraphrased_questions_keep_their_entities_and_replay_valid() -> None:
    rng = np.random.default_rng(0)
    changed = 0
    for env_id in ("LLMTrainer/Calculator-v0", "LLMTrainer/Weather-v0", "LLMTrainer/Search-v0"):
        for seed in range(4):
            example = oracle_example(env_id, seed, difficulty=1 + seed % 3)
            made = paraphrase_question(example, rng, strength=1.0)
            if made is None:
                continue
            changed += 1
            t = made.trajectory
            assert t.prompt == made.task.prompt != example.task.prompt
            assert made.task._replace(prompt=example.task.prompt) == example.task
            for call in example.task.plan:
                for value in call.arguments.values():
                    if isinstance(value, str) and value in example.task.prompt:
                        assert value in t.prompt
            assert [s.action for s in t.steps] == [s.action for s in example.trajectory.steps]
            assert t.success
            assert t.seed == made.task.world_seed
            assert validate_trajectory(t, made.task) == []
            assert validate_trajectory(t) == []  # checkable without its task, too
    assert changed >= 8


def test_reordered_calls_respect_dependencies_and_replay_valid() -> None:
    seen_orders = set()
    for seed in range(12):
        example = oracle_example(MULTITOOL, seed, difficulty=3)
        plan = example.task.plan  # search, weather(birthplace), weather(other), calculator
        made = reorder_independent_calls(example, np.random.default_rng(seed))
        assert made is not None
        t = made.trajectory
        calls = [
            a for a in map(parse_action, (s.action for s in t.steps)) if isinstance(a, ToolCall)
        ]
        assert len(calls) == len(t.steps) - 1
        assert sorted(c.to_text() for c in calls) == sorted(c.to_text() for c in plan)
        assert calls != list(plan)
        position = {c.to_text(): i for i, c in enumerate(calls)}
        assert position[plan[0].to_text()] < position[plan[1].to_text()]  # needs the search
        assert position[plan[3].to_text()] == 3  # the calculator needs both temperatures
        assert isinstance(parse_action(t.steps[-1].action), AnswerAction)
        assert t.source == "oracle+reorder"
        assert validate_trajectory(t, made.task) == []
        assert validate_trajectory(t) == []
        seen_orders.add(tuple(position[c.to_text()] for c in plan))
    assert len(seen_orders) == 2  # both orders the dependencies allow


def test_a_trajectory_with_no_independent_calls_is_not_reordered() -> None:
    single = oracle_example(CALCULATOR, 0)
    assert reorder_independent_calls(single, np.random.default_rng(0)) is None
    calls = [
        ToolCall("search", {"query": "Ana"}),
        ToolCall("weather", {"city": "Lisbon", "date": "2026-01-01"}),
    ]
    deps = call_dependencies("Where was Ana born, and how warm is it there?", calls,
                             ["Ana was born in Lisbon.", '{"temperature_c": 14}'])  # fmt: skip
    assert deps == [frozenset(), frozenset({0})]


# -- synthesis end to end ------------------------------------------------------------------------

E2E = {
    "name": "e2e",
    "seed": 5,
    "tasks": [
        {"env_id": CALCULATOR, "difficulties": [1, 2], "count": 3,
         "generators": ["oracle", "templates"]},
        {"env_id": MULTITOOL, "difficulties": [2, 3], "count": 3},
    ],
    "filters": {"max_steps": 4},  # MultiTool's difficulty 3 takes 5: rejected by length
    "augment": {"paraphrases": 1, "reorder": True},
}  # fmt: skip


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, TrajectoryStore]:
    store = TrajectoryStore(tmp_path_factory.mktemp("synth") / "trajectories.db")
    return synthesize(E2E, store=store, log=None), store


def test_oracle_synthesis_stores_kept_and_rejected_with_hashes_and_lineage(
    stored: tuple[Any, TrajectoryStore],
) -> None:
    result, store = stored
    stats = result.stats()
    assert stats["by_generator"]["oracle"] == {"candidates": 12, "kept": 9}
    assert stats["by_generator"]["templates"] == {"candidates": 3, "kept": 3}
    assert stats["rejected_by_filter"] == {"length_bounds": 3}
    assert stats["by_generator"]["oracle+reorder"]["kept"] == 3  # MultiTool difficulty 2
    assert result.kept_dataset is not None
    assert result.rejected_dataset is not None

    kept = load_synthesized(store, result.kept_dataset)
    assert [t for t, _ in kept] == result.trajectories
    hashes = {note["hash"] for _, note in kept}
    for t, note in kept:
        assert note["hash"] == trajectory_hash(t)
        assert note["kept"] is True
        assert note["filter"] is None
        assert t.source.startswith("synthetic:")
        assert validate_trajectory(t) == []  # stored trajectories check out without tasks
        if note["augmentation"] is None:
            assert note["parent"] is None
        else:
            assert note["parent"] in hashes  # lineage: the kept original it came from
            assert t.source.endswith(f"+{note['augmentation']}")
    augmented = [note["augmentation"] for _, note in kept if note["augmentation"]]
    assert set(augmented) == {"paraphrase", "reorder"}

    rejected = load_synthesized(store, result.rejected_dataset)
    assert len(rejected) == 3
    for t, note in rejected:
        assert note["kept"] is False
        assert note["filter"] == "length_bounds"
        assert note["reason"] == "5 steps > max_steps=4"
        assert t.difficulty == 3

    info = store.info(result.kept_dataset)
    assert info.name == "e2e"
    assert store.info(result.rejected_dataset).name == "e2e-rejected"
    assert info.provenance.strategy == "synthetic"
    assert info.provenance.env_ids == (CALCULATOR, MULTITOOL)
    assert info.provenance.agent == "oracle,templates"
    assert load_task_spec(info.provenance.config) == load_task_spec(E2E)


def test_every_kept_trajectory_is_valid_against_its_task(
    stored: tuple[Any, TrajectoryStore],
) -> None:
    result, _ = stored
    for item in result.kept:
        assert validate_trajectory(item.trajectory, item.task) == []
    env_drawn = [s for s in result.items if s.generator == "oracle" and s.augmentation is None]
    spec = load_task_spec(E2E)
    expected = [seed for d in (1, 2) for seed in task_seeds(spec, 0, d)] + [
        seed for d in (2, 3) for seed in task_seeds(spec, 1, d)
    ]
    assert [s.trajectory.seed for s in env_drawn] == expected


def test_the_same_seed_gives_the_same_synthesis_and_another_seed_does_not(
    stored: tuple[Any, TrajectoryStore], tmp_path: Path
) -> None:
    result, _ = stored
    again = synthesize(E2E, store=TrajectoryStore(tmp_path / "again.db"), log=None)
    assert [(s.hash, s.decision, s.parent) for s in again.items] == [
        (s.hash, s.decision, s.parent) for s in result.items
    ]
    assert (again.kept_dataset, again.rejected_dataset) == (
        result.kept_dataset,
        result.rejected_dataset,
    )
    other = synthesize({**E2E, "seed": 6}, log=None)
    assert {s.hash for s in other.items}.isdisjoint({s.hash for s in result.items})


def test_store_annotations_are_optional_and_old_stores_open(tmp_path: Path, good: Example) -> None:
    path = tmp_path / "store.db"
    store = TrajectoryStore(path)
    info = store.add("plain", [good.trajectory])
    assert store.annotations(info.id) == []
    with pytest.raises(ValueError, match="2 annotations for 1 trajectories"):
        store.add("plain", [good.trajectory], annotations=[{}, {}])
    assert store.add("plain", [good.trajectory], annotations=[{"a": 1}]).id == info.id
    assert store.annotations(info.id) == [{"a": 1}]
    with sqlite3.connect(path) as db:  # a store written before annotations existed
        db.execute("DROP TABLE annotations")
    reopened = TrajectoryStore(path)
    assert reopened.load(info.id) == [good.trajectory]
    assert reopened.annotations(info.id) == []


# -- LLM generators ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = create_tiny_model(tmp_path_factory.mktemp("tiny"), SMALL)
    yield path
    close_shared_backends()


def test_an_untrained_llm_keeps_nothing_and_each_rejection_says_why(tiny_dir: Path) -> None:
    spec = {
        "seed": 1,
        "tasks": [
            {
                "env_id": CALCULATOR,
                "count": 2,
                "generators": [
                    {"name": f"llm:transformers:{tiny_dir}", "samples": 2, "max_new_tokens": 8}
                ],
            }
        ],
    }
    result = synthesize(spec, log=None)
    assert len(result.items) == 4  # 2 tasks x 2 samples
    assert not result.kept
    for item in result.rejected:
        assert item.decision.filter in FILTERS
        assert item.decision.reason
        assert item.trajectory.source == "synthetic:llm"
        assert item.trajectory.steps[0].completion_token_ids  # token-faithful records
    assert len({s.hash for s in result.items}) == 4  # each sample is its own
    again = synthesize(spec, log=None)
    assert [s.hash for s in again.items] == [s.hash for s in result.items]


def test_teacher_calls_are_judged_against_the_template_task(tiny_dir: Path) -> None:
    spec = {
        "tasks": [
            {
                "env_id": MULTITOOL,
                "count": 6,
                "generators": [{"name": "teacher", "model": str(tiny_dir), "threshold": -1e9}],
            }
        ],
        "filters": {"grounded": True},
    }
    result = synthesize(spec, log=None)
    assert result.items  # threshold -1e9 keeps a call per question that executed
    for item in result.items:
        assert item.trajectory.env_id == MULTITOOL
        assert item.generator == "teacher"
        if item.decision.kept:
            assert validate_trajectory(item.trajectory, item.task, grounded=True) == []
        else:
            assert item.decision.filter == "answer_verified"


class ScriptedBackend(Backend):
    """Answers like an LLM that is right two steps in three: the oracle's next action for the
    task (looked up by prompt), else garbage or a wrong answer (chosen by the call's seed)."""

    kind = "scripted"

    def __init__(self, spec: str, plans: dict[str, list[str]]) -> None:
        self.spec = spec
        self.plans = plans

    def generate(self, prompts: Sequence[Any], params: SamplingConfig) -> list[list[Generation]]:
        raise NotImplementedError("chat only")

    def chat(self, prompts: Sequence[ChatPrompt], params: SamplingConfig) -> list[list[Generation]]:
        out = []
        for i, prompt in enumerate(prompts):
            task = next(m["content"] for m in prompt.messages if m["role"] == "user")
            step = sum(m["role"] == "assistant" for m in prompt.messages)
            plan = self.plans[task]
            mode = ((params.seed or 0) + i) % 3
            if mode < 2:
                text = plan[min(step, len(plan) - 1)]
            else:
                text = "hmm, not sure" if step == 0 else format_answer("-987654321")
            out.append([Generation(text, (), (), (), "stop")])
        return out

    def count_tokens(self, prompt: ChatPrompt) -> int:
        return sum(len(str(m.get("content", ""))) for m in prompt.messages)


def test_llm_samples_are_kept_exactly_when_the_env_verifies_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = {
        "seed": 2,
        "tasks": [
            {
                "env_id": CALCULATOR,
                "difficulties": [1, 2],
                "count": 3,
                "generators": [{"name": "llm:scripted:plans", "samples": 3, "batch_size": 4}],
            }
        ],
    }
    plans: dict[str, list[str]] = {}
    monkeypatch.setitem(
        BACKENDS, "scripted", lambda spec, target, options: ScriptedBackend(spec, plans)
    )
    spec = load_task_spec(data)
    for difficulty in (1, 2):
        for seed in task_seeds(spec, 0, difficulty):
            task = oracle_example(CALCULATOR, seed, difficulty).task
            plans[task.prompt] = solution_actions(task)
    try:
        result = synthesize(spec, log=None)
    finally:
        close_shared_backends()
    assert len(result.items) == 18
    assert result.kept
    assert result.rejected
    firsts: set[str] = set()
    for item in result.items:
        t = item.trajectory
        verified = t.success and validate_trajectory(t, item.task) == []
        if item.decision.kept:
            assert verified
            firsts.add(item.hash)
        elif verified:  # a right sample is dropped only as a copy of an earlier one
            assert item.decision.filter == "deduplicate"
        else:
            assert item.decision.filter in ("parses", "answer_verified")
    reasons = {s.decision.filter for s in result.rejected}
    assert "parses" in reasons


# -- the CLI -------------------------------------------------------------------------------------


def test_the_synthesize_command_writes_the_run_directory(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "tasks:\n  - env_id: LLMTrainer/Weather-v0\n    difficulties: [3]\n    count: 2\n"
        "augment: {reorder: true}\n"
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["synthesize", str(spec), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["kept"] == 4  # 2 oracle trajectories and their reordered copies
    assert summary == json.loads((out / "synthesis.json").read_text())
    lines = (out / "synthetic.jsonl").read_text().splitlines()
    assert [Trajectory.from_json(line) for line in lines] == TrajectoryStore(
        out / "trajectories.db"
    ).load(summary["kept_dataset"])
    spec.write_text("tasks: [{env_id: LLMTrainer/Wether-v0}]\n")
    failed = CliRunner().invoke(app, ["synthesize", str(spec), "--out", str(out)])
    assert failed.exit_code == 2
    assert "tasks[0].env_id: Unknown env id 'LLMTrainer/Wether-v0'" in failed.output


def test_a_synthesized_record_round_trips_its_annotation(
    stored: tuple[Any, TrajectoryStore],
) -> None:
    result, _ = stored
    item: Synthesized = result.kept[0]
    note = item.annotation()
    assert note == {
        "hash": item.hash,
        "generator": "oracle",
        "augmentation": None,
        "parent": None,
        "task_answer": item.task.answer,
        "kept": True,
        "filter": None,
        "reason": None,
    }
    assert isinstance(item.task, Task)
    assert isinstance(result.spec, TaskSpec)


# -- the data section ----------------------------------------------------------------------------


def test_the_synthetic_data_strategy_trains_on_the_kept_trajectories(tmp_path: Path) -> None:
    from llm_trainer.algorithms.base import AlgorithmContext
    from llm_trainer.algorithms.config import ExperimentConfig
    from llm_trainer.core.config import load_config
    from llm_trainer.core.rundir import RunDir

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "tasks:\n  - env_id: LLMTrainer/Search-v0\n    difficulties: [1, 2]\n    count: 3\n"
        "    generators: [oracle, templates]\naugment: {paraphrases: 1}\n"
    )
    with pytest.raises(ConfigError, match=r"data.synthesis_spec: the synthetic strategy needs"):
        load_config(ExperimentConfig, overrides=["data.strategy=synthetic"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [{env_id: LLMTrainer/Serch-v0}]\n")
    with pytest.raises(ConfigError, match=r"data.synthesis_spec: .*tasks\[0\].env_id: Unknown"):
        load_config(
            ExperimentConfig, overrides=["data.strategy=synthetic", f"data.synthesis_spec={bad}"]
        )
    config = load_config(
        ExperimentConfig,
        overrides=[
            "data.strategy=synthetic",
            f"data.synthesis_spec={spec}",
            f"output_dir={tmp_path}",
        ],
    )
    context = AlgorithmContext(config, RunDir(tmp_path / "run"))
    data, version = context.training_data()
    expected = synthesize(spec, log=None)
    assert data == expected.trajectories
    notes = context.store.annotations(version)  # the train set is the annotated kept dataset
    assert [n["hash"] for n in notes] == [s.hash for s in expected.kept]
    assert context.store.info(version).name == "synthetic"
    assert context.store.info(version).provenance.strategy == "synthetic"
