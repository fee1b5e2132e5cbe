"""Programmatic operators keep structured genomes valid; EvoPrompt's operators run on the real
tiny LLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_trainer.algorithms.evolution.genome import (
    Genome,
    ItemSetSpace,
    TourSpace,
    parse_examples,
    parse_sampling,
    render_examples,
    solution_space,
    split_sentences,
)
from llm_trainer.algorithms.evolution.operators import (
    ChildRequest,
    LLMOperator,
    LLMVariation,
    extract_prompt,
    operator_prompt,
    programmatic_variation,
    random_genome,
)
from llm_trainer.core.errors import ConfigError

HOWS = ("mutation", "crossover", "differential")


@given(st.integers(2, 30), st.integers(0, 2**31 - 1))
def test_knapsack_children_name_each_existing_item_at_most_once(n: int, seed: int) -> None:
    space = ItemSetSpace(n)
    variation = programmatic_variation("solution", space=space)
    rng = np.random.default_rng(seed)
    parents = tuple(random_genome("solution", rng, space=space) for _ in range(4))
    for how in HOWS:
        used = parents[: {"mutation": 1, "crossover": 2, "differential": 4}[how]]
        [(child, operator)] = variation.make([ChildRequest(how, used, seed)])  # type: ignore[arg-type]
        items = space.parse(child.text)
        assert child.text == space.render(items)  # canonical text
        assert all(1 <= i <= n for i in items)
        assert operator in ("flip", "uniform+flip", "de/best/1/bin")
    [(mutant, _)] = variation.make([ChildRequest("mutation", parents[:1], seed)])
    assert mutant.text != parents[0].text  # a flip mutation always changes something


@given(st.integers(3, 11), st.integers(0, 2**31 - 1))
def test_tsp_children_are_tours_from_city_zero(n: int, seed: int) -> None:
    space = TourSpace(n)
    variation = programmatic_variation("solution", space=space)
    rng = np.random.default_rng(seed)
    a, b = (random_genome("solution", rng, space=space) for _ in range(2))
    for how, parents in (("mutation", (a,)), ("crossover", (a, b))):
        [(child, _)] = variation.make([ChildRequest(how, parents, seed)])  # type: ignore[arg-type]
        tour = [int(c) for c in child.text.split()]
        assert tour[0] == 0
        assert sorted(tour) == list(range(n))
    with pytest.raises(ConfigError, match="no differential-evolution operator"):
        variation.make([ChildRequest("differential", (a, b, a, b), seed)])


@given(st.integers(0, 2**31 - 1))
def test_sampling_children_stay_within_bounds(seed: int) -> None:
    variation = programmatic_variation("sampling", scale=0.5, factor=2.0)
    rng = np.random.default_rng(seed)
    parents = tuple(random_genome("sampling", rng) for _ in range(4))
    for how in HOWS:
        used = parents[: {"mutation": 1, "crossover": 2, "differential": 4}[how]]
        [(child, _)] = variation.make([ChildRequest(how, used, seed)])  # type: ignore[arg-type]
        values = parse_sampling(child.text)  # raises when out of bounds
        assert 0.0 <= values["temperature"] <= 1.5
        assert 0.05 <= values["top_p"] <= 1.0


def test_few_shot_and_sentence_operators_recombine_their_parts() -> None:
    pool = [(f"task {i}", f"solution {i}") for i in range(6)]
    variation = programmatic_variation("few_shot", examples=pool, max_examples=3)
    a = Genome("few_shot", render_examples(pool[:2]))
    b = Genome("few_shot", render_examples(pool[3:5]))
    seen = set()
    for seed in range(40):
        for how, parents in (("mutation", (a,)), ("crossover", (a, b))):
            [(child, _)] = variation.make([ChildRequest(how, parents, seed)])  # type: ignore[arg-type]
            examples = parse_examples(child.text)
            assert 1 <= len(examples) <= 3
            assert set(examples) <= set(pool)
            assert len(set(examples)) == len(examples)
            seen.update(examples)
    assert seen == set(pool)  # every pooled example gets used
    prompts = programmatic_variation("prompt", sentences=["Be brief.", "Use the tool.", "Think."])
    parent = Genome("prompt", "Be brief. Use the tool.")
    children = prompts.make([ChildRequest("mutation", (parent,), s) for s in range(30)])
    assert {g.text for g, _ in children} > {"Use the tool.", "Use the tool. Be brief."}
    assert all(
        set(split_sentences(g.text)) <= {"Be brief.", "Use the tool.", "Think."}
        for g, _ in children
    )


def test_solution_space_is_read_from_the_problem_statement() -> None:
    import llm_trainer

    for env_id, kind, n in (
        ("LLMTrainer/Knapsack-v0", ItemSetSpace, 5),
        ("LLMTrainer/TSP-v0", TourSpace, 5),
    ):
        env = llm_trainer.make(env_id)
        statement, _ = env.reset(seed=3)
        space = solution_space(statement)
        assert isinstance(space, kind)
        assert space.n == n
    with pytest.raises(ConfigError, match="Knapsack-v0 or LLMTrainer/TSP-v0"):
        solution_space("What is 2 + 2?")


def test_evoprompt_templates_and_the_answer_parser() -> None:
    a, b, c, d = (Genome("prompt", t) for t in ("P-target", "P-best", "P-r1", "P-r2"))
    ga, name = operator_prompt(ChildRequest("crossover", (a, b), 0))
    assert name == "evoprompt_ga"
    assert "Cross over the following prompts" in ga
    assert "Prompt 1: P-target\nPrompt 2: P-best" in ga
    de, name = operator_prompt(ChildRequest("differential", (a, b, c, d), 0))
    assert name == "evoprompt_de"
    assert "Prompt 1: P-r1\nPrompt 2: P-r2" in de
    assert "Prompt 3: P-best" in de
    assert de.endswith("Basic Prompt: P-target")
    assert extract_prompt("1. ... <prompt>old</prompt> 2. <prompt>new one</prompt>") == "new one"
    assert extract_prompt("<prompt>unclosed answer") == "unclosed answer"


@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir: Path) -> object:
    from llm_trainer.agents.backends import make_backend

    return make_backend(f"transformers:{tiny_model_dir}")


def test_llm_operators_ask_the_model_and_are_seeded(tiny_backend: object) -> None:
    variation = LLMVariation(tiny_backend, temperature=1.0, max_new_tokens=12)  # type: ignore[arg-type]
    a, b = Genome("prompt", "Use the calculator."), Genome("prompt", "Answer with a number.")
    requests = [
        ChildRequest("mutation", (a,), 1),
        ChildRequest("crossover", (a, b), 2),
        ChildRequest("differential", (a, b, b, a), 3),
    ]
    children = variation.make(requests)
    assert variation.calls == 3
    assert [name.split(":")[0] for _, name in children] == [
        "llm_mutation",
        "evoprompt_ga",
        "evoprompt_de",
    ]
    for (child, name), request in zip(children, requests, strict=True):
        assert child.kind == "prompt"
        # the model's answer, or (an empty answer) the first parent unchanged
        assert child.text or name.endswith(":empty")
        if name.endswith(":empty"):
            assert child == request.parents[0]
    assert variation.make(requests) == children  # the same seeds, the same children
    single = LLMOperator(variation, "mutation")
    assert single.mutate(a, np.random.default_rng(0)).kind == "prompt"
