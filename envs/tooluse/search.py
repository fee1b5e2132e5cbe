"""``LLMTrainer/Search-v0``: questions about a fictional encyclopedia, answered by searching."""

from __future__ import annotations

import numpy as np

from llm_trainer.envs.spaces import MAX_TEXT_LENGTH
from llm_trainer.envs.tools import ToolRegistry, search_tool
from llm_trainer.envs.tools.search import Corpus, corpus
from llm_trainer.envs.tooluse.base import AnswerKind, Draws, Task, ToolUseEnv, tool_call

_SEARCH = frozenset({"search"})


def _ask(prompt: str, answer: int | str, *queries: str) -> Task:
    """A search task; integer answers are compared as numbers, the rest as text."""
    kind: AnswerKind = "number" if isinstance(answer, int) else "text"
    plan = tuple(tool_call("search", query=q) for q in queries)
    return Task(prompt, str(answer), kind, plan, _SEARCH, _SEARCH)


def _one_hop(d: Draws, docs: Corpus, difficulty: int) -> Task:
    if difficulty == 1:
        kind = d.integer(0, 3)
        if kind == 2:
            country = d.pick(docs.countries)
            return _ask(f"What is the capital of {country.name}?", country.capital, country.name)
        person = d.pick(docs.people)
        if kind == 0:
            return _ask(f"In which year was {person.name} born?", person.born, person.name)
        return _ask(f"In which city was {person.name} born?", person.birthplace, person.name)
    kind = d.integer(0, 5)
    if kind < 3:
        company = d.pick(docs.companies)
        name = company.name
        if kind == 0:
            return _ask(f"Who founded {name}?", company.founder, name)
        if kind == 1:
            return _ask(f"Where is {name} headquartered?", company.headquarters, name)
        return _ask(f"In which year was {name} founded?", company.founded, name)
    if kind == 3:
        country = d.pick(docs.countries)
        return _ask(f"What currency is used in {country.name}?", country.currency, country.name)
    person = d.pick(docs.people)
    return _ask(f"What is the profession of {person.name}?", person.profession, person.name)


def _two_hop(d: Draws, docs: Corpus) -> Task:
    company = d.pick(docs.companies)
    founder = next(p for p in docs.people if p.name == company.founder)
    if d.uniform() < 0.5:
        prompt = f"In which city was the founder of {company.name} born?"
        return _ask(prompt, founder.birthplace, company.name, founder.name)
    prompt = f"In which year was the founder of {company.name} born?"
    return _ask(prompt, founder.born, company.name, founder.name)


def sample_search_task(rng: np.random.Generator, difficulty: int, docs: Corpus) -> Task:
    """Draw a search task over ``docs`` (also used by ``MultiTool-v0``)."""
    d = Draws(rng)
    return _two_hop(d, docs) if difficulty == 3 else _one_hop(d, docs, difficulty)


class SearchEnv(ToolUseEnv):
    """Questions about fictional people, countries and companies; the agent must ``search``.

    ## Description
    The corpus (:mod:`llm_trainer.envs.tools.search`) is generated from ``corpus_seed``: 120
    people, 40 countries and 60 companies with invented names, so no model knows the answers.
    Company names come in families sharing a stem ("Velor Dynamics", "Velor Labs"), so retrieval
    must rank the exact entity first. Search results are ranked by BM25.

    ## Difficulty
    | level | tasks                                                                          |
    |-------|--------------------------------------------------------------------------------|
    | 1     | a person's birth year or birthplace, a country's capital (one search)            |
    | 2     | a company's founder, headquarters or founding year, a currency, a profession     |
    |       | (one search, near-miss names in the results)                                    |
    | 3     | two hops: the birthplace or birth year of a company's founder (two searches)     |

    ## Action Space, Observation Space, Rewards, Episode End, Info
    As in :class:`~llm_trainer.envs.tooluse.base.ToolUseEnv`. ``max_episode_steps`` is 8.

    ## Arguments
    ``difficulty`` (1-3, default 1; also a reset option), ``corpus_seed`` (default 0: the
    encyclopedia), ``render_mode``, ``max_text_length``.

    ## Version History
    * v0: initial version.

    ## Example
    >>> import gymnasium as gym, llm_trainer
    >>> env = gym.make("LLMTrainer/Search-v0", difficulty=3)
    >>> prompt, info = env.reset(seed=1)
    >>> prompt.startswith("In which"), len(env.unwrapped.task.plan)
    (True, 2)
    """

    def __init__(
        self,
        difficulty: int = 1,
        *,
        corpus_seed: int = 0,
        render_mode: str | None = None,
        max_text_length: int = MAX_TEXT_LENGTH,
    ) -> None:
        self.corpus_seed = corpus_seed
        super().__init__(
            ToolRegistry([search_tool(corpus_seed)]),
            difficulty,
            render_mode=render_mode,
            max_text_length=max_text_length,
        )

    def _sample_task(self, rng: np.random.Generator, difficulty: int) -> Task:
        return sample_search_task(rng, difficulty, corpus(self.corpus_seed))
