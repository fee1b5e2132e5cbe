"""The MCTS agent: a :class:`~llm_trainer.agents.policy.Policy` that acts by searching.

At each step :class:`MCTSAgent` searches from the env's live state (its snapshot; the played
env is left exactly as it was) with a budget of simulations, and plays the action the search
chose. So it runs wherever a policy runs: the episode engine, ``llm-trainer evaluate``,
benchmarks and the leaderboard, and the Kuhn poker arena (two-player zero-sum: it searches
with negamax values, each tree from a hand rebuilt from what the player sees, the opponent's
card drawn at random, in a private copy of the game). Like the oracle, it is bound to the
env(s) it acts in: it needs their snapshots.

Agent specs (``agents/factory.py``): ``mcts:BASE`` or ``mcts:KEY=VALUE,...:BASE``, where
``BASE`` is a scripted proposer (``knapsack``, ``tsp``, ``legal_moves``) or any agent spec (an LLM
agent, ``transformers:DIR``, samples the candidates; another policy proposes its own action),
and the options are the fields of :class:`MCTSAgentConfig` and, by name, of
:class:`~llm_trainer.algorithms.search.mcts.MCTSConfig` (``selection.c=0.5`` too)::

    llm-trainer evaluate --env LLMTrainer/Knapsack-v0 --agent mcts:simulations=64:knapsack
    llm-trainer evaluate --env LLMTrainer/Calculator-v0 \\
        --agent mcts:simulations=16,value=self_eval:transformers:runs/x/final_model
    llm-trainer evaluate --env LLMTrainer/Calculator-v0 \\
        --agent mcts:prompt=runs/evolve/best_genome.txt:transformers:runs/x/final_model
    llm-trainer evaluate --env LLMTrainer/Knapsack-v0 --agent mcts:trees=8,ray=auto:knapsack

``prompt=PATH`` conditions an LLM base's proposals (hence the PUCT priors, their
log-probabilities) and self-evaluations on another system prompt: a text file, such as the
``best_genome.txt`` of an evolution run over prompts (``algorithm: evolution``), or that run's
directory (:func:`read_prompt`).

``trees=K`` grows K independent trees per decision, merged at the root (:mod:`~llm_trainer.
algorithms.search.parallel`): in this process, in ``processes=P`` spawned processes, or, with
``ray=ADDRESS``, as Ray tasks (``local`` starts a cluster here; ``auto`` is the cluster ``ray
start`` started on this machine, or ``$RAY_ADDRESS``; a ``HOST:PORT`` address cannot be
written in a spec, whose options end at the first ``:``, so export ``RAY_ADDRESS=HOST:PORT``
and write ``ray=auto``), with the same merged result wherever they grow.

Each decision is kept in an :class:`~llm_trainer.algorithms.search.buffer.ExperienceBuffer`
(when given) and recorded in a knowledge graph (when given: :mod:`~llm_trainer.algorithms.
search.record`). :class:`GreedyPolicy` plays a proposer's first candidate without search: the
baseline a search must beat.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from llm_trainer.algorithms.config import PositiveInt
from llm_trainer.algorithms.search.buffer import ExperienceBuffer, SearchRecord
from llm_trainer.algorithms.search.context import Request, observation_message
from llm_trainer.algorithms.search.env import search_env
from llm_trainer.algorithms.search.mcts import MCTSConfig
from llm_trainer.algorithms.search.parallel import Determinize, MergedSearch, TreeRunner
from llm_trainer.algorithms.search.proposers import LLMProposer, PolicyProposer, Proposer
from llm_trainer.algorithms.search.reflection import FeedbackReflector, LLMReflector, Reflector
from llm_trainer.algorithms.search.scripted import SCRIPTED_PROPOSERS
from llm_trainer.algorithms.search.values import (
    RewardEstimator,
    RolloutValue,
    SelfEvaluation,
    TerminalValue,
    ValueModel,
)
from llm_trainer.core.config import Range, apply_overrides, build, check_ranges
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.knowledge import KnowledgeGraph
from llm_trainer.core.seeding import derive_seed
from llm_trainer.distributed.executor import Executor, make_executor
from llm_trainer.distributed.ray_backend import check_ray_installed


@dataclass(slots=True)
class _Episode:
    """One slot's episode: its seed, the chat so far and the reflections of its searches."""

    seed: int | None = None
    fresh: bool = True
    history: list[dict[str, Any]] = field(default_factory=list)
    reflections: tuple[str, ...] = ()
    turn: int = 0
    task: str = ""


class _Slots:
    """Per-slot episodes, started by ``reset(slot=...)`` or an observation with ``turn == 0``
    (as :class:`~llm_trainer.agents.llm_agent.LLMAgent` does)."""

    def __init__(self) -> None:
        self.episodes: dict[int, _Episode] = {}
        self.default_seed: int | None = None

    def reset(self, seed: int | None, slot: int | None) -> None:
        if slot is None:
            self.episodes, self.default_seed = {}, seed
        else:
            self.episodes[slot] = _Episode(seed=seed)

    def observe(self, slot: int, observation: str, info: Mapping[str, Any]) -> _Episode:
        episode = self.episodes.get(slot)
        if episode is None:
            episode = self.episodes[slot] = _Episode(seed=self.default_seed)
        if info.get("turn") == 0 and not episode.fresh:
            episode = self.episodes[slot] = _Episode(seed=episode.seed)
        if episode.fresh:
            episode.fresh = False
            episode.task = str(observation)
        return episode

    @staticmethod
    def acted(episode: _Episode, observation: str, info: Mapping[str, Any], action: str) -> None:
        """Add the observation just answered and the action to the episode's chat."""
        message = (
            {"role": "user", "content": str(observation)}
            if not episode.history
            else observation_message(observation, info)
        )
        episode.history += [dict(message), {"role": "assistant", "content": action}]
        episode.turn += 1


def _slot_of(info: Mapping[str, Any], index: int) -> int:
    return int(info.get("slot", index))


class MCTSAgent:
    """Acts by tree search from the live state of its env (see the module docstring).

    Args:
        envs: The env, or one env per slot of a lockstep batch (the agent reads and restores
            their snapshots; ``infos[i]["slot"]`` names the env of entry ``i``).
        proposer: Samples candidate actions.
        estimator: Values leaves (``None``: the env's rewards only).
        config: The search's settings.
        reflector: Writes reflections on failed leaves (``None``: none).
        trees: Independent trees per decision, merged at the root.
        processes: Worker processes for the trees (1: in this process).
        executor: Where the trees grow instead (a :class:`~llm_trainer.distributed.
            RayExecutor`: each tree a Ray task); closed with the agent.
        determinize: Redraws hidden information per tree (a game of imperfect information).
        buffer: Keeps every decision.
        knowledge: A knowledge graph (or its file) to record every decision's tree in.
        name: The agent's spec, as recorded.
        run: The run the decisions belong to (keys their knowledge-graph edges).
    """

    def __init__(
        self,
        envs: Any,
        proposer: Proposer,
        *,
        estimator: RewardEstimator | None = None,
        config: MCTSConfig | None = None,
        reflector: Reflector | None = None,
        trees: int = 1,
        processes: int = 1,
        executor: Executor | None = None,
        determinize: Determinize | None = None,
        buffer: ExperienceBuffer | None = None,
        knowledge: KnowledgeGraph | str | Path | None = None,
        name: str = "mcts",
        run: str = "",
    ) -> None:
        self.envs = list(envs) if isinstance(envs, list | tuple) else [envs]
        if not self.envs:
            raise ValueError("MCTSAgent needs at least one env")
        for env in self.envs:
            search_env(env)  # an env without snapshots fails here, naming the contract
        self.config = config if config is not None else MCTSConfig()
        self.runner = TreeRunner(
            proposer,
            estimator,
            self.config,
            reflector=reflector,
            trees=trees,
            processes=processes,
            determinize=determinize,
            executor=executor,
        )
        self.buffer = buffer
        self.knowledge = (
            KnowledgeGraph(knowledge) if isinstance(knowledge, str | Path) else knowledge
        )
        self.name = name
        self.run = run
        self._slots = _Slots()
        self.last_search: MergedSearch | None = None
        """The latest decision (its merged trees)."""

    # -- the Policy protocol -------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, slot: int | None = None) -> None:
        """Start a new episode in ``slot`` (every slot when ``None``), seeded with ``seed``."""
        self._slots.reset(seed, slot)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        """Search from the live state of the slot's env and return the chosen action."""
        slot = _slot_of(info, 0)
        if self.runner.determinize is not None:
            env = self.envs[0]  # a private copy, set up from ``info`` for each tree: any slot
        elif 0 <= slot < len(self.envs):
            env = self.envs[slot]
        else:
            raise ValueError(f"MCTSAgent is bound to {len(self.envs)} env(s), got slot {slot}")
        episode = self._slots.observe(slot, observation, info)
        seed = derive_seed(
            self.config.seed, "none" if episode.seed is None else episode.seed, episode.turn
        )
        result = self.runner.search(
            env,
            observation,
            info,
            history=episode.history,
            reflections=episode.reflections,
            seed=seed,
        )
        self.last_search = result
        self._remember(env, episode, observation, info, result)
        episode.reflections = (
            result.reflections[-self.config.max_reflections :]
            if (self.config.max_reflections)
            else ()
        )
        self._slots.acted(episode, observation, info, result.action)
        return result.action

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """One search per entry, one after the other (each batches its own leaves)."""
        if len(observations) != len(infos):
            raise ValueError(f"{len(observations)} observations but {len(infos)} infos")
        return [
            self.act(o, {**i, "slot": _slot_of(i, k)})
            for k, (o, i) in enumerate(zip(observations, infos, strict=True))
        ]

    def close(self) -> None:
        """Stop the workers of the trees (a pool, or the executor's Ray connection)."""
        self.runner.close()

    # -- records -------------------------------------------------------------------------------

    def _remember(
        self,
        env: Any,
        episode: _Episode,
        observation: str,
        info: Mapping[str, Any],
        result: MergedSearch,
    ) -> None:
        if self.buffer is None and self.knowledge is None:
            return
        spec = getattr(env, "spec", None)
        env_id = spec.id if spec is not None else type(env.unwrapped).__name__
        summary = result.summary()
        if self.buffer is not None:
            request = Request.start(None, observation, info, history=episode.history)
            self.buffer.add(
                SearchRecord(
                    env_id=env_id,
                    seed=episode.seed,
                    turn=episode.turn,
                    player=int(info.get("seat", 0)),  # a game's seat; 0 for one player
                    system_prompt=request.system_prompt,
                    tools=request.tools,
                    messages=request.messages,
                    action=result.action,
                    visits={c.action: c.visits for c in result.children},
                    values={c.action: c.value for c in result.children},
                    simulations=result.simulations,
                    best_return=summary["best_return"],
                    best_success=result.best_success,
                )
            )
        if self.knowledge is not None:
            from llm_trainer.algorithms.search.record import record_search

            difficulty = info.get("difficulty")
            record_search(
                self.knowledge,
                summary,
                env_id=env_id,
                task=episode.task,
                agent=self.name,
                seed=episode.seed,
                difficulty=difficulty if isinstance(difficulty, int) else None,
                run=self.run,
                turn=episode.turn,
            )


class GreedyPolicy:
    """Plays a proposer's first candidate (its best prior) at every step, without search: the
    baseline a search with the same proposer must beat.

    Args:
        proposer: The proposer.
        candidates: How many candidates to ask for (the first is played).
        seed: Seeds the proposer's calls (with the episode's seed and the turn).
    """

    def __init__(self, proposer: Proposer, *, candidates: int = 1, seed: int = 0) -> None:
        self.proposer = proposer
        self.candidates = candidates
        self.seed = seed
        self._slots = _Slots()

    def reset(self, *, seed: int | None = None, slot: int | None = None) -> None:
        self._slots.reset(seed, slot)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """One proposer call for every entry."""
        episodes = [
            self._slots.observe(_slot_of(i, k), o, i)
            for k, (o, i) in enumerate(zip(observations, infos, strict=True))
        ]
        requests = [
            Request.start(None, o, i, history=e.history)
            for o, i, e in zip(observations, infos, episodes, strict=True)
        ]
        first = episodes[0] if episodes else _Episode()
        seed = derive_seed(self.seed, "none" if first.seed is None else first.seed, first.turn)
        proposals = self.proposer.propose(requests, self.candidates, seed)
        actions = []
        for o, i, e, candidates in zip(observations, infos, episodes, proposals, strict=True):
            best = max(candidates, key=lambda c: c.logprob).action if candidates else ""
            self._slots.acted(e, o, i, best)
            actions.append(best)
        return actions


# -- Kuhn poker: the hidden card -------------------------------------------------------------


def kuhn_determinize(env: Any, info: Mapping[str, Any], rng: np.random.Generator) -> Any:
    """Deal ``env`` (a private Kuhn poker env) a hand the player to move cannot tell from the
    live one: its own card (``info["card"]``, at its ``info["seat"]``), the opponent's drawn
    from the two others (the third card is never seen), then the betting so far
    (``info["history"]``) replayed. Returns the snapshot. Only the public API is used
    (``reset`` with a ``deal`` option, ``step``)."""
    from llm_trainer.envs.multiagent.kuhn import CARDS
    from llm_trainer.envs.tools import format_answer

    seat, own = int(info["seat"]), str(info["card"])
    others = [c for c in CARDS if c != own]
    other = others[int(rng.integers(len(others)))]
    base = env.unwrapped
    base.reset(options={"deal": (own, other) if seat == 0 else (other, own)})
    for move in info["history"]:
        base.step(format_answer(str(move)))
    return base.get_state()


def determinizer_for(env: Any) -> Determinize | None:
    """The determinization of ``env``'s hidden information, when it has some (Kuhn poker)."""
    from llm_trainer.envs.multiagent.kuhn import KuhnPokerEnv

    return kuhn_determinize if isinstance(env.unwrapped, KuhnPokerEnv) else None


# -- building from a spec --------------------------------------------------------------------


@dataclass(frozen=True)
class MCTSAgentConfig:
    """An MCTS agent: its proposer, value, reflections and trees, and the search's settings."""

    base: str = "knapsack"
    """The proposer: a scripted one (``knapsack``, ``tsp``, ``legal_moves``) or an agent spec
    (an LLM agent samples the candidates; another policy proposes its own action)."""
    mcts: MCTSConfig = field(default_factory=MCTSConfig)
    """The search's settings."""
    value: Literal["terminal", "rollout", "self_eval", "model"] = "terminal"
    """How leaves are valued (:mod:`~llm_trainer.algorithms.search.values`): ``self_eval``
    needs an LLM base; ``model`` a PPO checkpoint in ``value_model``."""
    value_model: str | None = None
    """A PPO checkpoint directory (``checkpoints/iteration-N``) for ``value: model``."""
    rollout_steps: PositiveInt = 8
    """Most steps of a rollout (``value: rollout``)."""
    reflect: Literal["none", "feedback", "llm"] = "feedback"
    """Reflections on failed leaves: none, the env's feedback quoted, or written by the LLM."""
    temperature: Annotated[float, Range(gt=0)] = 1.0
    """Sampling temperature of an LLM's candidates."""
    prior: Literal["sum", "mean"] = "mean"
    """An LLM candidate's log-prob: summed over its tokens, or their mean."""
    prompt: str | None = None
    """The system prompt of an LLM base's proposals, priors and self-evaluations, instead of
    the agent's: a text file (an evolution run's ``best_genome.txt``) or an evolution run
    directory (:func:`read_prompt`)."""
    trees: PositiveInt = 1
    """Independent trees per decision (root parallelism)."""
    processes: PositiveInt = 1
    """Worker processes for the trees."""
    ray: str | None = None
    """Grow the trees as Ray tasks on this cluster instead of in ``processes``: ``local``
    (started in this process), ``auto`` (the cluster ``ray start`` started here, or
    ``$RAY_ADDRESS``), ``HOST:PORT`` or ``ray://HOST:PORT`` (the ``ray`` extra)."""

    def __post_init__(self) -> None:
        check_ranges(self, "mcts agent")
        if self.ray is not None:
            if not self.ray.strip():
                raise ConfigError(
                    "mcts agent: ray must not be empty (local, auto, HOST:PORT or "
                    "ray://HOST:PORT; leave it out to grow the trees in local processes)"
                )
            check_ray_installed("mcts agent: ray")
        if self.value == "model" and self.value_model is None:
            raise ConfigError("mcts agent: value 'model' needs value_model (a PPO checkpoint)")


def read_prompt(path: str | Path) -> str:
    """The system prompt at ``path``: a text file's text, as is (an evolution run's
    ``best_genome.txt``), or, for a directory, its ``best_genome.txt``, which must hold a
    prompt genome when the run's genealogy says what it evolved.

    Raises:
        ConfigError: for a missing file, or a run that evolved another kind of genome.
    """
    import json

    where = Path(path)
    if where.is_dir():
        genealogy = where / "evolution" / "genealogy.json"
        if genealogy.is_file():
            records = json.loads(genealogy.read_text(encoding="utf-8"))
            kinds = {str(r.get("kind")) for r in records}
            if kinds and kinds != {"prompt"}:
                raise ConfigError(
                    f"mcts agent: prompt={path}: that evolution run evolved {sorted(kinds)} "
                    "genomes, not system prompts (genome: prompt)"
                )
        where = where / "best_genome.txt"
    if not where.is_file():
        raise ConfigError(
            f"mcts agent: prompt={path}: no such file (give a text file, e.g. an evolution "
            "run's best_genome.txt, or the run directory)"
        )
    return where.read_text(encoding="utf-8")


def parse_agent_spec(argument: str) -> MCTSAgentConfig:
    """The config of an ``mcts:`` spec's argument: ``BASE`` or ``KEY=VALUE,...:BASE``.

    >>> parse_agent_spec("simulations=16,selection.c=0.5,value=rollout:knapsack").mcts.selection.c
    0.5

    Raises:
        ConfigError: for a missing base or an unknown or invalid option (naming it).
    """
    head, sep, rest = argument.partition(":")
    options: list[str] = []
    base = argument
    if sep and "=" in head:
        options, base = [o for o in head.split(",") if o.strip()], rest
        if options[-1].strip().startswith("ray=") and re.match(r"\d+([,:]|$)|//", rest):
            raise ConfigError(
                f"agent spec 'mcts:{argument}': a Ray address with a ':' (HOST:PORT) cannot be "
                "written in an agent spec, whose options end at the first ':'; export "
                "RAY_ADDRESS=HOST:PORT and use ray=auto"
            )
    if not base:
        raise ConfigError(
            "agent spec 'mcts:...' needs a base: mcts:BASE or mcts:KEY=VALUE,...:BASE, with "
            f"BASE a scripted proposer ({', '.join(SCRIPTED_PROPOSERS)}) or an agent spec"
        )
    own = {f.name for f in dataclasses.fields(MCTSAgentConfig)}
    routed = [o if o.partition("=")[0].split(".")[0] in own else f"mcts.{o}" for o in options]
    try:
        data = apply_overrides({"base": base}, routed)
        return build(MCTSAgentConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"agent spec 'mcts:{argument}': {exc}") from None


def build_agent(
    config: MCTSAgentConfig, env: Any, *, seed: int = 0, name: str = "mcts"
) -> MCTSAgent:
    """The agent ``config`` describes, bound to ``env``.

    Raises:
        ConfigError: for a value or reflection that needs an LLM the base is not.
    """
    from llm_trainer.agents.llm_agent import LLMAgent

    adapter = search_env(env)
    backend: Any = None
    proposer: Proposer
    prompt = read_prompt(config.prompt) if config.prompt is not None else None
    if config.base in SCRIPTED_PROPOSERS:
        proposer = SCRIPTED_PROPOSERS[config.base]()
    else:
        from llm_trainer.agents.factory import make_agent

        policy = make_agent(config.base, env, seed=seed)
        if isinstance(policy, LLMAgent):
            proposer = LLMProposer.from_agent(
                policy, temperature=config.temperature, prior=config.prior, system_prompt=prompt
            )
            backend = policy.backend
        else:
            proposer = PolicyProposer(policy, env=adapter)
    if prompt is not None and backend is None:
        raise ConfigError(
            f"mcts agent: prompt conditions an LLM's proposals; the base {config.base!r} is not "
            "an LLM agent spec"
        )
    estimator: RewardEstimator
    if config.value == "rollout":
        estimator = RolloutValue(proposer, max_steps=config.rollout_steps, gamma=config.mcts.gamma)
    elif config.value == "self_eval":
        if backend is None:
            raise ConfigError("mcts agent: value 'self_eval' needs an LLM base (an agent spec)")
        estimator = SelfEvaluation(backend, system_prompt=prompt)
    elif config.value == "model":
        assert config.value_model is not None  # checked by the config
        estimator = ValueModel.from_ppo_checkpoint(config.value_model)
    else:
        estimator = TerminalValue()
    reflector: Reflector | None = None
    if config.reflect == "feedback":
        reflector = FeedbackReflector()
    elif config.reflect == "llm":
        if backend is None:
            raise ConfigError("mcts agent: reflect 'llm' needs an LLM base (an agent spec)")
        reflector = LLMReflector(backend)
    determinize = determinizer_for(env)
    # a game of hidden information is searched in a private copy, from what the player sees
    bound = copy.deepcopy(env.unwrapped) if determinize is not None else env
    executor = make_executor(ray=config.ray) if config.ray is not None else None
    return MCTSAgent(
        bound,
        proposer,
        estimator=estimator,
        config=dataclasses.replace(config.mcts, seed=derive_seed(config.mcts.seed, seed)),
        reflector=reflector,
        trees=config.trees,
        processes=config.processes,
        executor=executor,
        determinize=determinize,
        name=name,
    )


def build_from_spec(argument: str, env: Any, seed: int) -> MCTSAgent:
    """The agent of the spec ``mcts:ARGUMENT`` (the agent factory's builder)."""
    return build_agent(parse_agent_spec(argument), env, seed=seed, name=f"mcts:{argument}")
