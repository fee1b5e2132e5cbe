"""``LLMTrainer/MultiTool-v0``: tasks that need the right tools, often several of them."""

from __future__ import annotations

import numpy as np

from llm_trainer.envs.spaces import MAX_TEXT_LENGTH
from llm_trainer.envs.tools import ToolRegistry, calculator_tool, search_tool, weather_tool
from llm_trainer.envs.tools.search import corpus
from llm_trainer.envs.tools.weather import CITIES, WeatherWorld
from llm_trainer.envs.tooluse.base import Draws, Task, ToolUseEnv, tool_call
from llm_trainer.envs.tooluse.calculator import sample_calculator_task
from llm_trainer.envs.tooluse.search import sample_search_task
from llm_trainer.envs.tooluse.weather import sample_weather_task

_DIFFERENCE_PROMPT = (
    "How many degrees warmer is it in {a} than in {b} on {date}? Answer in °C (negative if "
    "{a} is colder)."
)


class MultiToolEnv(ToolUseEnv):
    """Tasks that need the right choice among calculator, weather and search, and chains of calls.

    ## Description
    All three tools are offered at every step. The agent must pick the tool(s) the task needs:
    ``tool_correct`` is false when a required tool is never called or a tool outside the task's
    allowed set is (e.g. ``search`` for an arithmetic question).

    ## Difficulty
    | level | tasks                                                                 | tools       |
    |-------|-----------------------------------------------------------------------|-------------|
    | 1     | a difficulty-1 task of Calculator, Weather or Search (one call)        | the one     |
    | 2     | the temperature difference between two cities on a date                | weather x2, |
    |       |                                                                       | calculator* |
    | 3     | the temperature difference between a person's birthplace (found by     | search,     |
    |       | searching) and another city                                           | weather x2, |
    |       |                                                                       | calculator* |

    \\* allowed, not required: the agent may subtract by itself.

    ## Action Space, Observation Space, Rewards, Episode End, Info
    As in :class:`~llm_trainer.envs.tooluse.base.ToolUseEnv`. ``max_episode_steps`` is 10.

    ## Arguments
    ``difficulty`` (1-3, default 1; also a reset option), ``corpus_seed`` (default 0),
    ``render_mode``, ``max_text_length``.

    ## Version History
    * v0: initial version.

    ## Example
    >>> import gymnasium as gym, llm_trainer
    >>> env = gym.make("LLMTrainer/MultiTool-v0", difficulty=2)
    >>> prompt, info = env.reset(seed=0)
    >>> [spec["function"]["name"] for spec in info["tools"]]
    ['calculator', 'weather', 'search']
    >>> [call.name for call in env.unwrapped.task.plan]
    ['weather', 'weather', 'calculator']
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
            ToolRegistry([calculator_tool(), weather_tool(), search_tool(corpus_seed)]),
            difficulty,
            render_mode=render_mode,
            max_text_length=max_text_length,
        )

    def _sample_task(self, rng: np.random.Generator, difficulty: int) -> Task:
        docs = corpus(self.corpus_seed)
        if difficulty == 1:
            family = int(rng.integers(3))
            if family == 0:
                return sample_calculator_task(rng, 1)
            if family == 1:
                return sample_weather_task(rng, 1)
            return sample_search_task(rng, 1, docs)
        d = Draws(rng)
        world = WeatherWorld(d.integer(0, 2**31))
        date = d.pick(world.dates)
        plan = []
        if difficulty == 2:
            city = d.pick(CITIES)
            prompt_city = city
            required = frozenset({"weather"})
        else:
            person = d.pick(docs.people)
            city = person.birthplace
            prompt_city = f"the birthplace of {person.name}"
            plan.append(tool_call("search", query=person.name))
            required = frozenset({"search", "weather"})
        other = d.pick([c for c in CITIES if c != city])
        t_city = world.report(city, date).temperature_c
        t_other = world.report(other, date).temperature_c
        plan += [
            tool_call("weather", city=city, date=date),
            tool_call("weather", city=other, date=date),
            tool_call("calculator", expression=f"{t_city} - ({t_other})"),
        ]
        return Task(
            _DIFFERENCE_PROMPT.format(a=prompt_city, b=other, date=date),
            str(t_city - t_other),
            "number",
            tuple(plan),
            required,
            required | {"calculator"},
            world.seed,
        )
