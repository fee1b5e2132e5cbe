"""A simulated, deterministic weather service: no network, nothing real.

A :class:`WeatherWorld` is a pure function of its seed: a week of dates starting on a seed-
dependent day of 2026, and for every (city, date) a temperature, condition, humidity and wind
derived from a hash of ``(seed, city, date)`` around each city's climate. Values are computed
on demand, so creating a world per episode costs almost nothing, and a world pickles as its seed.
Envs draw a fresh world seed at every reset, so answers cannot be memorised: the agent must call
the tool.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_trainer.core.errors import ToolError, suggest

#: City -> (annual mean temperature in °C, half the seasonal swing, base humidity in %).
#: Southern-hemisphere cities have a negative swing (their summer is in January).
CLIMATES: Mapping[str, tuple[float, float, int]] = {
    "Amsterdam": (10.5, 7.0, 80),
    "Athens": (18.5, 9.0, 60),
    "Bangkok": (28.5, 1.5, 75),
    "Berlin": (10.0, 9.5, 72),
    "Buenos Aires": (18.0, -6.5, 72),
    "Cairo": (22.5, 7.0, 55),
    "Cape Town": (17.0, -4.5, 70),
    "Chicago": (10.0, 14.0, 68),
    "Dubai": (28.0, 7.5, 58),
    "Helsinki": (5.5, 11.5, 78),
    "Istanbul": (15.0, 9.0, 72),
    "Jakarta": (27.5, 0.5, 80),
    "Lagos": (27.0, 1.5, 82),
    "Lima": (19.5, -3.5, 82),
    "Lisbon": (17.5, 5.5, 70),
    "London": (11.5, 6.5, 77),
    "Madrid": (15.0, 9.5, 58),
    "Mexico City": (17.0, 2.5, 55),
    "Moscow": (6.0, 13.5, 76),
    "Mumbai": (27.5, 2.0, 75),
    "Nairobi": (19.0, -1.5, 65),
    "New York": (13.0, 12.0, 64),
    "Oslo": (6.5, 10.5, 74),
    "Paris": (12.5, 8.0, 75),
    "Reykjavik": (5.0, 5.5, 78),
    "Rome": (16.0, 8.5, 70),
    "Santiago": (14.5, -6.0, 65),
    "Seoul": (12.5, 14.5, 64),
    "Singapore": (27.5, 0.5, 83),
    "Sydney": (18.5, -4.5, 68),
    "Tokyo": (16.0, 10.5, 66),
    "Toronto": (9.0, 13.5, 70),
    "Vancouver": (10.5, 6.5, 78),
    "Vienna": (11.0, 10.0, 70),
    "Warsaw": (8.5, 10.5, 76),
    "Zurich": (9.5, 9.0, 75),
}
CITIES: tuple[str, ...] = tuple(CLIMATES)
_CITY_BY_KEY = {city.casefold(): city for city in CITIES}
CONDITIONS: tuple[str, ...] = (
    "sunny",
    "partly cloudy",
    "cloudy",
    "rain",
    "thunderstorm",
    "snow",
    "fog",
    "windy",
)
N_DAYS = 7
_EPOCH = dt.date(2026, 1, 1)

SPEC: Mapping[str, Any] = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": (
            "Get the weather for a city on a date: temperature (°C), condition, humidity (%) "
            "and wind (km/h)."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. 'Paris'."},
                "date": {"type": "string", "description": "Date as YYYY-MM-DD."},
            },
            "required": ["city", "date"],
        },
    },
}


@dataclass(frozen=True, slots=True)
class WeatherReport:
    city: str
    date: str
    temperature_c: int
    condition: str
    humidity_pct: int
    wind_kph: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "city": self.city,
                "date": self.date,
                "temperature_c": self.temperature_c,
                "condition": self.condition,
                "humidity_pct": self.humidity_pct,
                "wind_kph": self.wind_kph,
            },
            ensure_ascii=False,
        )

    def field(self, name: str) -> int | str:
        value: int | str = getattr(self, name)
        return value


@dataclass(frozen=True, slots=True)
class WeatherWorld:
    """One simulated week of weather for every city in :data:`CITIES`.

    >>> world = WeatherWorld(seed=7)
    >>> first_day = world.dates[0]
    >>> world.report("Paris", first_day) == WeatherWorld(seed=7).report("paris", first_day)
    True
    """

    seed: int

    @property
    def start(self) -> dt.date:
        return _EPOCH + dt.timedelta(days=self.seed % (365 - N_DAYS))

    @property
    def dates(self) -> tuple[str, ...]:
        start = self.start
        return tuple((start + dt.timedelta(days=i)).isoformat() for i in range(N_DAYS))

    def report(self, city: str, date: str) -> WeatherReport:
        """The weather in ``city`` (any case) on ``date`` (YYYY-MM-DD).

        Raises:
            ToolError: for an unknown city or a date outside the simulated week, listing what
                is valid.
        """
        name = (
            _CITY_BY_KEY.get(" ".join(city.split()).casefold()) if isinstance(city, str) else None
        )
        if name is None:
            hint = suggest(city, CITIES) if isinstance(city, str) else ""
            raise ToolError(f"unknown city {city!r}{hint}; known cities: {', '.join(CITIES)}")
        try:
            day = dt.date.fromisoformat(date.strip()) if isinstance(date, str) else None
        except ValueError:
            day = None
        start = self.start
        if day is None or not 0 <= (day - start).days < N_DAYS:
            raise ToolError(
                f"no forecast for date {date!r}; valid dates (YYYY-MM-DD): "
                f"{start.isoformat()} to {(start + dt.timedelta(days=N_DAYS - 1)).isoformat()}"
            )
        digest = hashlib.blake2b(
            f"{self.seed}|{name}|{day.isoformat()}".encode(), digest_size=8
        ).digest()
        h = int.from_bytes(digest, "little")
        mean, swing, humidity = CLIMATES[name]
        season = -math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365)
        temperature = round(mean + swing * season + (h % 13) - 6)
        humidity_pct = min(99, max(10, humidity + ((h >> 8) % 31) - 15))
        wind_kph = (h >> 16) % 41
        if wind_kph >= 35:
            condition = "windy"
        elif humidity_pct >= 88:
            condition = "snow" if temperature <= 0 else ("fog" if (h >> 24) % 2 else "rain")
        elif humidity_pct >= 78:
            condition = "thunderstorm" if temperature >= 22 and (h >> 24) % 3 == 0 else "rain"
        else:
            condition = ("sunny", "partly cloudy", "cloudy")[(h >> 28) % 3]
        return WeatherReport(name, day.isoformat(), temperature, condition, humidity_pct, wind_kph)


class WeatherTool:
    """The ``weather`` tool, bound to the world of the current episode (set by the env)."""

    def __init__(self, world: WeatherWorld | None = None) -> None:
        self.world = world or WeatherWorld(0)

    def bind(self, seed: int) -> None:
        """Point the tool at the world of a new episode."""
        self.world = WeatherWorld(seed)

    def __call__(self, arguments: Mapping[str, Any]) -> str:
        missing = [k for k in ("city", "date") if not isinstance(arguments.get(k), str)]
        if missing:
            raise ToolError(f"missing required string argument(s): {', '.join(missing)}")
        return self.world.report(arguments["city"], arguments["date"]).to_json()
