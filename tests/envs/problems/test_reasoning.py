"""Reasoning-v0: each problem is re-solved from its text alone, by brute force, and must have
exactly the answer the generator stored; the answer check is exact."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.problems import ProblemSpec
from llm_trainer.envs.problems.reasoning import _RELATIONS, _knights
from llm_trainer.envs.tools.calculator import evaluate as calculate
from llm_trainer.envs.tooluse.base import Draws
from tests.envs.problems.helpers import draw, evaluate

seeds = st.integers(0, 2**63 - 1)
difficulties = st.sampled_from([1, 2, 3])


def _of_kind(kind: str, seed: int, difficulty: int) -> ProblemSpec:
    return draw("reasoning", seed, difficulty, config={"kinds": [kind]})


# -- independent solvers, reading only the statement ------------------------------------------


def _simulate_story(statement: str) -> int:
    """Replay an arithmetic story sentence by sentence (the protagonist is the first name)."""
    sentences = re.findall(r"[^.?]+[.?]", statement)
    hero, start = re.match(r"(\w+) has (\d+) ", sentences[0]).groups()  # type: ignore[union-attr]
    value = int(start)
    for sentence in sentences[1:]:
        sentence = sentence.strip()
        subject = sentence.split()[0]
        if subject not in (hero, "She", "He") or sentence.startswith("How many"):
            continue  # another person's count, or the question
        if m := re.search(r"buys (\d+) more", sentence):
            value += int(m.group(1))
        elif m := re.search(r"gives (\d+) away", sentence):
            value -= int(m.group(1))
        elif m := re.search(r"buys (\d+) \w+ with (\d+) each", sentence):
            value += int(m.group(1)) * int(m.group(2))
        elif "doubles" in sentence or "triples" in sentence:
            value *= 2 if "doubles" in sentence else 3
        elif m := re.search(r"among (\d+) friends and keeps one share", sentence):
            assert value % int(m.group(1)) == 0
            value //= int(m.group(1))
        else:
            raise AssertionError(f"unknown sentence {sentence!r}")
    return value


def _solve_ordering(statement: str) -> set[str]:
    """Every answer (a first name, or a full order) consistent with the clues."""
    more_words = {r[0]: r for r in _RELATIONS} | {r[1]: r for r in _RELATIONS}
    clues = re.findall(r"(\w+) is (\w+) than (\w+)\.", statement)
    names = sorted({n for a, _, b in clues for n in (a, b)})
    relation = more_words[clues[0][1]]
    full = statement.endswith("names separated by commas.")
    if full:
        first_word = re.search(r"from (\w+) to", statement).group(1)  # type: ignore[union-attr]
    else:
        first_word = re.search(r"Who is the (\w+)\?", statement).group(1)  # type: ignore[union-attr]
    descending = first_word == relation[2]  # the order asked for starts with the "more" end
    answers = set()
    for order in itertools.permutations(names):
        place = {n: i for i, n in enumerate(order)}
        ok = all(
            (place[a] < place[b]) == ((word == relation[0]) == descending) for a, word, b in clues
        )
        if ok:
            answers.add(", ".join(order) if full else order[0])
    return answers


_PHRASES = [
    (r"(\w+) is a (knight|knave)", lambda k, x, t: k[x] == (t == "knight")),
    (r"(\w+) and (\w+) are both knights", lambda k, x, y: k[x] and k[y]),
    (r"(\w+) and (\w+) are both knaves", lambda k, x, y: not k[x] and not k[y]),
    (r"At least one of (\w+) and (\w+) is a knight", lambda k, x, y: k[x] or k[y]),
    (r"At least one of (\w+) and (\w+) is a knave", lambda k, x, y: not k[x] or not k[y]),
    (r"(\w+) and (\w+) are the same kind", lambda k, x, y: k[x] == k[y]),
    (r"(\w+) and (\w+) are different kinds", lambda k, x, y: k[x] != k[y]),
]


def _solve_knights(statement: str) -> list[set[str]]:
    """Every set of knights under which each speaker's statement is true iff they are one."""
    said = re.findall(r'(\w+) says: "(.*?)\."', statement)
    names = [speaker for speaker, _ in said]
    solutions = []
    for kinds in itertools.product((True, False), repeat=len(names)):
        knights = dict(zip(names, kinds, strict=True))
        consistent = True
        for speaker, text in said:
            for pattern, holds in _PHRASES:
                m = re.fullmatch(pattern, text)
                if m:
                    args = [speaker if g == "I" else g for g in m.groups()]
                    consistent &= (
                        holds({**knights, "i": knights[speaker]}, *args) == knights[speaker]
                    )
                    break
            else:
                raise AssertionError(f"unknown statement {text!r}")
        if consistent:
            solutions.append({n for n in names if knights[n]})
    return solutions


# -- the properties ---------------------------------------------------------------------------


@given(seeds, difficulties)
def test_arithmetic_stories_replayed_from_their_text_give_the_stored_answer(
    seed: int, difficulty: int
) -> None:
    spec = _of_kind("arithmetic", seed, difficulty)
    assert _simulate_story(spec.statement) == int(spec.answer)
    assert calculate(spec.plan[0].arguments["expression"]) == int(spec.answer)
    assert spec.solution.endswith(f"Answer: {spec.answer}.")
    assert spec.ground_truth == spec.answer
    steps = (2, 3, 4)[difficulty - 1]
    assert [n.id for n in spec.subproblems] == [f"s{i}" for i in range(1, steps + 1)]
    assert all(n.depends_on == ((f"s{i}",) if i else ()) for i, n in enumerate(spec.subproblems))
    assert len(spec.statement) < 400


@given(seeds, difficulties)
def test_orderings_have_exactly_one_answer_by_brute_force_and_it_is_stored(
    seed: int, difficulty: int
) -> None:
    spec = _of_kind("ordering", seed, difficulty)
    assert _solve_ordering(spec.statement) == {spec.answer}
    assert (", " in spec.answer) == (difficulty > 1)
    assert len(spec.answer.split(", ")) in (1, (3, 4, 5)[difficulty - 1])


@given(seeds, difficulties)
def test_knights_and_knaves_have_exactly_one_solution_by_brute_force_and_it_is_stored(
    seed: int, difficulty: int
) -> None:
    spec = _of_kind("knights", seed, difficulty)
    solutions = _solve_knights(spec.statement)
    assert len(solutions) == 1
    expected = set() if spec.answer == "none" else set(spec.answer.split(", "))
    assert solutions[0] == expected


@given(seeds, st.integers(2, 6))
def test_the_fallback_knights_puzzle_is_unique_by_construction(seed: int, n: int) -> None:
    import numpy as np

    # zero random attempts: straight to the construction every draw falls back to
    spec = _knights(Draws(np.random.default_rng(seed)), 1, n, attempts=0)
    assert len(_solve_knights(spec.statement)) == 1
    assert "same kind" in spec.statement or "different kinds" in spec.statement


@pytest.mark.parametrize(
    ("answer", "variants", "wrong"),
    [
        ("19", ["19", " 19 apples", "019", "19.0", "١٩"], ["20", "19 or 20", "nineteen", ""]),
        ("Ava", ["ava", ' "Ava". ', "AVA"], ["Ben", "Ava, Ben", "Av"]),
        (
            "Ava, Ben, Cleo",
            ["ava, ben, cleo", "Ava, Ben and Cleo", "Ava,Ben,Cleo."],
            ["Ben, Ava, Cleo", "Ava, Ben", "Ava Ben Cleo", "Ava, Ben, Cleo, Cleo"],
        ),
    ],
)
def test_the_answer_check_is_exact_but_tolerates_case_quotes_and_units(
    answer: str, variants: list[str], wrong: list[str]
) -> None:
    kind = "arithmetic" if answer.isdecimal() else "ordering"
    spec = ProblemSpec(
        domain=f"reasoning/{kind}",
        statement="",
        answer=answer,
        difficulty=1,
        data={"kind": kind, "names": ("Ava", "Ben", "Cleo")},
    )
    for text in variants:
        assert evaluate("reasoning", spec, text).score == 1.0, text
    for text in wrong:
        evaluation = evaluate("reasoning", spec, text)
        assert evaluation.score == 0.0, text
        assert evaluation.failures[0].startswith("wrong"), text


def test_knights_answers_are_sets_in_any_order_and_none_is_the_empty_set() -> None:
    spec = ProblemSpec(
        domain="reasoning/knights-and-knaves",
        statement="",
        answer="Ava, Cleo",
        difficulty=1,
        data={"kind": "knights", "names": ("Ava", "Ben", "Cleo")},
    )
    assert evaluate("reasoning", spec, "Cleo and Ava").correct
    assert not evaluate("reasoning", spec, "Ava, Cleo, Cleo").correct
    assert not evaluate("reasoning", spec, "Ava").correct
    none = ProblemSpec(
        domain="reasoning/knights-and-knaves",
        statement="",
        answer="none",
        difficulty=1,
        data={"kind": "knights", "names": ("Ava", "Ben")},
    )
    assert evaluate("reasoning", none, "None.").correct
    assert not evaluate("reasoning", none, "").correct


def test_every_kind_is_drawn_and_kinds_are_configurable() -> None:
    domains = {draw("reasoning", seed, 2).domain for seed in range(60)}
    assert domains == {"reasoning/arithmetic", "reasoning/ordering", "reasoning/knights-and-knaves"}
    with pytest.raises(ConfigError, match=r"^LLMTrainer/Reasoning-v0: config\.kinds must be"):
        draw("reasoning", 0, 1, config={"kinds": ["riddles"]})
    with pytest.raises(ConfigError, match=r"did you mean 'kinds'"):
        draw("reasoning", 0, 1, config={"kind": ["arithmetic"]})
