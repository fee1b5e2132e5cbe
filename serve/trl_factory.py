"""``environment_factory`` for TRL's ``GRPOTrainer``: an env's tools become the trainer's tools.

TRL (1.16, ``GRPOTrainer(environment_factory=...)``) calls the factory with no argument, once
per rollout slot, and reads the instance's class: ``reset(**row)`` starts an episode and may
return text for the prompt, every other public method is a tool (its name, type hints and
Google-style docstring become the JSON schema the chat template shows the model), and an
optional ``get_reward()`` scores the finished rollout. :func:`environment_factory` builds such
a class for a registered env:

- one method per tool of the env, with the env's own spec as signature and docstring
  (``transformers.utils.get_json_schema`` of the method gives back that spec), which steps the
  env with the call in the env's action format, so the env counts, runs and judges it exactly
  as it does for any agent, and returns the tool's output;
- ``answer(answer)``, the final answer (the envs' ``<answer>...</answer>``): it ends the episode,
  or (problem envs) returns the feedback for a revision;
- ``reset(**row)``: a ``seed`` column picks the task (so the ``num_generations`` rollouts of
  one prompt share it, as GRPO's group comparison needs) and a ``difficulty`` column the
  difficulty; without a seed, instance ``i`` of the class plays the seed stream ``seed + i``;
- ``get_reward()``: the episode's return, the env's own reward.

A tool called after the episode ended raises ``ValueError`` (TRL hands the message to the
model as the tool's result). With ``base_url``, the instances play a served env
(``llm-trainer serve``) through :class:`~llm_trainer.serve.client.RemoteEnv` instead.
Decompose-v0's ``<plan>`` action has no tool here: its agents answer directly.
"""

from __future__ import annotations

import inspect
import itertools
import json
import keyword
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast

import gymnasium as gym

from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import ToolCall, to_plain
from llm_trainer.envs.registration import make
from llm_trainer.envs.tools.parser import format_answer

if TYPE_CHECKING:  # datasets comes with the train extra
    from datasets import Dataset

#: The name of the final-answer tool every built class has.
ANSWER_TOOL = "answer"
_RESERVED = frozenset({ANSWER_TOOL, "reset", "get_reward"})
_JSON_TYPES: Mapping[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
}
_ANSWER_RECORDED = "Answer recorded; the episode is over."


class ToolEnvironment:
    """What :func:`environment_factory` builds: one env per instance, its tools as methods.

    Attributes:
        env: The gymnasium env this instance plays.
        reward: The episode's return so far (what :meth:`get_reward` reports).
        done: Whether the episode has ended (terminated or truncated).
        info: The env's last ``info`` (its metrics: ``success``, ``tool_correct``...).
    """

    #: The env id the class plays.
    env_id: ClassVar[str]
    #: A system prompt for the trainer's dataset: the tools, and how to answer.
    system_prompt: ClassVar[str]
    _make_env: ClassVar[Callable[[], gym.Env[Any, Any]]]
    _base_seed: ClassVar[int]
    _instances: ClassVar[itertools.count[int]]

    def __init__(self) -> None:
        cls = type(self)
        self.env = cls._make_env()
        self._next_seed: int | None = cls._base_seed + next(cls._instances)
        self.reward = 0.0
        self.done = True
        self.info: dict[str, Any] = {}

    def reset(self, **row: Any) -> str:
        """Start an episode and return its task. TRL passes the dataset row: its ``seed`` and
        ``difficulty`` columns are read, the others (``prompt``...) ignored."""
        seed = row.get("seed")
        if seed is None:  # the instance's own stream: its first seed, then the env's stream
            seed, self._next_seed = self._next_seed, None
        difficulty = row.get("difficulty")
        options = None if difficulty is None else {"difficulty": difficulty}
        observation, info = self.env.reset(seed=seed, options=options)
        self.reward, self.done, self.info = 0.0, False, dict(info)
        return str(observation)

    def get_reward(self) -> float:
        """The episode's return: the env's reward for everything the model did."""
        return self.reward

    def answer(self, answer: str) -> str:
        """Submit the final answer to the task. Call it once, at the end.

        Args:
            answer: The final answer only, e.g. '42' or 'Paris'.

        Returns:
            Feedback for a revision (some problems allow them), or that the episode is over.
        """
        try:
            text = format_answer(str(answer))
        except ValueError:
            raise ValueError("the answer must not contain the tags <answer>, <tool_call>") from None
        return self._act(text) or _ANSWER_RECORDED

    def _call_tool(self, name: str, arguments: Mapping[str, Any]) -> str:
        return self._act(ToolCall(name, dict(arguments)).to_text())

    def _act(self, action: str) -> str:
        if self.done:
            raise ValueError(
                "the episode is over (answered, or out of steps); no more tool calls"
                if self.info
                else "no episode has started: reset() first"
            )
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.reward += float(reward)
        self.done = bool(terminated or truncated)
        self.info = dict(info)
        return str(observation)


def environment_factory(
    env_id: str,
    *,
    seed: int = 0,
    base_url: str | None = None,
    transport: str = "ws",
    **env_kwargs: Any,
) -> type[ToolEnvironment]:
    """A class for ``GRPOTrainer(environment_factory=...)`` playing ``env_id``.

    Args:
        env_id: A single-agent id of registry.yaml.
        seed: Seed of the first instance's stream (instance ``i`` plays ``seed + i``) when the
            dataset has no ``seed`` column.
        base_url: Play a served env (``llm-trainer serve``) at this URL instead of in-process.
        transport: ``"ws"`` or ``"http"``, with ``base_url``.
        **env_kwargs: Overrides of the registry's kwargs (in-process only; a served env has
            the server's).

    Raises:
        UnknownEnvError: for an id that is not registered (in-process).
        ConfigError: for a tool whose name or arguments cannot be a Python method.

    >>> Env = environment_factory("LLMTrainer/Calculator-v0")
    >>> env = Env()
    >>> env.reset(seed=0) != "", env.calculator(expression="6 * 7")
    (True, '42')
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}")
    if base_url is None:

        def make_env() -> gym.Env[Any, Any]:
            return make(env_id, **env_kwargs)

        probe = make_env()
        try:
            _, info = probe.reset(seed=seed)
            tools = to_plain(info.get("tools", ()))
        finally:
            probe.close()
    else:
        if env_kwargs:
            raise ConfigError(
                f"env_kwargs {sorted(env_kwargs)} cannot change a served env; start the server "
                "with them (llm-trainer serve --kwargs ...)"
            )
        from llm_trainer.serve.client import RemoteEnv, Transport

        if transport not in ("ws", "http"):
            raise ConfigError(f"transport must be 'ws' or 'http', got {transport!r}")
        remote_transport = cast(Transport, transport)

        def make_env() -> gym.Env[Any, Any]:
            return RemoteEnv(base_url, transport=remote_transport)

        probe = RemoteEnv(base_url, transport="http")
        env_id = probe.env_id
        tools = list(probe.server_metadata.get("tools") or ())
        probe.close()

    namespace: dict[str, Any] = {
        "env_id": env_id,
        "system_prompt": tool_system_prompt([t["function"]["name"] for t in tools]),
        "_make_env": staticmethod(make_env),
        "_base_seed": seed,
        "_instances": itertools.count(),
        "__doc__": f"{env_id} for TRL's environment_factory: tools "
        f"{', '.join([t['function']['name'] for t in tools] + [ANSWER_TOOL])}.",
    }
    for tool in tools:
        method = _tool_method(env_id, tool)
        namespace[method.__name__] = method
    class_name = "".join(c for c in env_id.rpartition("/")[2].split("-v")[0] if c.isalnum())
    return cast(
        type[ToolEnvironment], type(f"{class_name}ToolEnvironment", (ToolEnvironment,), namespace)
    )


def tool_system_prompt(tool_names: list[str]) -> str:
    """A system prompt for native tool calling: call the tools, then the ``answer`` tool."""
    tools = f"the tools ({', '.join(tool_names)}) and " if tool_names else ""
    return (
        f"Solve the task. Use {tools}submit your final answer with the {ANSWER_TOOL} tool, "
        "once, at the end."
    )


def _tool_method(env_id: str, spec: Mapping[str, Any]) -> Callable[..., str]:
    """A method calling the tool of ``spec`` (OpenAI function format) through the env, whose
    signature and Google-style docstring say what the spec says."""
    function = spec["function"]
    name = function["name"]
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigError(f"{env_id}: tool name {name!r} cannot be a Python method name")
    if name in _RESERVED or name.startswith("_"):
        raise ConfigError(
            f"{env_id}: tool name {name!r} clashes with the environment class's own "
            f"{', '.join(sorted(_RESERVED))} (or is private)"
        )
    parameters = function.get("parameters") or {}
    properties: Mapping[str, Any] = parameters.get("properties") or {}
    required = set(parameters.get("required") or ())

    def call(self: ToolEnvironment, **arguments: Any) -> str:
        return self._call_tool(name, arguments)

    signature = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    lines = []
    # Required arguments first: a Python signature cannot have them after defaulted ones.
    for arg in sorted(properties, key=lambda a: a not in required):
        if not arg.isidentifier() or keyword.iskeyword(arg) or arg == "self":
            raise ConfigError(f"{env_id}: tool {name!r} argument {arg!r} cannot be a parameter")
        prop = properties[arg]
        annotations[arg] = _JSON_TYPES.get(prop.get("type", ""), Any)
        default = inspect.Parameter.empty if arg in required else None
        signature.append(
            inspect.Parameter(
                arg,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=default,
                annotation=annotations[arg],
            )
        )
        description = " ".join(str(prop.get("description") or arg).split())
        if "enum" in prop:
            description += f" (choices: {json.dumps(list(prop['enum']))})"
        lines.append(f"    {arg}: {description}")
    annotations["return"] = str
    summary = " ".join(str(function.get("description") or name).split())
    args = "\n\nArgs:\n" + "\n".join(lines) if lines else ""
    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{summary}{args}\n\nReturns:\n    The tool's output, or an error message."
    call.__annotations__ = annotations
    call.__signature__ = inspect.Signature(signature, return_annotation=str)  # type: ignore[attr-defined]
    return call


def task_dataset(env_id: str, n: int, *, seed: int = 0, difficulty: int | None = None) -> Dataset:
    """A TRL dataset of ``n`` tasks: ``prompt`` (the tool-calling system prompt and an empty
    user turn, which ``reset`` fills with the task) and ``seed`` (``seed``, ``seed + 1``...);
    with ``difficulty``, a ``difficulty`` column too. TRL repeats each row for the rollouts of
    one group, so they share the task."""
    from datasets import Dataset

    names = [t["function"]["name"] for t in _tools_of(env_id)]
    system = tool_system_prompt(names)
    columns: dict[str, list[Any]] = {
        "prompt": [[{"role": "system", "content": system}, {"role": "user", "content": ""}]] * n,
        "seed": [seed + i for i in range(n)],
    }
    if difficulty is not None:
        columns["difficulty"] = [difficulty] * n
    return Dataset.from_dict(columns)


def _tools_of(env_id: str) -> list[dict[str, Any]]:
    env = make(env_id)
    try:
        return list(to_plain(env.reset(seed=0)[1].get("tools", ())))
    finally:
        env.close()


__all__ = [
    "ANSWER_TOOL",
    "ToolEnvironment",
    "environment_factory",
    "task_dataset",
    "tool_system_prompt",
]
