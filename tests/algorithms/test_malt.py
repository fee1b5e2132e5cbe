"""MALT data generation (``algorithms/malt.py``): the tree, value iteration, sibling pairs, the
seed's three files, the LLM evaluator's parser, determinism and the registered algorithm."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import llm_trainer
from llm_trainer.agents.tinylm import TinyLMConfig
from llm_trainer.algorithms.config import ModelConfig
from llm_trainer.algorithms.malt import (
    ROLES,
    LLMEvaluator,
    MALTData,
    MALTSettings,
    NodePath,
    TrainingDataGenerator,
    check_training_file,
    node_values,
    parse_evaluation,
    sibling_pairs,
)
from llm_trainer.algorithms.models import load_model
from llm_trainer.cli import app
from llm_trainer.core.errors import BackendError, BatchActError, ConfigError
from llm_trainer.core.store import TrajectoryStore

ROOT = Path(__file__).resolve().parents[2]
#: A tiny model small enough that a tree of 2 problems with n = 2 takes well under a second.
SMALL = TinyLMConfig(n_layers=1, hidden_size=64, n_heads=2, intermediate_size=128)
SEEDS = (0, 1)
#: The final answers (g, v, r) the scripted refiner gets right in the hand-computed tree.
RIGHT = frozenset({(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 1, 1)})


class ScriptedTeam:
    """Every role of a MALT team, scripted by the branch being sampled (``malt_path``): the
    generator writes ``Solution G<g>``, the verifier ``Critique V<g><v>``, and the refiner
    answers right exactly on the paths of ``right``."""

    def __init__(self, seeds: Sequence[int], right: frozenset[NodePath] = RIGHT) -> None:
        env = llm_trainer.make_multiagent("LLMTrainer/MALT-v0")
        self.answers: dict[str, str] = {}
        for seed in seeds:
            env.reset(seed=seed)
            self.answers[env.unwrapped.task.statement] = env.unwrapped.task.answer
        self.right = right
        self.calls: list[tuple[str, int]] = []

    def reset(self, *, seed: int | None = None) -> None:
        """Nothing to reset."""

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        self.calls.append((str(infos[0]["agent"]), len(observations)))
        return [self._act(o, i) for o, i in zip(observations, infos, strict=True)]

    def _act(self, observation: str, info: Mapping[str, Any]) -> str:
        path = tuple(info["malt_path"])
        if info["agent"] == "generator":
            return f"Solution G{path[0]}."
        if info["agent"] == "verifier":
            return f"Critique V{path[0]}{path[1]}."
        answer = next(
            a for q, a in self.answers.items() if observation.startswith(f"Question:\n{q}")
        )
        return f"<answer>{answer if path in self.right else 'nobody'}</answer>"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """A freshly initialised small tiny model and its tokenizer (the real LLM path)."""
    return load_model(ModelConfig(tiny=SMALL), tmp_path_factory.mktemp("tiny"), seed=0)


def _scripted_data(threshold: float = 0.5, **kwargs: Any) -> MALTData:
    team = ScriptedTeam(SEEDS[:1])
    generator = TrainingDataGenerator(team, branching_factor=2, threshold=threshold, **kwargs)
    return generator.generate(SEEDS[:1])


def test_the_tree_has_n_plus_n2_plus_n3_generations_and_n3_leaves_per_question(
    tiny: tuple[Any, Any],
) -> None:
    n = 2
    generator = TrainingDataGenerator(tiny, branching_factor=n, max_new_tokens=8, seed=0)
    data = generator.generate(SEEDS)
    assert len(data.trees) == len(SEEDS)
    assert dict(data.stats.generations) == {
        "generator": 2 * n,
        "verifier": 2 * n**2,
        "refiner": 2 * n**3,
    }
    summary = data.summary()
    assert summary["generations_per_question"] == n + n**2 + n**3
    assert summary["leaves"] == 2 * n**3
    assert summary["completion_tokens"] > 0
    assert summary["tokens_per_second"] > 0
    assert summary["questions_per_minute"] > 0
    for tree in data.trees:
        assert len(tree.nodes) == n + n**2 + n**3
        assert [len(tree.role_nodes(r)) for r in ROLES] == [n, n**2, n**3]
        assert len({node.path for node in tree.nodes}) == len(tree.nodes)
        for node in tree.nodes:
            # each branch was sampled from its parent's snapshot: it saw its parent's text
            if node.role != "generator":
                parent = tree.node(node.path[:-1])
                assert node.observation.startswith(f"Question:\n{tree.question}")
                assert (parent.text.strip() or "(none)") in node.observation
            # token-faithful: the generation behind the text is kept
            assert node.generation is not None
            assert node.generation.text == node.text
            assert 0 < len(node.generation.token_ids) <= 8
    step = data.trajectories("refiner")[0].steps[0]
    leaf = data.trees[0].role_nodes("refiner")[0].generation
    assert leaf is not None
    assert (step.completion_token_ids, step.logprobs) == (leaf.token_ids, leaf.logprobs)


def test_one_batched_call_per_tree_level_across_questions() -> None:
    team = ScriptedTeam(SEEDS)
    TrainingDataGenerator(team, branching_factor=3, batch_questions=8).generate(SEEDS)
    assert team.calls == [("generator", 6), ("verifier", 18), ("refiner", 54)]


def test_value_iteration_and_pairs_on_a_hand_computed_tree() -> None:
    data = _scripted_data()
    [tree] = data.trees
    values = {node.path: node.value for node in tree.nodes}
    # leaves: right answers score 1, wrong ones 0
    assert {p: v for p, v in values.items() if len(p) == 3} == {
        (a, b, c): float((a, b, c) in RIGHT) for a in range(2) for b in range(2) for c in range(2)
    }
    # a verifier output: the mean of its refinements; a generator output: of its subtree
    assert {p: v for p, v in values.items() if len(p) == 2} == {
        (0, 0): 1.0,
        (0, 1): 0.5,
        (1, 0): 0.0,
        (1, 1): 0.5,
    }
    assert values[(0,)] == 0.75
    assert values[(1,)] == 0.25
    labels = {node.path: node.label for node in tree.nodes if len(node.path) < 3}
    assert labels == {
        (0,): True,
        (1,): False,
        (0, 0): True,
        (0, 1): True,
        (1, 0): False,
        (1, 1): True,
    }
    # pairs: a positive and a negative sibling of one parent
    assert [(c, r) for _, c, r in data.pair_paths("generator")] == [((0,), (1,))]
    assert [(c, r) for _, c, r in data.pair_paths("verifier")] == [((1, 1), (1, 0))]
    assert [(c, r) for _, c, r in data.pair_paths("refiner")] == [
        ((0, 1, 0), (0, 1, 1)),
        ((1, 1, 1), (1, 1, 0)),
    ]
    roles = data.summary()["roles"]
    assert {
        r: (roles[r]["parents"], roles[r]["parents_with_both_signs"], roles[r]["pairs"])
        for r in ROLES
    } == {
        "generator": (1, 1, 1),
        "verifier": (2, 1, 1),
        "refiner": (4, 2, 2),
    }
    assert [roles[r]["pair_yield"] for r in ROLES] == [1.0, 0.5, 0.5]
    # the SFT sets are the positive branches, as trajectories SFTTrainer keeps (success)
    assert [len(data.sft(r)) for r in ROLES] == [1, 3, 4]
    assert [t.prompt for t in data.sft("generator")] == [tree.node((0,)).observation]
    assert data.sft("verifier")[0].steps[0].action == "Critique V00."
    assert all(t.steps[0].reward == values[(0,)] for t in data.sft("generator"))
    # the DPO pairs in dpo.py's format: one prompt (the parent's), chosen and rejected
    [pair, _] = data.dpo("refiner")
    assert (
        pair.prompt[1]["content"]
        == tree.node((0, 1, 0)).observation
        == tree.node((0, 1, 1)).observation
    )
    assert (pair.chosen, pair.rejected) == (
        f"<answer>{tree.ground_truth}</answer>",
        "<answer>nobody</answer>",
    )
    assert pair.prompt[0]["content"] == tree.system_prompts["refiner"]
    # the threshold binarises: at 0.75, V01 and V11 (0.5) turn negative: V01 pairs with V00,
    # and G1 has no positive child left
    stricter = _scripted_data(threshold=0.75)
    assert [(c, r) for _, c, r in stricter.pair_paths("verifier")] == [((0, 0), (0, 1))]
    assert [(c, r) for _, c, r in stricter.pair_paths("generator")] == [((0,), (1,))]


@st.composite
def _trees(draw: st.DrawFn) -> tuple[dict[NodePath, float], float, int | None]:
    n = draw(st.integers(1, 4))
    rewards = draw(
        st.lists(
            st.sampled_from([0.0, 0.25, 0.5, 1.0]) | st.floats(0, 1), min_size=n**3, max_size=n**3
        )
    )
    leaves = {
        (a, b, c): rewards[(a * n + b) * n + c]
        for a in range(n)
        for b in range(n)
        for c in range(n)
    }
    return leaves, draw(st.floats(0.01, 1.0)), draw(st.none() | st.integers(1, 4))


@given(_trees())
def test_dpo_pairs_never_pair_across_parents(
    case: tuple[dict[NodePath, float], float, int | None],
) -> None:
    leaves, threshold, cap = case
    values = node_values(leaves)
    for path, value in values.items():
        below = [r for p, r in leaves.items() if p[: len(path)] == path]
        assert value == pytest.approx(sum(below) / len(below))
    for depth in (1, 2, 3):
        level = {p: v for p, v in values.items() if len(p) == depth}
        pairs = sibling_pairs(level, threshold, max_per_parent=cap)
        per_parent: dict[NodePath, int] = {}
        for chosen, rejected in pairs:
            assert chosen[:-1] == rejected[:-1]  # the same parent, always
            assert level[chosen] >= threshold > level[rejected]
            per_parent[chosen[:-1]] = per_parent.get(chosen[:-1], 0) + 1
        mixed = {
            p[:-1]
            for p in level
            if {level[q] >= threshold for q in level if q[:-1] == p[:-1]} == {True, False}
        }
        assert set(per_parent) == mixed
        if cap is not None:
            assert max(per_parent.values(), default=0) <= cap
        else:
            assert len(pairs) == sum(
                sum(level[q] >= threshold for q in level if q[:-1] == p)
                * sum(level[q] < threshold for q in level if q[:-1] == p)
                for p in mixed
            )


def test_the_three_files_have_the_seeds_shape(tmp_path: Path) -> None:
    data = _scripted_data()
    paths = data.write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{r}_training.json" for r in ROLES] + [f"{r}_dpo_pairs.jsonl" for r in ROLES]
    )
    for role, count in zip(ROLES, (2, 4, 8), strict=True):
        document = json.loads(paths[f"{role}_training"].read_text())
        check_training_file(document)
        assert set(document["metadata"]) >= {"timestamp", "model", "total_examples"}
        assert document["metadata"]["total_examples"] == count
        assert document["metadata"]["model"] == "ScriptedTeam"
        example = document["examples"][0]
        assert set(example) >= {"question", "solution", "score", "evaluation"}
        assert set(example["evaluation"]) >= {
            "correctness_score",
            "reasoning_score",
            "explanation",
            "key_matches",
        }
        assert example["question"] == data.trees[0].question
        rows = [json.loads(line) for line in paths[f"{role}_dpo_pairs"].read_text().splitlines()]
        assert len(rows) == len(data.dpo(role))
        assert all(set(row) == {"prompt", "chosen", "rejected", "tools"} for row in rows)
    refiner = json.loads(paths["refiner_training"].read_text())["examples"]
    assert [e["score"] for e in refiner] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert refiner[0]["evaluation"]["key_matches"] == ["correct"]
    assert refiner[0]["parent_id"] == f"{SEEDS[0]}/0.0"
    for broken in (
        {"metadata": {"timestamp": "t", "model": "m", "total_examples": 1}, "examples": []},
        {
            "metadata": {"timestamp": "t", "model": "m", "total_examples": 1},
            "examples": [{"question": "q", "solution": "s", "score": 2, "evaluation": {}}],
        },
        {"examples": []},
    ):
        with pytest.raises(ValueError, match="not a MALT training file"):
            check_training_file(broken)


@pytest.mark.parametrize(
    ("text", "correctness", "reasoning", "source"),
    [
        (
            '{"correctness_score": 0.9, "reasoning_score": 0.8, "explanation": ["ok"], '
            '"key_matches": ["5"]}',
            0.9,
            0.8,
            "llm",
        ),
        (
            'Here you go:\n```json\n{"correctness_score": "1", "reasoning_score": "75%"}\n```',
            1.0,
            0.75,
            "llm",
        ),
        ('{"evaluation": {"correctness_score": true, "reasoning_score": false}}', 1.0, 0.0, "llm"),
        ("correctness_score: 8/10\nreasoning score = 0.5\nexplanation: close", 0.8, 0.5, "llm"),
        ('{"correctness_score": 7, "reasoning_score": 85}', 0.7, 0.85, "llm"),
        ('{"correctness_score": 0.9', 0.9, 0.0, "llm"),  # truncated JSON: the key-value reading
        ("I cannot grade this.", 0.0, 0.0, "fallback"),
        ('{"correctness_score": "high"}', 0.0, 0.0, "fallback"),
        ("[" * 5000 + "{" * 5000, 0.0, 0.0, "fallback"),
        ("", 0.0, 0.0, "fallback"),
    ],
)
def test_the_evaluator_parser_reads_good_output_and_falls_back_on_bad(
    text: str, correctness: float, reasoning: float, source: str
) -> None:
    evaluation = parse_evaluation(text)
    assert evaluation.source == source
    assert evaluation.correctness_score == pytest.approx(correctness)
    assert evaluation.reasoning_score == pytest.approx(reasoning)
    if source == "fallback":
        assert not evaluation.parsed
        assert evaluation.explanation
        assert "correctness_score" in evaluation.explanation[0]


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["correctness_score", "reasoning_score", "explanation", "key_matches", "x"]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=12,
)


@given(
    st.text(max_size=300) | _JSONISH.map(lambda v: json.dumps(v) if not isinstance(v, str) else v)
)
def test_the_evaluator_parser_never_raises(text: str) -> None:
    evaluation = parse_evaluation(text)
    for score in (evaluation.correctness_score, evaluation.reasoning_score):
        assert 0.0 <= score <= 1.0
    assert all(isinstance(s, str) for s in (*evaluation.explanation, *evaluation.key_matches))
    json.dumps(evaluation.to_dict())


def test_the_llm_evaluator_never_crashes_and_unreadable_replies_fall_back_to_the_checker(
    tiny: tuple[Any, Any],
) -> None:
    from llm_trainer.agents.backends.transformers_backend import TransformersBackend

    model, tokenizer = tiny
    evaluator = LLMEvaluator(
        TransformersBackend(model, tokenizer),
        max_new_tokens=8,
        prompt="Q: {question} A: {answer} ({ground_truth})",
    )
    assert evaluator.sampling.temperature == 0.1
    team = ScriptedTeam(SEEDS[:1])
    data = TrainingDataGenerator(
        team, branching_factor=2, use_llm_eval=True, evaluator=evaluator
    ).generate(SEEDS[:1])
    assert data.reward == "llm_evaluator"
    summary = data.summary()
    assert summary["evaluator_fallbacks"] == 8  # a fresh model writes no JSON
    leaf = data.trees[0].node((0, 0, 0))
    assert leaf.evaluation.explanation[0].startswith("LLM evaluator output unreadable")
    assert leaf.value == 1.0  # the checker's score: the scripted answer is right
    assert data.stats.evaluator_tokens > 0

    # a readable reply is the reward: an evaluator that always says 0.25
    class Quarter:
        spec = "quarter"

        def chat(self, prompts: Sequence[Any], params: Any) -> list[list[Any]]:
            from llm_trainer.core.records import Generation

            reply = '{"correctness_score": 0.25, "reasoning_score": 1, "explanation": "meh"}'
            return [[Generation(reply, (), (), (), "eos")] for _ in prompts]

    graded = TrainingDataGenerator(
        team,
        branching_factor=2,
        use_llm_eval=True,
        evaluator=LLMEvaluator(Quarter()),  # type: ignore[arg-type]
    ).generate(SEEDS[:1])
    assert {n.value for n in graded.trees[0].nodes} == {0.25}
    assert graded.trees[0].node((1, 1, 1)).evaluation.explanation == ("meh",)

    class Broken(Quarter):
        def chat(self, prompts: Sequence[Any], params: Any) -> list[list[Any]]:
            raise BackendError("quarter: down")

    assert LLMEvaluator(Broken()).evaluate_answer("q", "a", "a").source == "fallback"  # type: ignore[arg-type]


def test_use_llm_eval_without_an_evaluator_needs_one_shared_llm() -> None:
    team = ScriptedTeam(SEEDS[:1])
    with pytest.raises(ConfigError, match="use_llm_eval needs an evaluator"):
        TrainingDataGenerator(team, use_llm_eval=True)
    with pytest.raises(ConfigError, match="missing"):
        TrainingDataGenerator({"generator": team, "verifier": team})


def test_a_failed_slot_leaves_an_empty_branch_and_its_siblings_go_on() -> None:
    class Flaky(ScriptedTeam):
        def act_batch(
            self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
        ) -> list[str]:
            actions: list[str | None] = list(super().act_batch(observations, infos))
            if infos[0]["agent"] != "verifier":
                return [a or "" for a in actions]
            actions[0] = None
            raise BatchActError("flaky", actions=actions, errors={0: BackendError("flaky: slot 0")})

    data = TrainingDataGenerator(Flaky(SEEDS[:1]), branching_factor=2).generate(SEEDS[:1])
    failed = data.trees[0].node((0, 0))
    assert (failed.text, failed.error, failed.valid) == ("", "flaky: slot 0", False)
    assert data.trees[0].node((0, 1)).text == "Critique V01."
    assert len(data.trees[0].nodes) == 14


def test_the_same_seed_gives_the_same_files(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    def files(seed: int, out: Path) -> dict[str, Any]:
        generator = TrainingDataGenerator(
            tiny, branching_factor=2, temperature=1.0, max_new_tokens=6, seed=seed
        )
        generator.generate_and_evaluate(SEEDS, out)
        loaded = {}
        for path in sorted(out.iterdir()):
            text = path.read_text()
            if path.suffix == ".json":
                document = json.loads(text)
                del document["metadata"]["timestamp"]
                loaded[path.name] = document
            else:
                loaded[path.name] = text
        return loaded

    first, again, other = (
        files(0, tmp_path / "a"),
        files(0, tmp_path / "b"),
        files(1, tmp_path / "c"),
    )
    assert first == again
    assert first != other


def test_malt_settings_reject_bad_values_by_name() -> None:
    with pytest.raises(
        ConfigError, match=r"malt.family: unknown family 'reasonin' \(did you mean 'reasoning'\?\)"
    ):
        MALTSettings(family="reasonin")
    with pytest.raises(ConfigError, match=r"malt.branching_factor must be >= 1"):
        MALTSettings(branching_factor=0)
    with pytest.raises(ConfigError, match=r"malt.role_models: unknown role 'refinr'"):
        MALTSettings(role_models={"refinr": "transformers:x"})
    with pytest.raises(ConfigError, match=r"malt.evaluator: unknown backend 'vlm'"):
        MALTSettings(evaluator="vlm:x")


def test_malt_runs_end_to_end_through_llm_trainer_train(tmp_path: Path) -> None:
    args = ["train", "--config", str(ROOT / "configs" / "malt.yaml"), "--json"]
    for override in (
        f"output_dir={tmp_path}",
        "model.tiny.n_layers=1",
        "model.tiny.hidden_size=64",
        "model.tiny.n_heads=2",
        "model.tiny.intermediate_size=128",
        "malt.questions=2",
        "malt.branching_factor=2",
        "malt.max_new_tokens=8",
    ):
        args += ["--set", override]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(
        next(line for line in reversed(result.output.splitlines()) if line.startswith("{"))
    )
    assert summary["algorithm"] == "malt"
    malt = summary["malt"]
    assert (malt["questions"], malt["generations"], malt["leaves"]) == (2, 28, 16)
    assert set(malt["roles"]) == set(ROLES)
    run = Path(summary["run_dir"])
    for role in ROLES:
        document = json.loads((run / f"{role}_training.json").read_text())
        check_training_file(document)
        assert document["metadata"]["model"] == str(run / "init_model")
        stored = TrajectoryStore(run / "trajectories.db").load(summary["dataset_versions"][role])
        assert len(stored) == document["metadata"]["total_examples"]
        assert [t.steps[0].action for t in stored] == [e["solution"] for e in document["examples"]]
        assert summary[f"{role}_training"] == str(run / f"{role}_training.json")


def _role_context(tmp_path: Path, **lora: Any) -> Any:
    from llm_trainer.algorithms.base import AlgorithmContext
    from llm_trainer.algorithms.config import ExperimentConfig, LoRAConfig, TrainConfig
    from llm_trainer.core.rundir import RunDir

    train = TrainConfig(batch_size=4, warmup_steps=0, lora=LoRAConfig(**lora))
    experiment = ExperimentConfig(name="malt", algorithm="malt", train=train)
    return AlgorithmContext(experiment, RunDir(tmp_path / "run"), log=lambda message: None)


def test_sft_then_dpo_per_role_trains_one_model_per_role_and_saves_a_team_bench_loads(
    tiny: tuple[Any, Any], tmp_path: Path
) -> None:
    pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM

    from llm_trainer.agents.factory import make_agent
    from llm_trainer.agents.team import MALTTeam
    from llm_trainer.algorithms.malt import train_roles

    model, tokenizer = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = _scripted_data()
    assert all(data.sft(r) for r in ROLES)
    assert all(data.dpo(r) for r in ("generator", "verifier"))
    context = _role_context(tmp_path)
    saved = train_roles(context, model, tokenizer, data, 2, dpo_steps=2, votes=3)
    assert set(saved) == {"team"} | {f"{r}_model" for r in ROLES}
    for role in ROLES:
        trained = AutoModelForCausalLM.from_pretrained(saved[f"{role}_model"])
        changed = any(
            not v.equal(before[k]) for k, v in trained.state_dict().items() if k in before
        )
        assert changed, role
        assert (context.run.path / "roles" / role / "sft").is_dir()
    # DPO ran for exactly the roles with sibling pairs
    dpo_roles = {r for r in ROLES if data.dpo(r)}
    assert {r for r in ROLES if (context.run.path / "roles" / r / "dpo").is_dir()} == dpo_roles
    assert all(v.equal(before[k]) for k, v in model.state_dict().items())  # copies trained
    env = llm_trainer.make("LLMTrainer/Reasoning-v0")
    team = make_agent(saved["team"], env, seed=0)
    assert isinstance(team, MALTTeam)
    assert team.votes == 3
    assert len({id(p) for p in team.policies().values()}) == 3  # one model per role
    observation, info = env.reset(seed=0)
    team.reset(seed=0)
    action = team.act(observation, info)
    assert isinstance(action, str)
    assert len(team.last_chains()) == 3
    team.close()


def test_lora_adapter_per_role_on_one_base_trains_only_adapters_and_loads_and_acts(
    tiny: tuple[Any, Any], tmp_path: Path
) -> None:
    pytest.importorskip("peft")
    from llm_trainer.agents.coordinator import play_multiagent
    from llm_trainer.agents.team import AdapterRole, MALTTeam
    from llm_trainer.algorithms.malt import train_roles

    model, tokenizer = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    context = _role_context(tmp_path, r=4, alpha=8)
    saved = train_roles(
        context, model, tokenizer, _scripted_data(), 2, dpo_steps=2, adapters=True,
        max_new_tokens=8,
    )  # fmt: skip
    assert all(v.equal(before[k]) for k, v in model.state_dict().items())  # base untouched
    team_dir = Path(saved["team"])
    assert (team_dir / "base" / "config.json").is_file()
    for role in ROLES:
        assert (Path(saved[f"{role}_model"]) / "adapter_config.json").is_file()
    team = MALTTeam.load(team_dir)
    roles = team.policies()
    assert all(isinstance(p, AdapterRole) for p in roles.values())
    assert len({id(p.backend) for p in roles.values()}) == 1  # one base model in memory
    peft_model = roles["generator"].backend.model
    assert set(peft_model.peft_config) == set(ROLES)
    # each role acts with its own adapter: the adapters' weights differ after training
    deltas = {
        role: next(
            v.clone()
            for k, v in peft_model.state_dict().items()
            if "lora_B" in k and k.endswith(f"{role}.weight")
        )
        for role in ROLES
    }
    assert not deltas["generator"].equal(deltas["refiner"])
    [episode] = play_multiagent("LLMTrainer/MALT-v0", roles, [0], num_envs=1)
    assert [e.agent for e in episode.transcript] == list(ROLES)
    assert episode.error is None
    team.close()
