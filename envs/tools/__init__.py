"""Tools that agents call: a calculator, a simulated weather service and a local search engine,
the ``ToolRegistry`` that executes them, and the parser for the tool-call format."""

from __future__ import annotations

from llm_trainer.envs.tools import calculator as _calculator
from llm_trainer.envs.tools import search as _search
from llm_trainer.envs.tools import weather as _weather
from llm_trainer.envs.tools.parser import (
    AnswerAction,
    InvalidAction,
    format_answer,
    parse_action,
)
from llm_trainer.envs.tools.registry import Tool, ToolRegistry, ToolResult
from llm_trainer.envs.tools.search import SearchTool
from llm_trainer.envs.tools.weather import WeatherTool, WeatherWorld


def calculator_tool() -> Tool:
    """The exact, ``eval``-free calculator (see :mod:`llm_trainer.envs.tools.calculator`)."""
    return Tool(dict(_calculator.SPEC), _calculator.calculator)


def weather_tool(world: WeatherWorld | None = None) -> Tool:
    """The simulated weather service; the env rebinds ``tool.fn.world`` at every reset."""
    return Tool(dict(_weather.SPEC), WeatherTool(world))


def search_tool(corpus_seed: int = 0) -> Tool:
    """BM25 search over the generated encyclopedia of ``corpus_seed``."""
    return Tool(dict(_search.SPEC), SearchTool(corpus_seed))


__all__ = [
    "AnswerAction",
    "InvalidAction",
    "SearchTool",
    "Tool",
    "ToolRegistry",
    "ToolResult",
    "WeatherTool",
    "WeatherWorld",
    "calculator_tool",
    "format_answer",
    "parse_action",
    "search_tool",
    "weather_tool",
]
