"""Build a policy from a short spec string (used by the CLI and benchmarks).

A spec is ``NAME`` or ``PREFIX:ARGUMENT``; :data:`AGENT_BUILDERS` maps each name or prefix to
its builder, so supporting a new kind of agent is one entry there:

=========================  ================================================================
``oracle``, ``random``     the scripted baselines
``python:module:factory``  ``factory(env) -> Policy``, any importable callable
``sb3:PATH.zip``           the stable-baselines3 tool-choice baseline
                           (:mod:`llm_trainer.agents.sb3_agent`)
``kuhn:NAME``              a scripted ``LLMTrainer/KuhnPoker-v0`` player: ``random``,
                           ``always_bet`` or ``equilibrium`` (``kuhn_solver.SCRIPTED_STRATEGIES``)
``mcts:BASE``,             an :class:`~llm_trainer.algorithms.search.agent.MCTSAgent`: tree
``mcts:K=V,...:BASE``      search from the env's snapshots, candidates from ``BASE`` (a
                           scripted proposer or an agent spec)
``transformers:DIR``,      an :class:`~llm_trainer.agents.llm_agent.LLMAgent` on that backend
``vllm:DIR``,              (greedy, seeded with ``seed``; a ``DIR`` that is also a saved agent
``openai:URL#model``       keeps its ``task_template``)
a directory                an agent saved with :meth:`~llm_trainer.agents.llm_agent.LLMAgent.save`,
                           or a MALT team saved with :meth:`~llm_trainer.agents.team.MALTTeam.save`
=========================  ================================================================

The env a policy is built for is a Gymnasium env, or a PettingZoo env for the players of a
multi-agent game (the arena, :mod:`llm_trainer.benchmarks.arena`); the text policies
(``random``, ``kuhn:``, the LLM agents) act in either, and a builder that needs one kind
(``oracle``, ``sb3:``) refuses the other with a :class:`~llm_trainer.core.errors.ConfigError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import gymnasium as gym

from llm_trainer.agents.baselines import OracleAgent, RandomAgent
from llm_trainer.agents.policy import Policy
from llm_trainer.core.errors import ConfigError, suggest

if TYPE_CHECKING:  # PettingZoo is imported only when a multi-agent env is made
    from pettingzoo import AECEnv

    #: What a policy is built for: a Gymnasium env, or a PettingZoo env (a multi-agent game).
    AgentEnv: TypeAlias = gym.Env[Any, Any] | AECEnv[str, Any, Any]
else:
    AgentEnv: TypeAlias = Any

#: ``builder(argument, env, seed) -> Policy``; ``argument`` is what follows ``PREFIX:``.
AgentBuilder = Callable[[str, AgentEnv, int], Policy]


def _no_argument(spec: str, argument: str) -> None:
    if argument:
        raise ConfigError(f"agent spec {spec!r} takes no argument, got {argument!r}")


def _single_agent(spec: str, env: AgentEnv) -> gym.Env[Any, Any]:
    if not isinstance(env, gym.Env):
        raise ConfigError(
            f"agent spec {spec!r} plays single-agent envs, not the multi-agent "
            f"{type(env.unwrapped).__name__}"
        )
    return env


def _oracle(argument: str, env: AgentEnv, seed: int) -> Policy:
    _no_argument("oracle", argument)
    return OracleAgent(_single_agent("oracle", env))


def _random(argument: str, env: AgentEnv, seed: int) -> Policy:
    _no_argument("random", argument)
    return RandomAgent(seed)


def _python(argument: str, env: AgentEnv, seed: int) -> Policy:
    module_name, _, attr = argument.rpartition(":")
    if not module_name or not attr:
        raise ConfigError(f"agent spec 'python:{argument}' must be 'python:package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"agent spec 'python:{argument}': cannot import module {module_name!r} ({exc})"
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise ConfigError(
            f"agent spec 'python:{argument}': module {module_name!r} has no callable "
            f"{attr!r}{suggest(attr, public)}"
        )
    policy = factory(env)
    if not isinstance(policy, Policy):
        raise ConfigError(
            f"agent spec 'python:{argument}': the factory returned a {type(policy).__name__}, "
            "which lacks the Policy methods reset(seed=...), act(...) and act_batch(...)"
        )
    return policy


def _sb3(argument: str, env: AgentEnv, seed: int) -> Policy:
    if not argument:
        raise ConfigError("agent spec 'sb3:PATH.zip' needs the path of a saved model")
    single = _single_agent(f"sb3:{argument}", env)
    # Lazy: stable-baselines3 imports torch.
    from llm_trainer.agents.sb3_agent import SB3ToolChoiceAgent

    return SB3ToolChoiceAgent.load(Path(argument), single)


def _kuhn(argument: str, env: AgentEnv, seed: int) -> Policy:
    """A scripted Kuhn poker player (it reads its card and the betting from ``info``, so it
    needs no env; in another env it fails on its first move)."""
    # Lazy: the multi-agent envs import PettingZoo.
    from llm_trainer.envs.multiagent.kuhn_solver import SCRIPTED_STRATEGIES, StrategyPolicy

    if argument not in SCRIPTED_STRATEGIES:
        raise ConfigError(
            f"agent spec 'kuhn:{argument}': unknown Kuhn poker player"
            f"{suggest(argument, list(SCRIPTED_STRATEGIES))}; known: "
            + ", ".join(f"kuhn:{name}" for name in SCRIPTED_STRATEGIES)
        )
    return StrategyPolicy(SCRIPTED_STRATEGIES[argument](), seed=seed)


def _mcts(argument: str, env: AgentEnv, seed: int) -> Policy:
    # Lazy: the search package is only needed by this spec.
    from llm_trainer.algorithms.search.agent import build_from_spec

    return build_from_spec(argument, env, seed)


def _llm(kind: str) -> AgentBuilder:
    """An :class:`~llm_trainer.agents.llm_agent.LLMAgent` on the ``kind`` backend (greedy,
    seeded with ``seed``); agents built from the same spec share one backend (one model or
    engine per process, however many envs are evaluated). A local model directory that is also
    a saved agent with a ``task_template`` (a NAT run's ``final_model``) keeps its template: the
    model was trained to be prompted with it."""

    def build(argument: str, env: AgentEnv, seed: int) -> Policy:
        from llm_trainer.agents.backends import SamplingConfig
        from llm_trainer.agents.llm_agent import (
            LLMAgent,
            LLMAgentConfig,
            saved_task_template,
            shared_backend,
        )

        spec = f"{kind}:{argument}"
        template = None if kind == "openai" else saved_task_template(argument)
        config = LLMAgentConfig(
            backend=spec,
            sampling=SamplingConfig(temperature=0.0, seed=seed),
            task_template=template,
        )
        return LLMAgent(config, backend=shared_backend(spec))

    return build


def _saved_agent(argument: str, env: AgentEnv, seed: int) -> Policy:
    from llm_trainer.agents.team import MALTTeam, is_saved_team

    if is_saved_team(argument):  # a MALT team answers as one policy
        return MALTTeam.load(argument, seed=seed)
    from llm_trainer.agents.llm_agent import LLMAgent

    return LLMAgent.load(argument)


#: Every kind of agent spec, by name or prefix.
AGENT_BUILDERS: dict[str, AgentBuilder] = {
    "oracle": _oracle,
    "random": _random,
    "python": _python,
    "sb3": _sb3,
    "kuhn": _kuhn,
    "mcts": _mcts,
    "transformers": _llm("transformers"),
    "vllm": _llm("vllm"),
    "openai": _llm("openai"),
}
#: The builder of a spec that names an existing directory (a saved agent).
SAVED_AGENT_BUILDER: AgentBuilder = _saved_agent

AGENT_SPECS = tuple(AGENT_BUILDERS)


def resolve_agent_spec(spec: str) -> tuple[AgentBuilder, str]:
    """The builder of ``spec`` and its argument, without building anything (a cheap check).

    Raises:
        ConfigError: for an unknown spec, naming the allowed ones.
    """
    if Path(spec).is_dir():
        return SAVED_AGENT_BUILDER, spec
    prefix, _, argument = spec.partition(":")
    builder = AGENT_BUILDERS.get(prefix)
    if builder is None:
        raise ConfigError(
            f"unknown agent spec {spec!r}{suggest(prefix, AGENT_SPECS)}; allowed: "
            "oracle, random, python:module:factory, sb3:PATH.zip, kuhn:NAME, mcts:BASE, "
            "transformers:DIR, "
            "vllm:DIR, openai:URL#model, or a saved agent directory"
        )
    return builder, argument


def make_agent(spec: str, env: AgentEnv, *, seed: int = 0) -> Policy:
    """Build the policy named by ``spec`` for ``env`` (see the module docstring).

    >>> import llm_trainer
    >>> type(make_agent("oracle", llm_trainer.make("LLMTrainer/Calculator-v0"))).__name__
    'OracleAgent'

    Raises:
        ConfigError: for an unknown or malformed spec, naming the allowed ones.
    """
    builder, argument = resolve_agent_spec(spec)
    return builder(argument, env, seed)
