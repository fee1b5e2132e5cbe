"""``LLMTrainer/ConstrainedWriting-v0``: write a short poem that meets checkable constraints.

Constraint kinds (each task draws ``config.count`` of ``config.constraints``):

==================  ==========================================================  =============
kind                rule                                                        criterion
==================  ==========================================================  =============
``line_count``      exactly N non-empty lines                                   1 or 0
``word_count``      between LO and HI words                                     1 or 0
``required_words``  use each of the given words                                 share used
``banned_words``    use none of the given words                                 share avoided
``acrostic``        the first letters of the lines spell a word                 share of lines
``rhyme``           a rhyme scheme (``AABB``...): lines with the same letter    share of pairs
                    end in words that rhyme (CMU Pronouncing Dictionary)
==================  ==========================================================  =============

Words are runs of letters and digits (inner apostrophes and hyphens allowed), compared
case-insensitively; lines are the non-empty lines of the answer. Two words rhyme when they
differ and share the rhyming part (the last stressed vowel onwards) of some pronunciation in the
CMU Pronouncing Dictionary (the ``pronouncing`` package, which ships it: no network).

The score is the weighted fraction of the criteria met (weights 1 by default, set through the
env's ``weights``); an optional LLM judge (``config.judge``, a backend spec) adds a ``judge``
criterion for quality, never on its own. Success: score 1 (every constraint met).

Every task is generated from a reference poem that meets all its constraints (the oracle's
answer): lines of an opening word (the acrostic letter), a template with a noun (a required
word where one is due) and an end word from a rhyme group.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import FrozenDict
from llm_trainer.envs.problems.judge import LLMJudge
from llm_trainer.envs.problems.spec import (
    Check,
    EvaluationMetrics,
    ProblemFamily,
    ProblemSpec,
    check_choices,
    check_per_difficulty,
)
from llm_trainer.envs.tooluse.base import Draws

CONSTRAINT_KINDS = (
    "line_count",
    "word_count",
    "required_words",
    "banned_words",
    "acrostic",
    "rhyme",
)

# -- the vocabulary of the reference poems ----------------------------------------------------

#: Line openers by initial letter (the acrostic letters).
OPENERS: dict[str, tuple[str, ...]] = {
    "a": ("All", "Across", "Around"),
    "b": ("Beneath", "Beyond", "Bright"),
    "c": ("Calm", "Close", "Cool"),
    "d": ("Down", "Deep", "Dark"),
    "e": ("Each", "Every", "Even"),
    "f": ("Far", "From", "Free"),
    "g": ("Gently", "Golden", "Green"),
    "h": ("Here", "High", "Hushed"),
    "i": ("In", "Inside", "Idle"),
    "j": ("Joyful", "Jade"),
    "k": ("Kind", "Keen"),
    "l": ("Low", "Lonely", "Late"),
    "m": ("Misty", "Many", "Mild"),
    "n": ("Now", "Near", "Nine"),
    "o": ("Over", "Once", "Out"),
    "p": ("Past", "Pale", "Proud"),
    "q": ("Quiet", "Quick"),
    "r": ("Rising", "Red", "Restless"),
    "s": ("Softly", "Slowly", "Still"),
    "t": ("Through", "Tonight", "Tall"),
    "u": ("Under", "Until", "Up"),
    "v": ("Vast", "Velvet"),
    "w": ("Warm", "Wild", "Where"),
    "y": ("Young", "Yellow"),
    "z": ("Zealous",),
}
#: Acrostic words by length (letters with openers only).
ACROSTICS: dict[int, tuple[str, ...]] = {
    3: ("SUN", "SKY", "SEA", "DAY", "OWL", "ELM", "FOG", "DEW", "ICE", "JOY"),
    4: ("MOON", "STAR", "RAIN", "HOPE", "WIND", "LAKE", "TIDE", "SNOW", "LEAF", "BIRD", "DAWN"),
    5: ("LIGHT", "RIVER", "STORM", "BLOOM", "CLOUD", "STONE", "OCEAN", "FROST", "DREAM", "EARTH"),
    6: ("SPRING", "FOREST", "WINTER", "SUNSET", "GARDEN", "SHADOW", "ISLAND", "BREEZE"),
}
#: Middle parts of a line; ``{x}`` is a noun (a required word where one is due).
TEMPLATES = (
    "the {x} drifts into the",
    "we carry the {x} across the",
    "our {x} keeps singing of the",
    "my {x} goes wandering to the",
    "the {x} remembers the",
    "the {x} leans toward the",
    "one {x} sleeps beside the",
    "that {x} rolls over the",
)
NOUNS = ("lamp", "boat", "cat", "bell", "kite", "fox", "path", "door", "map", "cup", "ship", "drum")
REQUIRED = (
    "lantern", "river", "copper", "whisper", "harbor", "meadow", "ember", "thunder", "orchard",
    "compass", "feather", "mirror", "candle", "canyon", "violet", "silver", "anchor", "marble",
)  # fmt: skip
#: Words no reference poem contains (so any of them can be banned).
BANNED = (
    "very", "really", "just", "thing", "nice", "good", "bad", "stuff", "quite", "maybe",
    "suddenly", "literally", "basically", "totally", "amazing", "awesome", "okay", "pretty",
)  # fmt: skip
#: End words, in groups that rhyme (checked against the CMU dictionary by the tests).
RHYME_GROUPS = (
    ("day", "bay", "way", "clay", "tray"),
    ("night", "light", "kite", "height", "flight"),
    ("sea", "tree", "key", "knee", "bee"),
    ("sky", "eye", "pie", "tie"),
    ("moon", "noon", "tune", "dune", "spoon"),
    ("rain", "lane", "plain", "chain", "grain"),
    ("sun", "bun", "nun", "ton"),
    ("song", "gong", "throng", "prong"),
    ("home", "foam", "dome", "comb"),
    ("snow", "crow", "bow", "toe"),
    ("gold", "fold", "mold", "hold"),
    ("tide", "side", "ride", "bride"),
    ("hill", "mill", "sill", "quill"),
    ("star", "car", "jar", "bar"),
    ("bell", "shell", "well", "spell"),
)
THEMES = (
    "the sea", "a winter night", "an old city", "a garden", "the moon", "a long road",
    "a storm", "the morning", "a small boat", "the mountains", "a lighthouse", "the rain",
)  # fmt: skip

_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_LETTER = re.compile(r"[^\W\d_]")
_SCHEMES = ("couplets", "alternate")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ConstrainedWritingConfig:
    """Templates and difficulty parameters of ``ConstrainedWriting-v0`` (the env's
    ``config``)."""

    constraints: tuple[str, ...] = CONSTRAINT_KINDS
    """Constraint kinds a task draws from."""
    count: tuple[int, int, int] = (2, 3, 5)
    """Constraints per task at difficulties 1, 2, 3 (at most ``len(constraints)``)."""
    lines: tuple[int, int, int] = (3, 4, 5)
    """Lines of the poem at difficulties 1, 2, 3."""
    judge: str | None = None
    """A backend spec (``transformers:DIR``, ``vllm:DIR``, ``openai:URL#MODEL``) for an LLM
    judge of quality: one more criterion, ``judge``. Off by default; never the only one."""

    def __post_init__(self) -> None:
        if not self.constraints:
            raise ConfigError(
                "config.constraints must name at least one constraint kind"
                + (" (the judge cannot be the only criterion)" if self.judge else "")
            )
        check_choices("constraints", self.constraints, CONSTRAINT_KINDS)
        check_per_difficulty("count", self.count, 1, len(CONSTRAINT_KINDS))
        check_per_difficulty("lines", self.lines, min(ACROSTICS), max(ACROSTICS))
        if self.judge is not None and (not isinstance(self.judge, str) or not self.judge):
            raise ConfigError(f"config.judge must be a backend spec string, got {self.judge!r}")


@functools.lru_cache(maxsize=8192)
def rhyming_parts(word: str) -> frozenset[str]:
    """The rhyming parts of ``word``'s pronunciations (empty when the CMU dictionary does not
    know it). The dictionary loads on first use (about half a second)."""
    import pronouncing

    return frozenset(pronouncing.rhyming_part(p) for p in pronouncing.phones_for_word(word))


def rhymes(a: str, b: str) -> bool:
    """Whether two different words rhyme (case-insensitive).

    >>> rhymes("day", "play"), rhymes("Moon", "tune"), rhymes("day", "day"), rhymes("sea", "sun")
    (True, True, False, False)
    """
    a, b = a.casefold(), b.casefold()
    return a != b and not rhyming_parts(a).isdisjoint(rhyming_parts(b))


def words(text: str) -> list[str]:
    """The words of ``text``, case-folded.

    >>> words("Don't stop - the well-lit road, 2 ways!")
    ["don't", 'stop', 'the', 'well-lit', 'road', '2', 'ways']
    """
    return [w.casefold() for w in _WORD.findall(text)]


def scheme_letters(n_lines: int, style: str) -> str:
    """A rhyme scheme over ``n_lines`` lines: couplets ``AABBC`` or alternating ``ABABCDC``.

    >>> scheme_letters(5, "couplets"), scheme_letters(6, "alternate")
    ('AABBC', 'ABABCD')
    """
    if style == "couplets":
        return "".join(chr(65 + i // 2) for i in range(n_lines))
    return "".join(chr(65 + 2 * (i // 4) + i % 2) for i in range(n_lines))


def _rhyme_pairs(scheme: str) -> list[tuple[int, int]]:
    """Consecutive lines (0-based) that share a scheme letter."""
    last: dict[str, int] = {}
    pairs = []
    for i, letter in enumerate(scheme):
        if letter in last:
            pairs.append((last[letter], i))
        last[letter] = i
    return pairs


def _listing(items: tuple[str, ...], joiner: str) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {joiner} {items[-1]}"


class ConstrainedWritingFamily(ProblemFamily[ConstrainedWritingConfig]):
    """Short poems under checkable constraints (see the module docstring)."""

    name = "constrained_writing"
    config_class = ConstrainedWritingConfig
    metrics = EvaluationMetrics(dict.fromkeys(CONSTRAINT_KINDS, 1.0), success_threshold=1.0)

    def __init__(self, config: ConstrainedWritingConfig) -> None:
        super().__init__(config)
        self.judge = LLMJudge(config.judge) if config.judge is not None else None

    def default_metrics(self) -> EvaluationMetrics:
        if self.judge is None:
            return self.metrics
        weights = {**self.metrics.weights, "judge": 1.0}
        return EvaluationMetrics(weights, self.metrics.gates, self.metrics.success_threshold)

    def generate(self, rng: np.random.Generator, difficulty: int) -> ProblemSpec:
        c = self.config
        d = Draws(rng, block=64)
        n_lines = c.lines[difficulty - 1]
        pool = list(c.constraints)
        kinds = [
            pool.pop(d.integer(0, len(pool)))
            for _ in range(min(len(pool), c.count[difficulty - 1]))
        ]
        kinds.sort(key=CONSTRAINT_KINDS.index)
        word = d.pick(ACROSTICS[n_lines])
        initials = (
            word.lower()
            if "acrostic" in kinds
            else "".join(d.pick(tuple(OPENERS)) for _ in range(n_lines))
        )
        scheme = scheme_letters(n_lines, d.pick(_SCHEMES))
        letters = list(dict.fromkeys(scheme))
        picked = _draw(d, tuple(range(len(RHYME_GROUPS))), len(letters))  # a group per letter
        groups = {letter: list(RHYME_GROUPS[g]) for letter, g in zip(letters, picked, strict=True)}
        ends = [groups[letter].pop(d.integer(0, len(groups[letter]))) for letter in scheme]
        required = _draw(d, REQUIRED, min(n_lines, difficulty + 1))
        nouns = list(required) if "required_words" in kinds else []
        nouns += [d.pick(NOUNS) for _ in range(n_lines - len(nouns))]
        lines = [
            f"{d.pick(OPENERS[initials[i]])} {d.pick(TEMPLATES).format(x=nouns[i])} {ends[i]}"
            for i in range(n_lines)
        ]
        poem = "\n".join(lines)
        n_words = len(words(poem))
        low, high = n_words - d.integer(1, 6), n_words + d.integer(1, 6)
        banned = _draw(d, BANNED, difficulty + 1)
        rules = {
            "line_count": (n_lines, f"exactly {n_lines} lines"),
            "word_count": ((low, high), f"between {low} and {high} words"),
            "required_words": (required, f"use the words {_listing(required, 'and')}"),
            "banned_words": (banned, f"do not use the words {_listing(banned, 'or')}"),
            "acrostic": (word, f"the first letters of the lines spell {word}"),
            "rhyme": (scheme, f"rhyme scheme {scheme} (lines with the same letter rhyme)"),
        }
        constraints = tuple(rules[k][1] for k in kinds)
        statement = (
            f"Write a short poem about {d.pick(THEMES)}. Rules: {'; '.join(constraints)}. "
            "Answer with the poem only, one line per line."
        )
        return ProblemSpec(
            domain="creative/constrained-writing",
            statement=statement,
            answer=poem,
            difficulty=difficulty,
            constraints=constraints,
            objectives=("write well",) if self.judge is not None else (),
            answer_format="the poem, one line per line",
            data=FrozenDict({k: rules[k][0] for k in kinds}),
        )

    def check(self, spec: ProblemSpec, answer: str) -> Check:
        data = spec.data
        lines = [line.strip() for line in answer.splitlines() if line.strip()]
        found = words(answer)
        present = set(found)
        criteria: dict[str, float] = {}
        failures: list[str] = []

        def record(kind: str, score: float, reason: str) -> None:
            criteria[kind] = score
            if score < 1.0:
                failures.append(reason)

        if "line_count" in data:
            n = data["line_count"]
            record("line_count", float(len(lines) == n), f"{len(lines)} lines, not {n}")
        if "word_count" in data:
            low, high = data["word_count"]
            n = len(found)
            record("word_count", float(low <= n <= high), f"{n} words, not {low}-{high}")
        if "required_words" in data:
            missing = [w for w in data["required_words"] if w not in present]
            total = len(data["required_words"])
            share = (total - len(missing)) / total
            record("required_words", share, f"missing required words: {', '.join(missing)}")
        if "banned_words" in data:
            used = [w for w in data["banned_words"] if w in present]
            total = len(data["banned_words"])
            share = (total - len(used)) / total
            record("banned_words", share, f"banned words used: {', '.join(used)}")
        if "acrostic" in data:
            record("acrostic", *_acrostic(data["acrostic"], lines))
        if "rhyme" in data:
            record("rhyme", *_rhyme(data["rhyme"], lines))
        if self.judge is not None:
            criteria["judge"] = self.judge.score(spec.statement, answer)
        details = f"judge {criteria['judge']:.2f}" if "judge" in criteria else ""
        return Check(criteria, tuple(failures), details)


def _draw(d: Draws, options: tuple[T, ...], k: int) -> tuple[T, ...]:
    """``k`` distinct options in drawing order."""
    pool = list(options)
    return tuple(pool.pop(d.integer(0, len(pool))) for _ in range(min(k, len(pool))))


def _acrostic(word: str, lines: list[str]) -> tuple[float, str]:
    initials = []
    for line in lines:
        letter = _LETTER.search(line)
        initials.append(letter.group().casefold() if letter else "?")
    matches = sum(a == b for a, b in zip(initials, word.casefold(), strict=False))
    spelled = "".join(initials).upper()
    spelled = spelled if len(spelled) <= 20 else f"{spelled[:20]}..."
    return matches / max(len(word), len(lines)), f"the first letters spell {spelled}, not {word}"


def _rhyme(scheme: str, lines: list[str]) -> tuple[float, str]:
    pairs = _rhyme_pairs(scheme)
    if not pairs:
        return 1.0, ""
    ends = []
    for line in lines:
        found = _WORD.findall(line[-200:])  # the last word is all that matters
        ends.append(found[-1].casefold() if found else "")
    good, reason = 0, ""
    for a, b in pairs:
        if b >= len(ends):
            reason = reason or f"rhyme scheme {scheme} needs {len(scheme)} lines"
        elif rhymes(ends[a], ends[b]):
            good += 1
        else:
            shown = [w if len(w) <= 20 else f"{w[:17]}..." for w in (ends[a], ends[b])]
            reason = reason or f"lines {a + 1} and {b + 1} do not rhyme ({shown[0]}, {shown[1]})"
    return good / len(pairs), reason


def vocabulary() -> set[str]:
    """Every word a reference poem can contain (the tests check that none can be banned)."""
    parts: list[Any] = [*OPENERS.values(), NOUNS, REQUIRED, *RHYME_GROUPS, TEMPLATES]
    return {w for part in parts for text in part for w in words(text.replace("{x}", ""))}
