"""``LLMTrainer/Weather-v0``: questions about a simulated week of weather."""

from __future__ import annotations

import datetime as dt

import numpy as np

from llm_trainer.envs.spaces import MAX_TEXT_LENGTH
from llm_trainer.envs.tools import ToolRegistry, weather_tool
from llm_trainer.envs.tools.weather import CITIES, N_DAYS, WeatherWorld
from llm_trainer.envs.tooluse.base import AnswerKind, Draws, Task, ToolUseEnv, tool_call

_FIELDS = (  # (report field, how the question names it, unit hint)
    ("humidity_pct", "humidity", " Answer in percent."),
    ("wind_kph", "wind speed", " Answer in km/h."),
    ("condition", "weather condition", " Answer with the condition as reported."),
)


def _relative_day(offset: int) -> str:
    return {0: "today", 1: "tomorrow"}.get(offset, f"in {offset} days")


def sample_weather_task(rng: np.random.Generator, difficulty: int) -> Task:
    """Draw a weather task and its world (also used by ``MultiTool-v0``)."""
    d = Draws(rng)
    world = WeatherWorld(d.integer(0, 2**31))
    dates = world.dates
    city = d.pick(CITIES)
    weather = frozenset({"weather"})
    if difficulty == 1:
        date = d.pick(dates)
        report = world.report(city, date)
        return Task(
            f"What is the temperature in {city} on {date}? Answer in °C.",
            str(report.temperature_c),
            "number",
            (tool_call("weather", city=city, date=date),),
            weather,
            weather,
            world.seed,
        )
    if difficulty == 2:
        offset = d.integer(0, N_DAYS)
        date = dates[offset]
        field, name, hint = _FIELDS[d.integer(0, len(_FIELDS))]
        value = world.report(city, date).field(field)
        kind: AnswerKind = "number" if isinstance(value, int) else "text"
        prompt = (
            f"Today is {dates[0]} ({dt.date.fromisoformat(dates[0]):%A}). What is the "
            f"{name} in {city} {_relative_day(offset)}?{hint}"
        )
        return Task(
            prompt,
            str(value),
            kind,
            (tool_call("weather", city=city, date=date),),
            weather,
            weather,
            world.seed,
        )
    other = d.pick([c for c in CITIES if c != city])
    date = d.pick(dates)
    t_city = world.report(city, date).temperature_c
    t_other = world.report(other, date).temperature_c
    answer = city if t_city > t_other else other if t_other > t_city else "same"
    prompt = (
        f"On {date}, which city is warmer: {city} or {other}? Answer with the city name, "
        "or 'same' if they are equally warm."
    )
    plan = (tool_call("weather", city=city, date=date), tool_call("weather", city=other, date=date))
    return Task(prompt, answer, "text", plan, weather, weather, world.seed)


class WeatherEnv(ToolUseEnv):
    """Questions about a simulated week of weather; the agent looks them up with ``weather``.

    ## Description
    Every episode has its own simulated world (:class:`~llm_trainer.envs.tools.WeatherWorld`,
    seeded from ``self.np_random``): a week of dates in 2026 and, for 36 cities, temperature
    (°C), condition, humidity (%) and wind (km/h). Answers cannot be memorised: the agent must
    call ``weather(city, date)``. Unknown cities or dates give an error result listing what is
    valid.

    ## Difficulty
    | level | tasks                                                                          |
    |-------|--------------------------------------------------------------------------------|
    | 1     | the temperature in a city on an explicit date (one call)                        |
    | 2     | humidity, wind or condition "today / tomorrow / in N days": the agent resolves  |
    |       | the date from "Today is ..." (one call)                                         |
    | 3     | which of two cities is warmer on a date (two calls; answer a city or "same")    |

    ## Action Space, Observation Space, Rewards, Episode End, Info
    As in :class:`~llm_trainer.envs.tooluse.base.ToolUseEnv`; the tool's result is a JSON
    object. ``max_episode_steps`` is 6.

    ## Arguments
    ``difficulty`` (1-3, default 1; also a reset option), ``render_mode``, ``max_text_length``.

    ## Version History
    * v0: initial version.

    ## Example
    >>> import gymnasium as gym, llm_trainer
    >>> env = gym.make("LLMTrainer/Weather-v0", difficulty=1)
    >>> prompt, info = env.reset(seed=3)
    >>> prompt.startswith("What is the temperature in"), info["tools"][0]["function"]["name"]
    (True, 'weather')
    """

    def __init__(
        self,
        difficulty: int = 1,
        *,
        render_mode: str | None = None,
        max_text_length: int = MAX_TEXT_LENGTH,
    ) -> None:
        super().__init__(
            ToolRegistry([weather_tool()]),
            difficulty,
            render_mode=render_mode,
            max_text_length=max_text_length,
        )

    def _sample_task(self, rng: np.random.Generator, difficulty: int) -> Task:
        return sample_weather_task(rng, difficulty)
