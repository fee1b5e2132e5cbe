"""Negative-aware tuning (``algorithms/nat.py``): the instruction in the task's turn per label,
the assistant-only loss, the templates and graded buckets, env-verified negatives, the ratio,
the registered algorithm end to end, and inference that only ever asks for success."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import llm_trainer
from llm_trainer.agents.llm_agent import LLMAgent, LLMAgentConfig, render_task
from llm_trainer.agents.tinylm import TinyLMConfig, build_model, build_tokenizer
from llm_trainer.algorithms.base import AlgorithmContext
from llm_trainer.algorithms.config import LoRAConfig, TrainConfig, load_experiment
from llm_trainer.algorithms.nat import (
    MEANINGLESS_TOKENS,
    PAPER_INSTRUCTIONS,
    NATBucket,
    NATSettings,
    NATTrainer,
    ReplayPolicy,
    choose_negatives,
    corrupted_negatives,
    nat_rows,
    policy_negatives,
    select_negatives,
    wrong_answers,
)
from llm_trainer.algorithms.rollout import collect, oracle_trajectories
from llm_trainer.analysis.failure_modes import classify
from llm_trainer.core.errors import ConfigError, UserError
from llm_trainer.core.records import to_plain
from llm_trainer.core.rundir import RunDir
from llm_trainer.core.store import TrajectoryStore
from llm_trainer.core.trajectory import Step, Trajectory
from llm_trainer.data.negatives import PERTURBATIONS, targeted_negatives
from llm_trainer.envs.tools import AnswerAction, parse_action

ROOT = Path(__file__).resolve().parents[2]
CALCULATOR = "LLMTrainer/Calculator-v0"
SMALL = TinyLMConfig(
    n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64, max_position_embeddings=512
)
#: ``--set`` overrides that make a CLI run take seconds: a 1-layer model, 8 tasks, 2 steps.
FAST = (
    "model.tiny.n_layers=1",
    "model.tiny.hidden_size=32",
    "model.tiny.n_heads=2",
    "model.tiny.intermediate_size=64",
    "data.episodes=8",
    "train.max_steps=2",
    "train.batch_size=4",
    "train.warmup_steps=0",
    "train.logging_steps=1",
    "train.save_steps=0",
    "eval.episodes=2",
    "eval.episodes_before=0",
    "eval.every_steps=0",
    "eval.max_new_tokens=8",
)


@pytest.fixture(scope="module")
def positives() -> list[Trajectory]:
    return oracle_trajectories(CALCULATOR, range(6), difficulty=1)


@pytest.fixture(scope="module")
def negatives(positives: list[Trajectory]) -> list[Trajectory]:
    return corrupted_negatives(positives, per_positive=1, seed=0)


def _garbage(seed: int = 0) -> Trajectory:
    """A failure with nothing right: malformed actions until the time limit."""
    [t] = collect(CALCULATOR, lambda envs: ReplayPolicy([["no idea"] * 6]), [0], difficulty=1)
    assert t.seed == seed
    return t


# -- rows: the instruction per label, the rest as in SFT --------------------------------------


@pytest.mark.parametrize(
    ("settings", "positive", "negative"),
    [
        (
            NATSettings(),
            f"{{task}}\n\n{PAPER_INSTRUCTIONS[0]}",
            f"{{task}}\n\n{PAPER_INSTRUCTIONS[1]}",
        ),
        (NATSettings(template="prefix"), "[Correct] {task}", "[Incorrect] {task}"),
        (
            NATSettings(template="meaningless"),
            f"{{task}}\n\n{MEANINGLESS_TOKENS[0]}",
            f"{{task}}\n\n{MEANINGLESS_TOKENS[1]}",
        ),
        (
            NATSettings(
                template="custom",
                positive_instruction="Answer right.",
                negative_instruction="Answer wrong.",
            ),
            "{task}\n\nAnswer right.",
            "{task}\n\nAnswer wrong.",
        ),
        (
            NATSettings(
                template="custom",
                positive_instruction="GOOD: {task}",
                negative_instruction="BAD: {task}",
            ),
            "GOOD: {task}",
            "BAD: {task}",
        ),
    ],
    ids=["paper", "prefix", "meaningless", "custom", "custom_template"],
)
def test_each_template_puts_its_label_instruction_in_the_task_turn_only(
    settings: NATSettings,
    positive: str,
    negative: str,
    positives: list[Trajectory],
    negatives: list[Trajectory],
) -> None:
    assert settings.positive_template == positive
    assert settings.task_templates() == {"Correct": positive, "Incorrect": negative}
    rows = nat_rows(positives, negatives, settings, system_prompt="")
    assert len(rows) == len(positives) + len(negatives)
    labelled = [(t, positive) for t in positives] + [(t, negative) for t in negatives]
    for row, (t, template) in zip(rows, labelled, strict=True):
        expected = t.messages(system_prompt="")
        expected[1] = {"role": "user", "content": render_task(template, t.prompt)}
        assert row["messages"] == expected  # only the task's turn changed
        assert json.loads(row["tools"]) == to_plain(t.tools)
        other = negative if template == positive else positive
        other_text = other.replace("{task}", "").strip()
        assert all(other_text not in m["content"] for m in row["messages"])


def test_fine_grained_labels_come_from_the_score_buckets(
    positives: list[Trajectory], negatives: list[Trajectory]
) -> None:
    garbage = _garbage()
    by_metrics = NATSettings(fine_grained=True, score="metrics")
    assert by_metrics.labels == ("Correct", "Partially Correct", "Incorrect")
    assert by_metrics.score_of(positives[0]) == 1.0
    assert by_metrics.score_of(negatives[0]) == pytest.approx(0.6)  # only the answer is wrong
    assert by_metrics.score_of(garbage) == 0.0
    assert by_metrics.label_of(positives[0], positive=True) == "Correct"
    assert by_metrics.label_of(negatives[0], positive=False) == "Partially Correct"
    assert by_metrics.label_of(garbage, positive=False) == "Incorrect"
    rows = nat_rows(positives[:1], [negatives[0], garbage], by_metrics, system_prompt="")
    assert [r["messages"][1]["content"].rsplit("\n\n", 1)[1] for r in rows] == [
        "Please generate a solution that is correct.",
        "Please generate a solution that is partially correct.",
        "Please generate a solution that is incorrect.",
    ]
    # by reward (the default score): a wrong answer earns 0, which is not > 0
    by_reward = NATSettings(fine_grained=True, template="prefix")
    assert by_reward.label_of(negatives[0], positive=False) == "Incorrect"
    assert by_reward.label_of(garbage, positive=False) == "Incorrect"  # reward -0.6
    # a failure whose score reaches the top bucket still never gets the top label
    last = negatives[0].steps[-1]
    rich = dataclasses.replace(
        negatives[0], steps=(*negatives[0].steps[:-1], dataclasses.replace(last, reward=1.0))
    )
    assert not rich.success
    assert by_reward.label_of(rich, positive=False) == "Partially Correct"
    assert by_reward.task_templates()["Partially Correct"] == "[Partially Correct] {task}"
    # custom graded instructions, and equal bounds split by at_least / above
    graded = NATSettings(
        template="custom",
        positive_instruction="Solve it.",
        negative_instruction="Fail it.",
        fine_grained=True,
        buckets=(
            NATBucket("Best", above=0.5),
            NATBucket("Half", at_least=0.5, instruction="Half-solve it."),
            NATBucket("Worst"),
        ),
        score="metrics",
    )
    assert list(graded.task_templates().values()) == [
        "{task}\n\nSolve it.",
        "{task}\n\nHalf-solve it.",
        "{task}\n\nFail it.",
    ]
    half = Trajectory(**{**_fields(garbage), "steps": (_step(0.0, format_ok=True, exec_ok=True),)})
    assert graded.score_of(half) == 0.4
    assert graded.label_of(half, positive=False) == "Worst"
    assert graded.label_of(half, positive=True) == "Worst"
    assert graded.label_of(negatives[0], positive=True) == "Best"  # 0.6 > 0.5
    assert graded.label_of(negatives[0], positive=False) == "Half"  # never the top label


def _fields(t: Trajectory) -> dict[str, Any]:
    return {f.name: getattr(t, f.name) for f in dataclasses.fields(t)}


def _step(reward: float, **metrics: bool) -> Step:
    return Step("x", "", "user", reward, True, False, metrics=metrics)


# -- negatives ------------------------------------------------------------------------------


def test_corrupted_negatives_are_replayed_episodes_that_the_env_fails_on_the_answer(
    positives: list[Trajectory],
) -> None:
    negatives = corrupted_negatives(positives, per_positive=3, seed=0)
    assert len(negatives) == 3 * len(positives)
    by_seed = {p.seed: p for p in positives}
    for n in negatives:
        p = by_seed[n.seed]
        assert n.source == "corrupted"
        assert (n.env_id, n.difficulty, n.prompt) == (p.env_id, p.difficulty, p.prompt)
        # the same tool calls, and the env's own results for them
        assert [s.action for s in n.steps[:-1]] == [s.action for s in p.steps[:-1]]
        assert [s.observation for s in n.steps[:-1]] == [s.observation for s in p.steps[:-1]]
        wrong, right = parse_action(n.steps[-1].action), parse_action(p.steps[-1].action)
        assert isinstance(wrong, AnswerAction)
        assert isinstance(right, AnswerAction)
        assert wrong.text != right.text
        # the env's verdict: everything right but the answer
        assert n.metrics == {
            "format_ok": True,
            "tool_correct": True,
            "exec_ok": True,
            "answer_correct": False,
            "success": False,
        }
        assert n.total_reward == 0.0
        assert n.steps[-1].terminated
    # distinct wrong answers per positive, the same ones for the same seed
    for seed in by_seed:
        answers = [n.steps[-1].action for n in negatives if n.seed == seed]
        assert len(set(answers)) == 3
    again = corrupted_negatives(positives, per_positive=3, seed=0)
    assert [n.steps[-1].action for n in again] == [n.steps[-1].action for n in negatives]


def test_a_wrong_answer_that_the_env_accepts_is_not_a_negative(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert wrong_answers("Tokyo", np.random.default_rng(0), 9) == [
        "oykoT",
        "Tokyox",
        "not Tokyo",
        "Tokyo Tokyo",
    ]
    assert len(set(wrong_answers("7", np.random.default_rng(0), 30))) == 30
    [positive] = oracle_trajectories(CALCULATOR, [0], difficulty=1)
    right = parse_action(positive.steps[-1].action)
    assert isinstance(right, AnswerAction)
    # "corrupting" to the right answer written otherwise (22 -> 22.0) replays as a success
    from llm_trainer.algorithms import nat

    monkeypatch.setattr(nat, "wrong_answers", lambda answer, rng, count: [f"{float(answer)}"])
    assert corrupted_negatives([positive]) == []


def test_select_negatives_spreads_over_tasks_and_caps_at_what_exists(
    positives: list[Trajectory],
) -> None:
    pool = corrupted_negatives(positives, per_positive=3, seed=0)  # 6 tasks x 3
    one_each = select_negatives(pool, 6, seed=0)
    assert len(one_each) == 6
    assert sorted(t.seed for t in one_each) == list(range(6))  # every task before any twice
    two_each = select_negatives(pool, 12, seed=0)
    assert sorted(t.seed for t in two_each) == sorted([*range(6)] * 2)
    assert len(select_negatives(pool, 100, seed=0)) == len(pool)  # capped
    assert select_negatives(pool, 0) == []
    assert [t.steps[-1].action for t in select_negatives(pool, 7, seed=3)] == [
        t.steps[-1].action for t in select_negatives(pool, 7, seed=3)
    ]


def test_negatives_take_one_source_or_a_list_of_them() -> None:
    assert NATSettings().sources == ("corrupted",)
    assert NATSettings(negatives="both").sources == ("corrupted", "policy")
    assert NATSettings(negatives="targeted").sources == ("targeted",)
    settings = NATSettings(
        negatives=("policy", "targeted"),
        targeted_modes=("wrong_tool", "malformed_action"),
        diversity=True,
        mode_quotas={"malformed_action": 0.25},
    )
    assert settings.sources == ("policy", "targeted")
    assert dict(settings.mode_quotas) == {"malformed_action": 0.25}
    assert NATSettings().targeted_modes == tuple(PERTURBATIONS)
    loaded = load_experiment(
        ROOT / "configs" / "nat_calculator.yaml",
        ["nat.negatives=[corrupted, targeted]", "nat.targeted_modes=[wrong_final_answer]"],
    )
    nat = loaded.settings
    assert isinstance(nat, NATSettings)
    assert (nat.sources, nat.targeted_modes) == (("corrupted", "targeted"), ("wrong_final_answer",))


def test_choose_negatives_spreads_over_tasks_or_over_failure_modes() -> None:
    positives = oracle_trajectories(CALCULATOR, range(6), difficulty=1)
    pool = [*targeted_negatives(positives, seed=0), *corrupted_negatives(positives)]
    modes = Counter(classify(t) for t in pool)
    assert modes["wrong_answer"] >= 3 * modes["malformed_action"]  # corrupted ones: all wrong
    by_task = choose_negatives(pool, 6, NATSettings())
    assert sorted(t.seed for t in by_task) == list(range(6))
    diverse = choose_negatives(pool, 6, NATSettings(diversity=True))
    assert Counter(classify(t) for t in diverse) == dict.fromkeys(modes, 2)
    quota = NATSettings(diversity=True, mode_quotas={"wrong_answer": 0.5})
    assert Counter(classify(t) for t in choose_negatives(pool, 6, quota))["wrong_answer"] == 3
    assert choose_negatives([*pool, *pool], 100, NATSettings(diversity=True)) == (
        choose_negatives(pool, 100, NATSettings(diversity=True))
    )  # repeats dropped


def test_policy_negatives_are_the_models_own_failed_episodes(tmp_path: Path) -> None:
    experiment = load_experiment(
        overrides=["algorithm=nat", "model.system_prompt=''", "eval.max_new_tokens=4", *FAST[:4]]
    )
    context = AlgorithmContext(experiment, RunDir(tmp_path), log=lambda m: None)
    model, tokenizer = context.load_model()  # built from scratch: it fails every task
    tasks = oracle_trajectories(CALCULATOR, range(2), difficulty=1)
    settings = NATSettings(negatives="policy", samples_per_task=2)
    failures = policy_negatives(context, model, tokenizer, tasks, settings)
    assert len(failures) == 4
    assert sorted(t.seed for t in failures) == [0, 0, 1, 1]
    for t in failures:
        assert t.source == "policy:nat"
        assert t.error is None
        assert not t.success
        assert t.steps
        assert all(s.completion_token_ids for s in t.steps)


# -- training: the instruction is context, the assistant turns the only targets --------------


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_nat_trainer_tokenizes_each_row_with_its_instruction_and_learns_only_assistant_turns(
    lora: bool, tmp_path: Path, positives: list[Trajectory], negatives: list[Trajectory]
) -> None:
    pytest.importorskip("trl")
    tokenizer = build_tokenizer()
    model = build_model(SMALL, seed=0, vocab_size=len(tokenizer))
    config = TrainConfig(
        max_steps=2,
        batch_size=4,
        learning_rate=3e-3,
        warmup_steps=0,
        logging_steps=1,
        max_length=512,
        lora=LoRAConfig(enabled=lora, r=4, alpha=8, target_modules=("q_proj", "v_proj")),
    )
    settings = NATSettings(template="prefix")
    trainer = NATTrainer(model, tokenizer, config, RunDir(tmp_path), settings=settings)
    result = trainer.train([*negatives, *positives])  # labels come from success, not order
    assert result.steps == 2
    dataset = trainer.trainer.train_dataset
    assert len(dataset) == len(positives) + len(negatives)
    eos = tokenizer.eos_token
    for row, (t, label) in zip(
        dataset,
        [(t, "Correct") for t in positives] + [(t, "Incorrect") for t in negatives],
        strict=True,
    ):
        ids, labels = row["input_ids"], row["labels"]
        text = tokenizer.decode(ids)
        assert f"[{label}] {t.prompt}" in text
        other = "Incorrect" if label == "Correct" else "Correct"
        assert f"[{other}]" not in text
        target = tokenizer.decode([i for i, y in zip(ids, labels, strict=True) if y != -100])
        assistant = [m["content"] for m in t.messages() if m["role"] == "assistant"]
        assert target == "".join(f"{a}{eos}" for a in assistant)
        assert f"[{label}]" not in target
        assert t.prompt not in target
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable
    assert all("lora_" in n for n in trainable) == lora


def test_nat_needs_positives_and_a_trained_top_label(
    tmp_path: Path, positives: list[Trajectory], negatives: list[Trajectory]
) -> None:
    tokenizer = build_tokenizer()
    model = build_model(SMALL, seed=0, vocab_size=len(tokenizer))
    config = TrainConfig(max_steps=1, batch_size=2, warmup_steps=0)
    trainer = NATTrainer(model, tokenizer, config, RunDir(tmp_path), settings=NATSettings())
    with pytest.raises(UserError, match="NAT needs successful trajectories"):
        trainer.train(negatives)
    strict = NATSettings(
        fine_grained=True,
        buckets=(NATBucket("Perfect", above=1.0), NATBucket("Rest")),
    )
    trainer = NATTrainer(model, tokenizer, config, RunDir(tmp_path / "b"), settings=strict)
    with pytest.raises(UserError, match="no trajectory scored into the top bucket 'Perfect'"):
        trainer.train(positives)


# -- the registered algorithm, end to end -------------------------------------------------------


def _train(tmp_path: Path, *overrides: str) -> tuple[dict[str, Any], str]:
    """The summary and the output of ``llm-trainer train`` on configs/nat_calculator.yaml."""
    from llm_trainer.cli import app

    args = ["train", "--config", str(ROOT / "configs" / "nat_calculator.yaml"), "--json"]
    for override in (f"output_dir={tmp_path}", *FAST, *overrides):
        args += ["--set", override]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(
        next(line for line in reversed(result.output.splitlines()) if line.startswith("{"))
    )
    return summary, result.output


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_nat_runs_through_llm_trainer_train_and_evaluates_with_the_positive_instruction(
    lora: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("trl")
    from llm_trainer.algorithms import evaluation

    templates: list[str | None] = []  # the task template of every agent that evaluated
    real_collect = evaluation.collect

    def spy(env_id: str, factory: Any, seeds: Any, **kwargs: Any) -> Any:
        templates.append(factory([]).config.task_template)
        return real_collect(env_id, factory, seeds, **kwargs)

    monkeypatch.setattr(evaluation, "collect", spy)
    summary, _ = _train(
        tmp_path,
        "nat.ratio=2",
        "eval.episodes_before=1",
        *(("train.lora.enabled=true", "train.lora.r=4") if lora else ()),
    )
    positive = NATSettings().positive_template
    assert summary["algorithm"] == "nat"
    nat = summary["nat"]
    assert nat["positives"] == 8
    assert nat["negatives"] == nat["negatives_wanted"] == 16
    assert nat["negatives_available"] == {"corrupted": 16}
    assert nat["negatives_by_source"] == {"corrupted": 16}
    assert nat["labels"] == {"Correct": 8, "Incorrect": 16}
    assert summary["train_steps"] == 2
    assert summary["task_template"] == positive
    # before: the starting model as it is; after: the positive instruction, never the negative
    assert templates == [None, positive]
    run = Path(summary["run_dir"])
    stored = TrajectoryStore(run / "trajectories.db").load(summary["dataset_version"])
    assert len(stored) == 24
    assert sum(t.success for t in stored) == 8
    # final_model is a model directory and a saved agent carrying the positive instruction
    final = Path(summary["model_dir"])
    document = json.loads((final / "llm_agent.json").read_text())
    assert document["config"]["task_template"] == positive
    assert document["config"]["system_prompt"] == ""
    assert document["config"]["backend"] == "transformers:."
    assert (final / ("adapter_config.json" if lora else "config.json")).is_file()
    _assert_prompted_with_the_positive_instruction(final)


def _assert_prompted_with_the_positive_instruction(final: Path) -> None:
    """Every way of loading the trained model prompts with the positive instruction."""
    from llm_trainer.agents.factory import make_agent
    from llm_trainer.agents.llm_agent import close_shared_backends

    settings = NATSettings()
    negative = PAPER_INSTRUCTIONS[1]
    env = llm_trainer.make(CALCULATOR)
    try:
        for agent in (
            LLMAgent.load(final),
            make_agent(str(final), env, seed=0),
            make_agent(f"transformers:{final}", env, seed=0),
        ):
            assert isinstance(agent, LLMAgent)
            assert agent.config.task_template == settings.positive_template
            observation, info = env.reset(seed=3)
            agent.reset(seed=3)
            agent.act(observation, info)
            [prompt] = agent.episode_prompts()
            assert prompt.messages[1]["content"] == f"{observation}\n\n{PAPER_INSTRUCTIONS[0]}"
            assert agent.messages()[1]["content"] == prompt.messages[1]["content"]
            assert all(negative not in m["content"] for m in agent.messages())
            assert negative not in json.dumps(agent.config.to_dict())
    finally:
        close_shared_backends()


def test_nat_caps_the_ratio_at_the_negatives_that_exist_and_says_so(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    summary, output = _train(
        tmp_path,
        "nat.negatives=policy",
        "nat.ratio=5",
        "nat.samples_per_task=1",
        "nat.template=meaningless",
        "eval.max_new_tokens=4",
    )
    nat = summary["nat"]
    assert nat["negatives_wanted"] == 40
    assert nat["negatives_available"] == {"policy": 8}  # one sample per task, all failed
    assert nat["negatives"] == 8
    assert nat["negatives_by_source"] == {"policy:nat": 8}
    assert "NAT: only 8 negatives for the 40 that nat.ratio asks" in " ".join(output.split())
    assert summary["task_template"] == f"{{task}}\n\n{MEANINGLESS_TOKENS[0]}"


def test_nat_trains_on_targeted_negatives_picked_over_failure_modes(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    summary, output = _train(
        tmp_path,
        "nat.negatives=[corrupted, targeted]",
        "nat.diversity=true",
        "nat.mode_quotas={wrong_answer: 0.5}",
        "nat.ratio=2",
    )
    nat = summary["nat"]
    assert nat["negatives"] == nat["negatives_wanted"] == 16
    assert nat["negatives_available"]["corrupted"] == 16
    assert nat["negatives_available"]["targeted"] >= 16
    # half wrong answers (the quota), the rest spread evenly over the other modes
    assert nat["negatives_by_mode"] == {"wrong_answer": 8, "malformed_action": 4, "wrong_tool": 4}
    assert all(s == "corrupted" or s.startswith("negative:") for s in nat["negatives_by_source"])
    report = nat["targeted"]["perturbations"]
    assert report["wrong_tool"]["not_applicable"] == 8  # Calculator-v0 offers one tool
    assert report["malformed_action"]["kept"] == {"malformed_action": 16}
    assert "NAT: targeted negatives:" in output
    assert "wrong_tool: kept 0 of 0 replayed; 8 positives it does not apply to" in output


def test_ratio_zero_trains_on_positives_with_the_positive_instruction(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    summary, _ = _train(tmp_path, "nat.ratio=0", "nat.template=prefix")
    assert summary["nat"]["negatives"] == summary["nat"]["negatives_wanted"] == 0
    assert summary["nat"]["labels"] == {"Correct": 8, "Incorrect": 0}
    assert summary["task_template"] == "[Correct] {task}"


# -- settings errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["nat.template=paperr"], r"nat.template: 'paperr' is not one of \['paper', 'prefix'"),
        (["nat.template=custom"], r"nat.positive_instruction: template 'custom' needs it"),
        (
            ["nat.positive_instruction=Do it."],
            r"nat.positive_instruction: only read with template 'custom' \(this is 'paper'\)",
        ),
        (
            [
                "nat.template=custom",
                "nat.positive_instruction=Same.",
                "nat.negative_instruction=Same.",
            ],
            r"labels 'Correct' and 'Incorrect' get the same instruction",
        ),
        (["nat.score=metrics"], r"nat.score: only read with fine_grained: true"),
        (["nat.buckets=[{label: A}]"], r"nat.buckets: only read with fine_grained: true"),
        (["nat.ratio=-1"], r"nat.ratio must be >= 0"),
        (["nat.negatives=teacher"], r"nat.negatives: 'teacher' is not one of"),
        (["nat.negatives=[policy, teacher]"], r"nat.negatives\[1\]: 'teacher' is not one of"),
        (["nat.negatives=[policy, policy]"], r"nat.negatives: a list of distinct sources"),
        (["nat.negatives=[]"], r"nat.negatives: a list of distinct sources"),
        (
            ["nat.negatives=targeted", "nat.targeted_modes=[wrong_tools]"],
            r"nat.targeted_modes\[0\]: 'wrong_tools' is not one of",
        ),
        (
            ["nat.targeted_modes=[wrong_tool]"],
            r"nat.targeted_modes: only read when nat.negatives has 'targeted'",
        ),
        (
            ["nat.mode_quotas={wrong_answer: 0.5}"],
            r"nat.mode_quotas: only read with diversity: true",
        ),
        (
            ["nat.diversity=true", "nat.mode_quotas={wrong_answers: 0.5}"],
            r"nat.mode_quotas: 'wrong_answers' is not a failure mode \(did you mean",
        ),
        (
            ["nat.diversity=true", "nat.mode_quotas={wrong_answer: 2}"],
            r"nat.mode_quotas.wrong_answer: a share in \[0, 1\]",
        ),
        (
            ["nat.diversity=true", "nat.mode_quotas={wrong_answer: 0.6, wrong_tool: 0.6}"],
            r"nat.mode_quotas: the shares add up to 1.2, more than 1",
        ),
        (["nat.samples_per_task=0"], r"nat.samples_per_task must be >= 1"),
        (
            [
                "nat.fine_grained=true",
                "nat.buckets=[{label: A, at_least: 1}, {label: B, at_least: 0}]",
            ],
            r"the last bucket \('B'\) must take every score left",
        ),
        (
            ["nat.fine_grained=true", "nat.buckets=[{label: A}, {label: B}]"],
            r"nat.buckets\['A'\]: only the last bucket may take every score",
        ),
        (
            [
                "nat.fine_grained=true",
                "nat.buckets=[{label: A, above: 0}, {label: B, at_least: 1}, {label: C}]",
            ],
            r"nat.buckets\['B'\] never gets a score: 'A' before it takes them all",
        ),
        (
            ["nat.fine_grained=true", "nat.buckets=[{label: A, at_least: 1}, {label: A}]"],
            r"label\(s\) \['A'\] appear more than once",
        ),
        (
            [
                "nat.fine_grained=true",
                "nat.buckets=[{label: A, at_least: 1, above: 0}, {label: B}]",
            ],
            r"nat.buckets\['A'\]: set at_least or above, not both",
        ),
        (
            [
                "nat.fine_grained=true",
                "nat.template=meaningless",
                "nat.buckets=[{label: A, at_least: 4}, {label: B, at_least: 3}, "
                "{label: C, at_least: 2}, {label: D, at_least: 1}, {label: E}]",
            ],
            r"template 'meaningless' has 4 token strings, not enough for 5 labels",
        ),
        (
            [
                "nat.fine_grained=true",
                "nat.template=custom",
                "nat.positive_instruction=Good.",
                "nat.negative_instruction=Bad.",
            ],
            r"nat.buckets\['Partially Correct'\].instruction: template 'custom' needs one",
        ),
        (["nat.fine_grained=true", "nat.buckets=[{label: A, at_least: 1}]"], r"at least two"),
        (["nat.template=custom", "nat.positive_instruction=''"], r"needs it"),
    ],
)
def test_bad_nat_settings_are_config_errors_that_name_the_field(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_experiment(ROOT / "configs" / "nat_calculator.yaml", overrides)


def test_a_task_template_must_hold_the_task(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"LLMAgentConfig.task_template must contain \{task\}"):
        LLMAgentConfig(backend="transformers:/m", task_template="Solve it correctly.")
    config = LLMAgentConfig(backend="transformers:/m", task_template='{"q": "{task}"}')
    assert LLMAgentConfig.from_dict(config.to_dict()) == config
    assert render_task(config.task_template, "1 + 1") == '{"q": "1 + 1"}'  # JSON braces kept
