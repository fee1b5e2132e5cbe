"""Search over a local, generated encyclopedia of fictional entities, ranked with BM25.

The corpus is a pure function of ``corpus_seed``: fictional people, countries and companies
whose facts (birth year, birthplace, capital, founder, ...) the search tasks ask about. The
names are invented, so no model knows the answers: it has to search. People are born in, and
companies are headquartered in, the cities of the weather world, which lets multi-tool tasks
chain a search into a weather lookup. No network; BM25 ranking comes from ``rank-bm25``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_trainer.core.errors import ToolError
from llm_trainer.envs.tools.weather import CITIES

MAX_QUERY_LENGTH = 256
DEFAULT_TOP_K = 3
MAX_TOP_K = 5

SPEC: Mapping[str, Any] = {
    "type": "function",
    "function": {
        "name": "search",
        "description": (
            "Search an encyclopedia of people, countries and companies. Returns the most "
            "relevant passages."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for, e.g. a name."},
                "k": {
                    "type": "integer",
                    "description": f"How many passages to return (1-{MAX_TOP_K}, default "
                    f"{DEFAULT_TOP_K}).",
                },
            },
            "required": ["query"],
        },
    },
}

_ONSETS = (
    "b",
    "br",
    "d",
    "dr",
    "f",
    "g",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "st",
    "t",
    "th",
    "v",
    "z",
    "",
)
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ia", "y")
_CODAS = ("", "n", "r", "s", "l", "th", "m", "x", "nd", "rk")
_PROFESSIONS = (
    "physicist",
    "painter",
    "novelist",
    "architect",
    "chemist",
    "composer",
    "engineer",
    "economist",
    "botanist",
    "mathematician",
    "sculptor",
    "astronomer",
)
_INDUSTRIES = (
    "shipping",
    "software",
    "textiles",
    "mining",
    "aerospace",
    "pharmaceuticals",
    "energy",
    "robotics",
    "publishing",
    "agriculture",
)
_COMPANY_SUFFIXES = ("Dynamics", "Systems", "Industries", "Labs", "Holdings", "Works")
_CURRENCIES = ("crown", "mark", "dinar", "florin", "peso", "lira", "real", "sol")
_TOKEN = re.compile(r"[a-z0-9]+")


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric tokens: the analyser of both the index and the queries."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    born: int
    birthplace: str
    profession: str


@dataclass(frozen=True, slots=True)
class Country:
    name: str
    capital: str
    founded: int
    currency: str
    population_millions: int


@dataclass(frozen=True, slots=True)
class Company:
    name: str
    founder: str
    headquarters: str
    founded: int
    industry: str


@dataclass(frozen=True, slots=True)
class Document:
    title: str
    text: str


class Corpus:
    """The generated encyclopedia: entities, one document per entity, and a BM25 index."""

    def __init__(
        self, seed: int = 0, n_people: int = 120, n_countries: int = 40, n_companies: int = 60
    ) -> None:
        self.seed = seed
        rng = np.random.default_rng([seed, 0x5EA4C4])
        used: set[str] = set()

        def word(syllables: int) -> str:
            while True:  # bounded in practice: ~10^4 distinct words per syllable count
                parts = []
                for _ in range(syllables):
                    parts.append(_ONSETS[rng.integers(len(_ONSETS))])
                    parts.append(_VOWELS[rng.integers(len(_VOWELS))])
                parts.append(_CODAS[rng.integers(len(_CODAS))])
                candidate = "".join(parts).capitalize()
                if len(candidate) >= 3 and candidate not in used:
                    used.add(candidate)
                    return candidate

        def pick(options: tuple[str, ...]) -> str:
            return options[int(rng.integers(len(options)))]

        self.people = tuple(
            Person(
                f"{word(2)} {word(2)}",
                int(rng.integers(1890, 2001)),
                pick(CITIES),
                pick(_PROFESSIONS),
            )
            for _ in range(n_people)
        )
        self.countries = tuple(
            Country(
                word(3),
                word(2),
                int(rng.integers(1200, 1990)),
                pick(_CURRENCIES),
                int(rng.integers(1, 120)),
            )
            for _ in range(n_countries)
        )
        # Companies come in families that share a stem ("Velor Dynamics", "Velor Labs"), so a
        # retriever has to rank the exact name above near-misses.
        companies = []
        stems = [word(2) for _ in range((n_companies + 1) // 2)]
        for i in range(n_companies):
            founder = self.people[int(rng.integers(len(self.people)))]
            suffix = _COMPANY_SUFFIXES[(i // len(stems)) % len(_COMPANY_SUFFIXES)]
            companies.append(
                Company(
                    f"{stems[i % len(stems)]} {suffix}",
                    founder.name,
                    pick(CITIES),
                    int(rng.integers(1900, 2021)),
                    pick(_INDUSTRIES),
                )
            )
        self.companies = tuple(companies)
        self.documents = tuple(
            [
                Document(
                    p.name,
                    f"{p.name} is {_article(p.profession)} {p.profession} born in {p.born} in "
                    f"{p.birthplace}.",
                )
                for p in self.people
            ]
            + [
                Document(
                    c.name,
                    f"{c.name} is a country founded in {c.founded}. Its capital is "
                    f"{c.capital}, its currency is the {c.currency}, and about "
                    f"{c.population_millions} million people live there.",
                )
                for c in self.countries
            ]
            + [
                Document(
                    c.name,
                    f"{c.name} is {_article(c.industry)} {c.industry} company founded in "
                    f"{c.founded} by {c.founder}. It is headquartered in {c.headquarters}.",
                )
                for c in self.companies
            ]
        )
        from rank_bm25 import BM25Okapi  # imported on first use: `import llm_trainer` stays light

        self._index = BM25Okapi([tokenize(f"{d.title} {d.text}") for d in self.documents])

    def search(self, query: str, k: int = DEFAULT_TOP_K) -> list[Document]:
        """The ``k`` best documents for ``query`` (ties broken by corpus order)."""
        tokens = tokenize(query)
        if not tokens:
            return []
        scores = self._index.get_scores(tokens)
        order = np.argsort(-scores, kind="stable")[:k]
        return [self.documents[i] for i in order if scores[i] > 0]

    def __reduce__(self) -> tuple[Any, ...]:  # pickles as its seed; rebuilt from the cache
        return (corpus, (self.seed,))


@functools.lru_cache(maxsize=8)
def corpus(seed: int = 0) -> Corpus:
    """The (cached, immutable) corpus for ``seed``."""
    return Corpus(seed)


class SearchTool:
    """The ``search`` tool over :func:`corpus` ``(corpus_seed)``."""

    def __init__(self, corpus_seed: int = 0) -> None:
        self.corpus = corpus(corpus_seed)

    def __call__(self, arguments: Mapping[str, Any]) -> str:
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ToolError("missing required non-empty string argument 'query'")
        if len(query) > MAX_QUERY_LENGTH:
            raise ToolError(f"query too long ({len(query)} > {MAX_QUERY_LENGTH} characters)")
        k = arguments.get("k", DEFAULT_TOP_K)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_TOP_K:
            raise ToolError(f"'k' must be an integer from 1 to {MAX_TOP_K}, got {k!r}")
        hits = self.corpus.search(query, k)
        if not hits:
            return "no results"
        return "\n".join(f"{i}. {doc.text}" for i, doc in enumerate(hits, 1))
