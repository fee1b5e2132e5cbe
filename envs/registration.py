"""Load ``registry.yaml`` into frozen specs and register every single-agent id with gymnasium.

The registry file is the single source of truth: entry points, kwargs, time limits, reward
thresholds, tags and capability flags are declared there, never sniffed from source. Loading
is strict: unknown keys (with a "did you mean"), duplicate ids or YAML keys, missing fields,
wrong types and malformed entry points are :class:`~llm_trainer.core.errors.RegistryError`\\ s
that name the entry.

Single-agent ids (``capabilities.api: gymnasium``) are registered with gymnasium and made with
:func:`make`; multi-agent ids (``pettingzoo-aec`` or ``pettingzoo-parallel``, with
``multi_agent: true``) are PettingZoo envs made with :func:`make_multiagent`. PettingZoo is
imported only when a multi-agent env is made.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import gymnasium

from llm_trainer.core.config import strict_yaml
from llm_trainer.core.errors import ConfigError, RegistryError, UnknownEnvError, suggest
from llm_trainer.core.records import FrozenDict

if TYPE_CHECKING:  # pettingzoo is imported when a multi-agent env is made, not before
    from pettingzoo import AECEnv, ParallelEnv

REGISTRY_PATH = Path(__file__).resolve().parent.parent / "registry.yaml"
NAMESPACE = "LLMTrainer"

Api = Literal["gymnasium", "pettingzoo-aec", "pettingzoo-parallel"]
#: The APIs of multi-agent envs (made with :func:`make_multiagent`).
MULTI_AGENT_APIS: tuple[Api, ...] = ("pettingzoo-aec", "pettingzoo-parallel")
_ID = re.compile(r"^[A-Za-z0-9_]+/[A-Za-z0-9_]+-v\d+$")
_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an env offers, declared in registry.yaml (never guessed from its code)."""

    api: Api = "gymnasium"
    """Which API the env implements."""
    tools: tuple[str, ...] = ()
    """Names of the tools offered to the agent."""
    difficulties: tuple[int, ...] = (1,)
    """Valid ``difficulty`` values (constructor argument and reset option)."""
    snapshot: bool = False
    """Whether ``env.unwrapped.get_state()`` / ``set_state()`` are supported."""
    multi_agent: bool = False
    """Whether several agents act (PettingZoo)."""


@dataclass(frozen=True, slots=True)
class EnvSpec:
    """One registry entry."""

    id: str
    """``Namespace/Name-vN``."""
    entry_point: str
    """``module:Class`` of the env."""
    description: str
    """One line, shown by ``llm-trainer envs``."""
    kwargs: Mapping[str, Any] = field(default_factory=lambda: FrozenDict({}))
    """Default constructor arguments; ``make(id, **overrides)`` overlays them."""
    max_episode_steps: int | None = None
    """Time limit, applied by gymnasium's ``TimeLimit`` wrapper."""
    reward_threshold: float | None = None
    """Episode return at which the env counts as solved."""
    tags: tuple[str, ...] = ()
    """Free-form labels for filtering (``tooluse``, ``math``...)."""
    capabilities: Capabilities = field(default_factory=Capabilities)
    """What the env offers."""

    def load(self) -> type[Any]:
        """Import the entry point.

        Raises:
            RegistryError: naming this entry if the module or the class does not exist.
        """
        module_name, _, attr = self.entry_point.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise RegistryError(
                f"registry entry {self.id!r}: entry point {self.entry_point!r}: cannot import "
                f"module {module_name!r} ({exc})"
            ) from exc
        try:
            cls: type[Any] = getattr(module, attr)
        except AttributeError:
            public = [n for n in dir(module) if not n.startswith("_")]
            raise RegistryError(
                f"registry entry {self.id!r}: entry point {self.entry_point!r}: module "
                f"{module_name!r} has no attribute {attr!r}{suggest(attr, public)}"
            ) from None
        return cls


_TOP_LEVEL_KEYS = {"version", "envs", "suites"}


def load_strict_yaml(text: str, source: str) -> Any:
    r"""Safe-load YAML, rejecting duplicate keys; errors are :class:`RegistryError`\ s naming
    ``source``."""
    return strict_yaml(text, source, RegistryError)


def parse_registry(text: str, source: str = "registry.yaml") -> dict[str, EnvSpec]:
    """Parse registry YAML into ``{id: EnvSpec}``; raise :class:`RegistryError` on any problem."""
    data = load_strict_yaml(text, source)
    if not isinstance(data, dict):
        raise RegistryError(f"{source}: expected a mapping with an 'envs' list")
    unknown = set(data) - _TOP_LEVEL_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise RegistryError(
            f"{source}: unknown top-level key {key!r}{suggest(key, _TOP_LEVEL_KEYS)}"
        )
    entries = data.get("envs")
    if not isinstance(entries, list) or not entries:
        raise RegistryError(f"{source}: 'envs' must be a non-empty list")
    specs: dict[str, EnvSpec] = {}
    for index, entry in enumerate(entries):
        spec = _parse_entry(entry, f"{source}: envs[{index}]")
        if spec.id in specs:
            raise RegistryError(f"{source}: duplicate env id {spec.id!r} (envs[{index}])")
        specs[spec.id] = spec
    return specs


def _parse_entry(entry: Any, where: str) -> EnvSpec:
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: each entry must be a mapping, got {type(entry).__name__}")
    env_id = entry.get("id")
    if not isinstance(env_id, str) or not _ID.match(env_id):
        raise RegistryError(f"{where}: 'id' must look like 'Namespace/Name-v0', got {env_id!r}")
    where = f"{where} ({env_id})"
    values = _check_keys(entry, EnvSpec, where)
    for required in ("entry_point", "description"):
        if not isinstance(values.get(required), str) or not values[required].strip():
            raise RegistryError(f"{where}: missing or empty {required!r}")
    if not _ENTRY_POINT.match(values["entry_point"]):
        raise RegistryError(
            f"{where}: entry_point must be 'package.module:ClassName', got "
            f"{values['entry_point']!r}"
        )
    kwargs = values.get("kwargs", {})
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise RegistryError(f"{where}: 'kwargs' must be a mapping of argument names to values")
    values["kwargs"] = FrozenDict(dict(kwargs))
    steps = values.get("max_episode_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise RegistryError(f"{where}: 'max_episode_steps' must be a positive integer")
    threshold = values.get("reward_threshold")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, int | float)
    ):
        raise RegistryError(f"{where}: 'reward_threshold' must be a number")
    tags = values.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RegistryError(f"{where}: 'tags' must be a list of strings")
    values["tags"] = tuple(tags)
    values["capabilities"] = _parse_capabilities(values.get("capabilities", {}), where)
    return EnvSpec(**values)


def _parse_capabilities(raw: Any, where: str) -> Capabilities:
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: 'capabilities' must be a mapping")
    values = _check_keys(raw, Capabilities, f"{where}: capabilities")
    api = values.get("api", "gymnasium")
    if api not in get_args(Api):
        raise RegistryError(
            f"{where}: capabilities.api must be one of {list(get_args(Api))}, got {api!r}"
        )
    for name in ("tools", "difficulties"):
        if name in values:
            items = values[name]
            kind = str if name == "tools" else int
            if not isinstance(items, list) or not all(isinstance(x, kind) for x in items):
                raise RegistryError(
                    f"{where}: capabilities.{name} must be a list of {kind.__name__}"
                )
            values[name] = tuple(items)
    for name in ("snapshot", "multi_agent"):
        if name in values and not isinstance(values[name], bool):
            raise RegistryError(f"{where}: capabilities.{name} must be true or false")
    if values.get("multi_agent", False) != (api in MULTI_AGENT_APIS):
        raise RegistryError(
            f"{where}: capabilities.multi_agent must be true exactly when capabilities.api is "
            f"one of {list(MULTI_AGENT_APIS)} (api is {api!r})"
        )
    return Capabilities(**values)


def _check_keys(raw: dict[str, Any], cls: type[Any], where: str) -> dict[str, Any]:
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in allowed:
            raise RegistryError(
                f"{where}: unknown key {key!r}{suggest(str(key), allowed)}; "
                f"allowed keys: {', '.join(allowed)}"
            )
    return dict(raw)


@functools.cache
def registry() -> Mapping[str, EnvSpec]:
    """The specs of ``registry.yaml``, by id (read once per process)."""
    return FrozenDict(parse_registry(REGISTRY_PATH.read_text(encoding="utf-8"), str(REGISTRY_PATH)))


def spec(env_id: str) -> EnvSpec:
    """The spec of ``env_id``.

    Raises:
        UnknownEnvError: with a "did you mean" suggestion.
    """
    specs = registry()
    if env_id not in specs:
        raise UnknownEnvError(env_id, specs)
    return specs[env_id]


def single_agent_ids() -> list[str]:
    """The ids made with :func:`make` (gymnasium envs), in registry order."""
    return [s.id for s in registry().values() if not s.capabilities.multi_agent]


def multi_agent_ids() -> list[str]:
    """The ids made with :func:`make_multiagent` (PettingZoo envs), in registry order."""
    return [s.id for s in registry().values() if s.capabilities.multi_agent]


def register_all() -> None:
    """Register every single-agent spec with gymnasium (idempotent); PettingZoo envs are not
    gymnasium envs and are made with :func:`make_multiagent`."""
    for env_spec in registry().values():
        if env_spec.id in gymnasium.registry or env_spec.capabilities.multi_agent:
            continue
        gymnasium.register(
            id=env_spec.id,
            entry_point=env_spec.entry_point,
            max_episode_steps=env_spec.max_episode_steps,
            reward_threshold=env_spec.reward_threshold,
            kwargs=dict(env_spec.kwargs),
        )


def make(env_id: str, **overrides: Any) -> gymnasium.Env[Any, Any]:
    """Create a registered env; ``overrides`` overlay the registry's kwargs (like ``gym.make``).

    >>> import llm_trainer
    >>> env = llm_trainer.make("LLMTrainer/Calculator-v0", difficulty=2)
    >>> env.unwrapped.difficulty, env.spec.max_episode_steps
    (2, 6)
    """
    env_spec = spec(env_id)
    if env_spec.capabilities.api != "gymnasium":
        raise RegistryError(
            f"{env_id!r} is a {env_spec.capabilities.api} env; use llm_trainer.make_multiagent()"
        )
    env_spec.load()  # a clear RegistryError naming the entry if the entry point is broken
    register_all()
    return gymnasium.make(env_id, **overrides)


def make_multiagent(
    env_id: str, **overrides: Any
) -> AECEnv[str, Any, Any] | ParallelEnv[str, Any, Any]:
    """Create a registered multi-agent env (PettingZoo AEC or Parallel, as its entry declares);
    ``overrides`` overlay the registry's kwargs, as in :func:`make`.

    >>> import llm_trainer
    >>> env = llm_trainer.make_multiagent("LLMTrainer/MALT-v0", difficulty=2)
    >>> env.possible_agents, env.unwrapped.difficulty
    (['generator', 'verifier', 'refiner'], 2)

    Raises:
        UnknownEnvError: for an id that is not registered, with a "did you mean".
        RegistryError: for a single-agent id (use :func:`make`), or an entry point that is
            broken or does not build the declared kind of PettingZoo env.
        ConfigError: for an argument the env does not take (named, with a suggestion), or a
            bad value (the env's own one-line error, naming the id).
    """
    env_spec = spec(env_id)
    api = env_spec.capabilities.api
    if api not in MULTI_AGENT_APIS:
        raise RegistryError(f"{env_id!r} is a {api} env; use llm_trainer.make()")
    cls = env_spec.load()
    _check_arguments(env_id, cls, overrides)
    env = cls(**{**copy.deepcopy(dict(env_spec.kwargs)), **overrides})
    from pettingzoo import AECEnv, ParallelEnv

    expected = AECEnv if api == "pettingzoo-aec" else ParallelEnv
    if not isinstance(env, expected):
        raise RegistryError(
            f"registry entry {env_id!r}: {env_spec.entry_point} built a "
            f"{type(env).__name__}, not a PettingZoo {expected.__name__} (capabilities.api: {api})"
        )
    return env


def _check_arguments(env_id: str, cls: type[Any], overrides: Mapping[str, Any]) -> None:
    """Refuse keyword arguments the env's constructor does not take, in one line."""
    parameters = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    known = [n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for name in overrides:
        if name not in parameters:
            raise ConfigError(
                f"{env_id}: unknown argument {name!r}{suggest(name, known)}; "
                f"known: {', '.join(known)}"
            )


def check_registry() -> list[str]:
    """Import every entry point; return the ids checked (raise on the first broken one)."""
    for env_spec in registry().values():
        env_spec.load()
    return list(registry())
