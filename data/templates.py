"""Data strategy 1, manual templates: canonical question -> tool call -> answer examples.

Each of the three tools has at least 50 hand-written *canonical examples*
(:data:`CANONICAL`): a question template with slots, the tool call that answers it, and where the
answer comes from. :func:`template_examples` instantiates them (numbers, cities and dates, people,
countries and companies of the encyclopedia), rewrites the question with a deterministic
:func:`paraphrase` (synonym substitution, reordering, framing), and replays the solution through
the real env (:func:`~llm_trainer.data.base.replay_task`), so the observation is the
tool's real output and the metrics are the env's.

Determinism: everything is drawn from ``numpy.random.default_rng(seed)``; example ``i`` draws its
own seed ``s`` from it and is a pure function of ``(canonical, s)``; ``s`` is the example's
``Trajectory.seed`` and the seed of its weather world. Different seeds give different data; the
same seed gives the same data. No global RNG is touched.

>>> ts = template_trajectories("calculator", 3, seed=0)
>>> [t.source for t in ts], all(t.success for t in ts)
(['template', 'template', 'template'], True)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from llm_trainer.core.errors import ConfigError, ToolError
from llm_trainer.core.records import ToolCall
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.data.base import (
    TOOL_ENV_IDS,
    EnvPool,
    Example,
    replay_task,
    single_call_task,
    solution_actions,
)
from llm_trainer.envs.tools.calculator import calculator
from llm_trainer.envs.tools.search import Company, Country, Person, corpus
from llm_trainer.envs.tools.weather import CITIES, N_DAYS, WeatherWorld
from llm_trainer.envs.tooluse.base import AnswerKind, Task

ToolName = Literal["calculator", "weather", "search"]
TOOLS: tuple[ToolName, ...] = get_args(ToolName)
SOURCE = "template"


@dataclass(frozen=True, slots=True)
class Instance:
    """A canonical example with its slots filled.

    Attributes:
        question: The canonical wording of the question.
        call: The tool call that answers it.
        answer: The expected answer.
        answer_kind: ``"number"`` or ``"text"`` (how the env compares answers).
        entities: Strings the paraphraser must keep verbatim (numbers are always kept).
    """

    question: str
    call: ToolCall
    answer: str
    answer_kind: AnswerKind
    entities: tuple[str, ...]


# -- calculator ----------------------------------------------------------------------------------

Slot = Callable[[np.random.Generator, Mapping[str, str]], str]


def _int(lo: int, hi: int) -> Slot:
    return lambda rng, _: str(int(rng.integers(lo, hi + 1)))


def _choice(*options: int) -> Slot:
    return lambda rng, _: str(options[int(rng.integers(len(options)))])


def _multiple_of(slot: str, lo: int, hi: int) -> Slot:
    return lambda rng, v: str(int(v[slot]) * int(rng.integers(lo, hi + 1)))


def _square(lo: int, hi: int) -> Slot:
    return lambda rng, _: str(int(rng.integers(lo, hi + 1)) ** 2)


def _below(slot: str, lo: int = 1) -> Slot:
    return lambda rng, v: str(int(rng.integers(lo, int(v[slot]))))


def _rest(total: str, part: str) -> Slot:
    return lambda rng, v: str(int(v[total]) - int(v[part]))


def _money(lo: int, hi: int) -> Slot:
    def draw(rng: np.random.Generator, _: Mapping[str, str]) -> str:
        cents = int(rng.integers(lo * 100, hi * 100 + 1))
        return str(cents // 100) if cents % 100 == 0 else f"{cents // 100}.{cents % 100:02d}"

    return draw


def _decimal(lo: int, hi: int) -> Slot:
    """A number with one decimal place, never a whole number."""
    return lambda rng, _: f"{int(rng.integers(lo, hi + 1))}.{int(rng.integers(1, 10))}"


def _unround(lo: int, hi: int) -> Slot:
    """Two decimal places, never exactly .50 (rounding half is ambiguous to people)."""
    cents = [k for k in range(1, 100) if k != 50]
    return lambda rng, _: (
        f"{int(rng.integers(lo, hi + 1))}.{cents[int(rng.integers(len(cents)))]:02d}"
    )


@dataclass(frozen=True, slots=True)
class CalculatorCanonical:
    """A calculator canonical: a question and an expression over the same slots."""

    id: str
    question: str
    expression: str
    slots: Mapping[str, Slot]
    tool: ToolName = "calculator"

    def instantiate(self, rng: np.random.Generator, seed: int, corpus_seed: int = 0) -> Instance:
        """Fill the slots from ``rng`` and compute the answer with the calculator."""
        values: dict[str, str] = {}
        for name, slot in self.slots.items():
            values[name] = slot(rng, values)
        expression = self.expression.format(**values)
        try:
            answer = calculator({"expression": expression})
        except ToolError as exc:  # a bug in the table, not a user error
            raise AssertionError(f"canonical {self.id}: {expression!r} failed: {exc}") from exc
        return Instance(
            self.question.format(**values),
            ToolCall("calculator", {"expression": expression}),
            answer,
            "number",
            tuple(values.values()),
        )


def _calc(id: str, question: str, expression: str, **slots: Slot) -> CalculatorCanonical:
    return CalculatorCanonical(id, question, expression, slots)


_A, _B, _C = _int(2, 99), _int(2, 99), _int(2, 99)
_PCT = _choice(5, 10, 12, 15, 20, 25, 30, 40, 50, 75)

CALCULATOR_CANONICAL: tuple[CalculatorCanonical, ...] = (
    _calc("add", "What is {a} plus {b}?", "{a} + {b}", a=_int(2, 999), b=_int(2, 999)),
    _calc("sub", "What is {a} minus {b}?", "{a} - {b}", a=_int(2, 999), b=_int(2, 999)),
    _calc("mul", "What is {a} times {b}?", "{a} * {b}", a=_A, b=_int(2, 25)),
    _calc("div", "What is {a} divided by {b}?", "{a} / {b}",
          b=_int(2, 19), a=_multiple_of("b", 2, 60)),
    _calc("sum3", "What is the sum of {a}, {b} and {c}?", "{a} + {b} + {c}", a=_A, b=_B, c=_C),
    _calc("prod3", "What is the product of {a}, {b} and {c}?", "{a} * {b} * {c}",
          a=_int(2, 30), b=_int(2, 30), c=_int(2, 12)),
    _calc("squared", "What is {a} squared?", "{a} ** 2", a=_int(11, 999)),
    _calc("cubed", "What is {a} cubed?", "{a} ** 3", a=_int(5, 99)),
    _calc("power", "What is {a} to the power of {n}?", "{a} ** {n}", a=_int(2, 12), n=_int(3, 9)),
    _calc("sqrt", "What is the square root of {sq}?", "sqrt({sq})", sq=_square(11, 300)),
    _calc("percent_of", "What is {p}% of {b}?", "{b} * {p} / 100", p=_PCT, b=_int(20, 5000)),
    _calc("remainder", "What is the remainder when {a} is divided by {b}?", "{a} % {b}",
          a=_int(100, 9999), b=_int(3, 97)),
    _calc("mean3", "What is the average of {a}, {b} and {c}?", "({a} + {b} + {c}) / 3",
          a=_A, b=_B, c=_C),
    _calc("mean2", "What is the average of {a} and {b}?", "({a} + {b}) / 2", a=_A, b=_B),
    _calc("discount", "A shirt costs {price} dollars and is discounted by {p}%. What is the sale "
          "price in dollars?", "{price} * (100 - {p}) / 100", price=_money(5, 300), p=_PCT),
    _calc("tip", "A meal costs {price} dollars. How much is a {p}% tip, in dollars?",
          "{price} * {p} / 100", price=_money(10, 250), p=_choice(10, 12, 15, 18, 20, 25)),
    _calc("split_bill", "A bill of {total} dollars is split evenly between {k} people. How much "
          "does each person pay?", "{total} / {k}", k=_int(2, 8), total=_multiple_of("k", 5, 90)),
    _calc("rect_area", "What is the area of a rectangle {a} m long and {b} m wide, in square "
          "metres?", "{a} * {b}", a=_int(2, 300), b=_int(2, 300)),
    _calc("rect_perimeter", "What is the perimeter of a rectangle of {a} cm by {b} cm?",
          "2 * ({a} + {b})", a=_int(2, 500), b=_int(2, 500)),
    _calc("square_area", "What is the area of a square with sides of {a} m?", "{a} ** 2",
          a=_int(2, 400)),
    _calc("cube_volume", "What is the volume of a cube with edges of {a} cm, in cubic "
          "centimetres?", "{a} ** 3", a=_int(2, 60)),
    _calc("triangle_area", "What is the area of a triangle with base {a} and height {b}?",
          "{a} * {b} / 2", a=_int(2, 200), b=_int(2, 200)),
    _calc("hours_minutes", "How many minutes are there in {a} hours?", "{a} * 60", a=_int(2, 240)),
    _calc("minutes_seconds", "How many seconds are there in {a} minutes?", "{a} * 60",
          a=_int(2, 600)),
    _calc("days_hours", "How many hours are there in {a} days?", "{a} * 24", a=_int(2, 365)),
    _calc("km_m", "Convert {a} kilometres to metres.", "{a} * 1000", a=_int(2, 900)),
    _calc("c_to_f", "Convert {a} degrees Celsius to degrees Fahrenheit.", "{a} * 9 / 5 + 32",
          a=_int(-40, 45)),
    _calc("kg_g", "How many grams are there in {d} kilograms?", "{d} * 1000", d=_decimal(1, 99)),
    _calc("speed", "A car travels {dist} km in {h} hours. What is its average speed in km/h?",
          "{dist} / {h}", h=_int(2, 9), dist=_multiple_of("h", 20, 120)),
    _calc("unit_cost", "If {k} notebooks cost {price} dollars each, what do they cost in total?",
          "{k} * {price}", k=_int(2, 40), price=_money(1, 30)),
    _calc("savings", "You save {a} dollars a month for {k} months. How much have you saved?",
          "{a} * {k}", a=_int(10, 900), k=_int(2, 48)),
    _calc("tank_left", "A tank holds {a} litres and {b} litres are used. How many litres are "
          "left?", "{a} - {b}", a=_int(50, 5000), b=_below("a", 1)),
    _calc("increase", "What is {a} increased by {p}%?", "{a} * (100 + {p}) / 100",
          a=_int(20, 5000), p=_PCT),
    _calc("decrease", "What is {a} decreased by {p}%?", "{a} * (100 - {p}) / 100",
          a=_int(20, 5000), p=_PCT),
    _calc("what_percent", "What percentage of {b} is {a}?", "{a} / {b} * 100",
          b=_choice(4, 5, 8, 10, 20, 25, 40, 50, 125, 200, 250), a=_below("b", 1)),
    _calc("difference", "What is the difference between {a} and {b}?", "abs({a} - {b})",
          a=_int(2, 9999), b=_int(2, 9999)),
    _calc("max2", "Which is larger, {a} or {b}?", "max({a}, {b})",
          a=_int(2, 9999), b=_int(2, 9999)),
    _calc("min3", "What is the smallest of {a}, {b} and {c}?", "min({a}, {b}, {c})",
          a=_int(2, 9999), b=_int(2, 9999), c=_int(2, 9999)),
    _calc("abs", "What is the absolute value of -{a}?", "abs(-{a})", a=_int(2, 99999)),
    _calc("round", "Round {d} to the nearest whole number.", "round({d})", d=_unround(0, 999)),
    _calc("paren_mul", "Compute ({a} + {b}) * {c}.", "({a} + {b}) * {c}",
          a=_A, b=_B, c=_int(2, 12)),
    _calc("mul_sub", "Compute {a} * {b} - {c}.", "{a} * {b} - {c}", a=_A, b=_int(2, 20), c=_C),
    _calc("paren_div", "Evaluate ({a} + {b}) / {c}.", "({a} + {b}) / {c}",
          c=_int(2, 12), t=_multiple_of("c", 3, 80), a=_below("t", 1), b=_rest("t", "a")),
    _calc("mul_add", "What is {a} times {b} plus {c}?", "{a} * {b} + {c}",
          a=_A, b=_int(2, 20), c=_C),
    _calc("half", "What is half of {a}?", "{a} / 2", a=_int(3, 9999)),
    _calc("third", "What is a third of {a}?", "{a} / 3", k=_choice(3), a=_multiple_of("k", 2, 999)),
    _calc("double", "What is double {a}?", "{a} * 2", a=_int(3, 9999)),
    _calc("add_sub", "What is {a} plus {b} minus {c}?", "{a} + {b} - {c}",
          a=_int(2, 999), b=_int(2, 999), c=_int(2, 999)),
    _calc("rect_length", "A rectangle has an area of {area} square metres and a width of {b} m. "
          "How long is it in metres?", "{area} / {b}",
          b=_int(2, 30), area=_multiple_of("b", 2, 90)),
    _calc("weeks", "How many weeks are there in {a} days?", "{a} / 7",
          k=_choice(7), a=_multiple_of("k", 2, 60)),
    _calc("decimal_add", "What is {d} plus {e}?", "{d} + {e}", d=_decimal(0, 999),
          e=_decimal(0, 999)),
    _calc("decimal_mul", "What is {d} times {b}?", "{d} * {b}", d=_decimal(0, 99), b=_int(2, 40)),
    _calc("squares_diff", "What is {a} squared minus {b} squared?", "{a} ** 2 - {b} ** 2",
          a=_int(2, 99), b=_int(2, 99)),
    _calc("boxes", "A box holds {k} eggs. How many eggs are there in {a} boxes?", "{k} * {a}",
          k=_choice(6, 10, 12, 18, 24, 30), a=_int(2, 99)),
    _calc("circumference", "What is the circumference of a circle with radius {r} cm? Use 3.14 "
          "for pi.", "2 * 3.14 * {r}", r=_int(1, 200)),
    _calc("tax", "An item costs {price} dollars before a {p}% sales tax. What does it cost with "
          "tax?", "{price} * (100 + {p}) / 100", price=_money(2, 500), p=_choice(5, 7, 8, 10, 20)),
)  # fmt: skip


# -- weather -------------------------------------------------------------------------------------

WeatherField = Literal["temperature_c", "humidity_pct", "wind_kph", "condition"]


@dataclass(frozen=True, slots=True)
class WeatherCanonical:
    """A weather canonical: a question about one field of one city on one date.

    ``offset`` is ``None`` when the question names the date (``{date}``); otherwise the question
    says "Today is {today}" and asks about the day ``offset`` days later.
    """

    id: str
    question: str
    field: WeatherField
    offset: int | None = None
    tool: ToolName = "weather"

    def instantiate(self, rng: np.random.Generator, seed: int, corpus_seed: int = 0) -> Instance:
        """Pick a city and a date of ``WeatherWorld(seed)``; the answer is the report's field."""
        world = WeatherWorld(seed)
        dates = world.dates
        city = CITIES[int(rng.integers(len(CITIES)))]
        if self.offset is None:
            today = date = dates[int(rng.integers(N_DAYS))]
        else:
            start = int(rng.integers(N_DAYS - self.offset))
            today, date = dates[start], dates[start + self.offset]
        value = world.report(city, date).field(self.field)
        return Instance(
            self.question.format(city=city, date=date, today=today),
            ToolCall("weather", {"city": city, "date": date}),
            str(value),
            "number" if isinstance(value, int) else "text",
            (city, date, today),
        )


def _wx(id: str, question: str, field: WeatherField, offset: int | None = None) -> WeatherCanonical:
    return WeatherCanonical(id, question, field, offset)


_T: WeatherField = "temperature_c"
_H: WeatherField = "humidity_pct"
_W: WeatherField = "wind_kph"
_K: WeatherField = "condition"

WEATHER_CANONICAL: tuple[WeatherCanonical, ...] = (
    _wx("temp", "What is the temperature in {city} on {date}? Answer in °C.", _T),
    _wx("temp_warm", "How warm will it be in {city} on {date}? Answer in °C.", _T),
    _wx("temp_forecast", "What temperature is forecast for {city} on {date}?", _T),
    _wx("temp_tell", "Tell me the temperature in {city} on {date} in degrees Celsius.", _T),
    _wx("temp_degrees", "How many degrees Celsius will it be in {city} on {date}?", _T),
    _wx("temp_front", "On {date}, what is the temperature in {city}?", _T),
    _wx("temp_visit", "I'm visiting {city} on {date}. What temperature should I expect, in "
        "°C?", _T),
    _wx("temp_thermometer", "What will the thermometer read in {city} on {date}, in °C?", _T),
    _wx("temp_give", "Give me the forecast temperature for {city} on {date}.", _T),
    _wx("temp_lookup", "Look up the temperature in {city} for {date}.", _T),
    _wx("temp_celsius", "What is the temperature in degrees Celsius for {city} on {date}?", _T),
    _wx("temp_today", "Today is {today}. What is the temperature in {city} today, in °C?", _T, 0),
    _wx("temp_tomorrow", "Today is {today}. How warm will it be in {city} tomorrow, in °C?", _T, 1),
    _wx("temp_2days", "Today is {today}. What temperature is expected in {city} in two "
        "days?", _T, 2),
    _wx("temp_3days", "It is {today} today. What will the temperature be in {city} in three "
        "days?", _T, 3),
    _wx("hum", "What is the humidity in {city} on {date}? Answer in percent.", _H),
    _wx("hum_how", "How humid will it be in {city} on {date}, in percent?", _H),
    _wx("hum_forecast", "What humidity is forecast for {city} on {date}?", _H),
    _wx("hum_tell", "Tell me the humidity percentage in {city} on {date}.", _H),
    _wx("hum_front", "On {date}, how humid is it in {city}, in percent?", _H),
    _wx("hum_expect", "What percentage humidity should I expect in {city} on {date}?", _H),
    _wx("hum_lookup", "Look up the humidity in {city} for {date}.", _H),
    _wx("hum_relative", "What is the relative humidity in {city} on {date}, in %?", _H),
    _wx("hum_today", "Today is {today}. How humid is it in {city} today, in percent?", _H, 0),
    _wx("hum_tomorrow", "Today is {today}. What is the humidity in {city} tomorrow?", _H, 1),
    _wx("hum_4days", "Today is {today}. What will the humidity be in {city} in four days?", _H, 4),
    _wx("wind", "What is the wind speed in {city} on {date}? Answer in km/h.", _W),
    _wx("wind_windy", "How windy will it be in {city} on {date}, in km/h?", _W),
    _wx("wind_fast", "How fast will the wind blow in {city} on {date}, in km/h?", _W),
    _wx("wind_tell", "Tell me the wind speed for {city} on {date}.", _W),
    _wx("wind_front", "On {date}, what wind speed is forecast in {city}?", _W),
    _wx("wind_kph", "What is the forecast wind in {city} on {date}, in kilometres per hour?", _W),
    _wx("wind_sail", "I want to go sailing near {city} on {date}. How strong is the wind in "
        "km/h?", _W),
    _wx("wind_lookup", "Look up the wind in {city} for {date}, in km/h.", _W),
    _wx("wind_today", "Today is {today}. How windy is it in {city} today, in km/h?", _W, 0),
    _wx("wind_tomorrow", "Today is {today}. What is the wind speed in {city} tomorrow?", _W, 1),
    _wx("wind_2days", "Today is {today}. What wind speed is expected in {city} in two "
        "days?", _W, 2),
    _wx("cond", "What is the weather condition in {city} on {date}?", _K),
    _wx("cond_like", "What will the weather be like in {city} on {date}? Answer with the "
        "condition as reported.", _K),
    _wx("cond_sunny", "Will it be sunny, cloudy or rainy in {city} on {date}? Give the reported "
        "condition.", _K),
    _wx("cond_sky", "What sky conditions are forecast for {city} on {date}?", _K),
    _wx("cond_front", "On {date}, what is the weather like in {city}? Answer with the "
        "condition.", _K),
    _wx("cond_words", "Describe the weather in {city} on {date} in one or two words, as the "
        "forecast reports it.", _K),
    _wx("cond_rain", "Should I expect rain in {city} on {date}? Answer with the reported "
        "condition.", _K),
    _wx("cond_lookup", "Look up the weather condition in {city} for {date}.", _K),
    _wx("cond_umbrella", "Do I need an umbrella in {city} on {date}? Tell me the forecast "
        "condition.", _K),
    _wx("cond_today", "Today is {today}. What is the weather like in {city} today? Answer with "
        "the condition.", _K, 0),
    _wx("cond_tomorrow", "Today is {today}. What is the weather condition in {city} "
        "tomorrow?", _K, 1),
    _wx("cond_3days", "Today is {today}. What condition is forecast for {city} in three "
        "days?", _K, 3),
    _wx("temp_trip", "My flight lands in {city} on {date}. How many degrees will it be there?", _T),
    _wx("hum_laundry", "Will laundry dry in {city} on {date}? Tell me the humidity in "
        "percent.", _H),
    _wx("wind_kite", "Is {date} a good day to fly a kite in {city}? Give the wind speed in "
        "km/h.", _W),
)  # fmt: skip


# -- search --------------------------------------------------------------------------------------

EntityKind = Literal["person", "country", "company"]


@dataclass(frozen=True, slots=True)
class SearchCanonical:
    """A search canonical: a question about one attribute of one encyclopedia entity."""

    id: str
    question: str
    entity: EntityKind
    attribute: str
    tool: ToolName = "search"

    def instantiate(self, rng: np.random.Generator, seed: int, corpus_seed: int = 0) -> Instance:
        """Pick an entity of ``corpus(corpus_seed)``; the answer is its attribute."""
        docs = corpus(corpus_seed)
        entities: Sequence[Person | Country | Company] = (
            docs.people
            if self.entity == "person"
            else docs.countries
            if self.entity == "country"
            else docs.companies
        )
        entity = entities[int(rng.integers(len(entities)))]
        value = getattr(entity, self.attribute)
        return Instance(
            self.question.format(name=entity.name),
            ToolCall("search", {"query": entity.name}),
            str(value),
            "number" if isinstance(value, int) else "text",
            (entity.name,),
        )


def _sx(id: str, question: str, entity: EntityKind, attribute: str) -> SearchCanonical:
    return SearchCanonical(id, question, entity, attribute)


SEARCH_CANONICAL: tuple[SearchCanonical, ...] = (
    _sx("born", "In which year was {name} born?", "person", "born"),
    _sx("born_when", "When was {name} born? Give the year.", "person", "born"),
    _sx("born_year", "What is the birth year of {name}?", "person", "born"),
    _sx("born_which", "Which year was {name} born in?", "person", "born"),
    _sx("born_tell", "Tell me the year {name} was born.", "person", "born"),
    _sx("born_lookup", "Look up {name}: in which year was this person born?", "person", "born"),
    _sx("place", "In which city was {name} born?", "person", "birthplace"),
    _sx("place_where", "Where was {name} born?", "person", "birthplace"),
    _sx("place_birthplace", "What is the birthplace of {name}?", "person", "birthplace"),
    _sx("place_from", "Which city does {name} come from?", "person", "birthplace"),
    _sx("place_name", "Name the city where {name} was born.", "person", "birthplace"),
    _sx("prof", "What is the profession of {name}?", "person", "profession"),
    _sx("prof_living", "What does {name} do for a living?", "person", "profession"),
    _sx("prof_job", "What is {name}'s job?", "person", "profession"),
    _sx("prof_known", "What kind of work is {name} known for? Answer with the profession.",
        "person", "profession"),
    _sx("prof_which", "Which profession does {name} have?", "person", "profession"),
    _sx("capital", "What is the capital of {name}?", "country", "capital"),
    _sx("capital_which", "Which city is the capital of {name}?", "country", "capital"),
    _sx("capital_name", "Name the capital of {name}.", "country", "capital"),
    _sx("capital_serves", "What city serves as the capital of {name}?", "country", "capital"),
    _sx("capital_lookup", "Look up {name} and tell me its capital.", "country", "capital"),
    _sx("currency", "What currency is used in {name}?", "country", "currency"),
    _sx("currency_of", "What is the currency of {name}?", "country", "currency"),
    _sx("currency_pay", "Which currency do people pay with in {name}?", "country", "currency"),
    _sx("currency_name", "Name the currency of {name}.", "country", "currency"),
    _sx("currency_money", "What money is used in {name}?", "country", "currency"),
    _sx("country_founded", "In which year was the country {name} founded?", "country",
        "founded"),
    _sx("country_founded_when", "When was {name} founded as a country? Give the year.",
        "country", "founded"),
    _sx("country_founding_year", "What is the founding year of the country {name}?", "country",
        "founded"),
    _sx("country_founded_in", "Which year was the country {name} founded in?", "country",
        "founded"),
    _sx("population", "How many million people live in {name}?", "country",
        "population_millions"),
    _sx("population_of", "What is the population of {name} in millions?", "country",
        "population_millions"),
    _sx("population_about", "About how many millions of people live in {name}?", "country",
        "population_millions"),
    _sx("population_roughly", "Roughly what is the population of {name}, in millions?",
        "country", "population_millions"),
    _sx("founder", "Who founded {name}?", "company", "founder"),
    _sx("founder_is", "Who is the founder of {name}?", "company", "founder"),
    _sx("founder_started", "Which person started the company {name}?", "company", "founder"),
    _sx("founder_name", "Name the founder of {name}.", "company", "founder"),
    _sx("founder_whom", "{name} was founded by whom?", "company", "founder"),
    _sx("founder_search", "Search the encyclopedia: who founded {name}?", "company", "founder"),
    _sx("hq", "Where is {name} headquartered?", "company", "headquarters"),
    _sx("hq_city", "In which city is {name} headquartered?", "company", "headquarters"),
    _sx("hq_where", "Where are the headquarters of {name}?", "company", "headquarters"),
    _sx("hq_based", "Which city is {name} based in?", "company", "headquarters"),
    _sx("hq_name", "Name the city where {name} has its headquarters.", "company",
        "headquarters"),
    _sx("company_founded", "In which year was the company {name} founded?", "company",
        "founded"),
    _sx("company_established", "When was {name} established? Give the year.", "company",
        "founded"),
    _sx("company_founding_year", "What is the founding year of the company {name}?", "company",
        "founded"),
    _sx("company_start", "Which year did the company {name} start?", "company", "founded"),
    _sx("industry", "What industry is {name} in?", "company", "industry"),
    _sx("industry_which", "Which industry does {name} work in?", "company", "industry"),
    _sx("industry_do", "What does the company {name} do? Answer with its industry.", "company",
        "industry"),
    _sx("industry_sector", "In which sector does {name} operate?", "company", "industry"),
)  # fmt: skip

Canonical = CalculatorCanonical | WeatherCanonical | SearchCanonical

#: The canonical examples of each tool (at least 50 each).
CANONICAL: Mapping[ToolName, tuple[Canonical, ...]] = {
    "calculator": CALCULATOR_CANONICAL,
    "weather": WEATHER_CANONICAL,
    "search": SEARCH_CANONICAL,
}


# -- the paraphraser -----------------------------------------------------------------------------

#: Interchangeable phrases (each group is safe to swap in every canonical question).
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("What is", "What's"),
    ("Compute", "Calculate", "Work out", "Evaluate", "Figure out"),
    ("plus", "added to"),
    ("times", "multiplied by"),
    ("minus", "take away"),
    ("the sum of", "the total of"),
    ("the average of", "the mean of"),
    ("Tell me", "Give me", "Let me know"),
    ("Look up", "Check", "Find"),
    ("Name the", "Identify the"),
    ("In which year", "In what year"),
    ("In which city", "In what city"),
    ("Which city", "What city"),
    ("founded", "established"),
    ("headquartered", "based"),
    ("profession", "occupation"),
    ("capital", "capital city"),
    ("currency", "official currency"),
    ("temperature", "air temperature"),
    ("humidity", "relative humidity"),
    ("wind speed", "wind strength"),
    ("forecast", "predicted"),
    ("kilometres", "kilometers"),
    ("metres", "meters"),
    ("litres", "liters"),
    ("dollars", "US dollars"),
    ("costs", "is priced at"),
)
_PREFIXES = (
    "Quick question: ",
    "Hi! ",
    "Hey, ",
    "I was wondering: ",
    "Question: ",
    "Can you help me? ",
    "Here's one for you. ",
    "Please help: ",
)
_LOWER_AFTER = frozenset({"Hey, ", "I was wondering: ", "Please help: "})
_SUFFIXES = (
    " Thanks!",
    " Thank you.",
    " Thanks in advance.",
    " Please be precise.",
    " Just the answer, please.",
    " Use a tool if you need one.",
)
#: First words that may be lower-cased after a prefix ("Hey, what is ...").
_LOWERABLE = frozenset(
    (
        "What", "What's", "Which", "Who", "Whom", "Where", "When", "How", "In", "Is", "Will",
        "Should", "Do", "Compute", "Calculate", "Evaluate", "Convert", "Round", "Tell", "Give",
        "Let", "Look", "Name", "Check", "Find", "Search", "Describe", "A", "An", "If", "You", "It",
        "My", "Identify", "Work", "Figure", "Roughly", "About", "Today", "On",
    )
)  # fmt: skip
_PLACEHOLDER_START = 0xF0000  # Supplementary Private Use Area-A: never in our questions
_PLACEHOLDER_END = 0xFFFFD
_DIGITS = re.compile(r"\d+")
_PROTECTED_NUMBER = re.compile(r"[-+]?\d+(?:[.,:/-]\d+)*")
_GROUP_PATTERNS = tuple(
    re.compile(
        r"(?<!\w)(?:"
        + "|".join(re.escape(p) for p in sorted(g, key=len, reverse=True))
        + r")(?!\w)",
        re.IGNORECASE,
    )
    for g in SYNONYMS
)


def paraphrase(
    text: str, rng: np.random.Generator, protect: Iterable[str] = (), *, strength: float = 0.5
) -> str:
    """Reword ``text`` deterministically from ``rng``; numbers and ``protect`` stay verbatim.

    Three rewrites, each applied with probability ``strength``: synonym substitution
    (:data:`SYNONYMS`, keeping the capitalisation), reordering (a trailing "on DATE" moves to the
    front; "in CITY on DATE" becomes "on DATE in CITY"), and framing (a prefix such as "Quick
    question: " and/or a suffix such as " Thanks!"). Numbers and the protected strings are masked
    before rewriting and restored after, and the result is checked: if a number or a protected
    string would be lost, the text comes back unchanged. Never raises for any string.

    Args:
        text: The question.
        rng: The generator every choice is drawn from (the global RNG is never used).
        protect: Strings to keep verbatim (entities: cities, dates, names).
        strength: Probability of each rewrite, in [0, 1].

    >>> paraphrase("What is the temperature in Paris on 2026-03-02?",
    ...            np.random.default_rng(4), ["Paris"], strength=1.0)
    "On 2026-03-02, what's the air temperature in Paris? Please be precise."
    """
    protect = [p for p in dict.fromkeys(protect) if p]
    if any(_PLACEHOLDER_START <= ord(ch) <= _PLACEHOLDER_END for ch in text):
        return text  # cannot mask safely; an unchanged text is a valid paraphrase
    masked, spans = _mask(text, protect)
    masked = _substitute(masked, rng, strength)
    masked = _reorder(masked, rng, strength)
    masked = _frame(masked, rng, strength)
    out = _unmask(masked, spans)
    return out if _keeps(text, out, protect) else text


def _mask(text: str, protect: list[str]) -> tuple[str, list[str]]:
    """Replace every protected span (numbers, ``protect``) by one placeholder character."""
    intervals = [(m.start(), m.end()) for m in _PROTECTED_NUMBER.finditer(text)]
    for phrase in protect:
        start = text.find(phrase)
        while start != -1:
            intervals.append((start, start + len(phrase)))
            start = text.find(phrase, start + 1)
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start < merged[-1][1]:  # overlapping spans become one
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    merged = merged[: _PLACEHOLDER_END - _PLACEHOLDER_START]
    parts: list[str] = []
    spans: list[str] = []
    pos = 0
    for start, end in merged:
        parts.append(text[pos:start])
        parts.append(chr(_PLACEHOLDER_START + len(spans)))
        spans.append(text[start:end])
        pos = end
    parts.append(text[pos:])
    return "".join(parts), spans


def _unmask(text: str, spans: list[str]) -> str:
    return "".join(
        spans[ord(ch) - _PLACEHOLDER_START]
        if _PLACEHOLDER_START <= ord(ch) < _PLACEHOLDER_START + len(spans)
        else ch
        for ch in text
    )


def _match_case(template: str, replacement: str) -> str:
    """Give ``replacement`` the capitalisation of ``template``'s first letter (acronyms such as
    "US" keep theirs)."""
    if template[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    if template[:1].islower() and not replacement[1:2].isupper():
        return replacement[:1].lower() + replacement[1:]
    return replacement


def _substitute(text: str, rng: np.random.Generator, strength: float) -> str:
    for group, pattern in zip(SYNONYMS, _GROUP_PATTERNS, strict=True):

        def swap(match: re.Match[str], group: tuple[str, ...] = group) -> str:
            if rng.random() >= strength:
                return match.group(0)
            return _match_case(match.group(0), group[int(rng.integers(len(group)))])

        text = pattern.sub(swap, text)
    return text


_PLACEHOLDER = f"[{chr(_PLACEHOLDER_START)}-{chr(_PLACEHOLDER_END)}]"
_TRAILING_ON = re.compile(rf"^(?P<head>\w.*?\S) on (?P<slot>{_PLACEHOLDER})(?P<end>[?.!])$")
_IN_ON = re.compile(rf"\bin (?P<a>{_PLACEHOLDER}) on (?P<b>{_PLACEHOLDER})")


def _lower_first(text: str) -> str:
    word = text.split(" ", 1)[0]
    return text[:1].lower() + text[1:] if word in _LOWERABLE else text


def _reorder(text: str, rng: np.random.Generator, strength: float) -> str:
    match = _TRAILING_ON.match(text)
    if match is not None and rng.random() < strength:
        head = _lower_first(match["head"])
        return f"On {match['slot']}, {head}{match['end']}"
    if _IN_ON.search(text) is not None and rng.random() < strength:
        return _IN_ON.sub(lambda m: f"on {m['b']} in {m['a']}", text, count=1)
    return text


def _frame(text: str, rng: np.random.Generator, strength: float) -> str:
    if rng.random() < strength * 0.6:
        prefix = _PREFIXES[int(rng.integers(len(_PREFIXES)))]
        text = prefix + (_lower_first(text) if prefix in _LOWER_AFTER else text)
    if rng.random() < strength * 0.4:
        text += _SUFFIXES[int(rng.integers(len(_SUFFIXES)))]
    return text


def _keeps(original: str, out: str, protect: list[str]) -> bool:
    """Whether ``out`` keeps every number (as a multiset) and every protected occurrence."""
    if sorted(_DIGITS.findall(original)) != sorted(_DIGITS.findall(out)):
        return False
    return all(out.count(p) >= original.count(p) for p in protect)


# -- generation ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateConfig:
    """How template examples are generated."""

    paraphrase_prob: float = 0.8
    """Probability that a question is paraphrased (otherwise it keeps the canonical wording)."""
    paraphrase_strength: float = 0.5
    """Probability of each rewrite inside the paraphraser (see :func:`paraphrase`)."""
    corpus_seed: int = 0
    """Seed of the search corpus (must match the env's ``corpus_seed``)."""

    def __post_init__(self) -> None:
        for name in ("paraphrase_prob", "paraphrase_strength"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ConfigError(
                    f"TemplateConfig.{name} must be a number in [0, 1], got {value!r}"
                )
        if isinstance(self.corpus_seed, bool) or not isinstance(self.corpus_seed, int):
            raise ConfigError(
                f"TemplateConfig.corpus_seed must be an int, got {self.corpus_seed!r}"
            )


def canonical_examples(tool: ToolName) -> tuple[Canonical, ...]:
    """The canonical examples of ``tool``.

    Raises:
        ConfigError: for an unknown tool.
    """
    if tool not in CANONICAL:
        raise ConfigError(f"tool must be one of {list(TOOLS)}, got {tool!r}")
    return CANONICAL[tool]


def template_tasks(
    tool: ToolName, n: int, seed: int, config: TemplateConfig | None = None
) -> list[Task]:
    """``n`` tasks from the canonical examples of ``tool``.

    Canonicals are visited round-robin in an order shuffled per round, so any ``n`` of at least
    ``len(canonical_examples(tool))`` covers them all. Each task's ``world_seed`` is its own
    example seed.
    """
    config = config or TemplateConfig()
    canonicals = canonical_examples(tool)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"n must be a non-negative int, got {n!r}")
    master = np.random.default_rng(seed)
    tasks: list[Task] = []
    order = np.arange(0)
    for i in range(n):
        if i % len(canonicals) == 0:
            order = master.permutation(len(canonicals))
        canonical = canonicals[int(order[i % len(canonicals)])]
        example_seed = int(master.integers(2**31))
        rng = np.random.default_rng(example_seed)
        inst = canonical.instantiate(rng, example_seed, config.corpus_seed)
        question = inst.question
        if rng.random() < config.paraphrase_prob:
            question = paraphrase(question, rng, inst.entities, strength=config.paraphrase_strength)
        tasks.append(
            single_call_task(question, inst.answer, inst.answer_kind, inst.call, example_seed)
        )
    return tasks


def template_examples(
    tool: ToolName, n: int, seed: int, config: TemplateConfig | None = None
) -> list[Example]:
    """``n`` template examples of ``tool``: tasks and their trajectories, replayed through the
    tool's env (``LLMTrainer/Calculator-v0``, ``Weather-v0`` or ``Search-v0``)."""
    config = config or TemplateConfig()
    tasks = template_tasks(tool, n, seed, config)
    env_id = TOOL_ENV_IDS[tool]
    env = EnvPool(config.corpus_seed)[env_id]
    examples = []
    for task in tasks:
        trajectory = replay_task(
            env, task, solution_actions(task), env_id=env_id, seed=task.world_seed, source=SOURCE
        )
        if not trajectory.success:  # an invariant of the tables, checked by the tests
            raise AssertionError(f"template example failed in {env_id}: {task}")
        examples.append(Example(task, trajectory))
    return examples


def template_trajectories(
    tool: ToolName, n: int, seed: int, config: TemplateConfig | None = None
) -> list[Trajectory]:
    """``n`` template trajectories of ``tool`` (``source="template"``); see
    :func:`template_examples`."""
    return [ex.trajectory for ex in template_examples(tool, n, seed, config)]
