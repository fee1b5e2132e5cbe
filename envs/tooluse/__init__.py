"""Single-agent tool-use environments: Calculator, Weather, Search, MultiTool."""

from llm_trainer.envs.tooluse.base import Episode, Task, ToolUseEnv
from llm_trainer.envs.tooluse.calculator import CalculatorEnv
from llm_trainer.envs.tooluse.multitool import MultiToolEnv
from llm_trainer.envs.tooluse.search import SearchEnv
from llm_trainer.envs.tooluse.weather import WeatherEnv

__all__ = [
    "CalculatorEnv",
    "Episode",
    "MultiToolEnv",
    "SearchEnv",
    "Task",
    "ToolUseEnv",
    "WeatherEnv",
]
