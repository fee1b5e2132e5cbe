"""Fitness: every genome played through the env on one fixed, seeded episode set.

A genome becomes a policy (:func:`genome_policy`): a solution genome answers
``<answer>TEXT</answer>`` (:class:`AnswerPolicy`); the others build an
:class:`~llm_trainer.agents.llm_agent.LLMAgent` whose system prompt (``prompt``), examples
(``few_shot``, appended to the base system prompt) or sampling settings (``sampling``) are the
genome. The policy plays one episode per seed of an :class:`EvaluationSpec` through the episode
engine (:func:`~llm_trainer.algorithms.rollout.collect`), and each episode's total reward is the
genome's score on that instance (a :class:`Fitness`). Every genome of a run is played on the
same seeds, with the same sampling seed: parents and children are compared on the same tasks
(paired), and the held-out seeds of the final choice are another spec.

:class:`FitnessEvaluator` evaluates a list of genomes in this process (``workers=1``) or in a
pool of ``spawn`` processes, each building its model once. The unit of work is one genome on
all its seeds, played the same way wherever it runs (one ``collect`` call with
``batch_size`` lockstep envs, the backend's own thread setting), so the results do not depend
on the number of workers; the tests check that.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from llm_trainer.algorithms.evolution.genome import Genome, GenomeKind, parse_sampling
from llm_trainer.algorithms.evolution.refine import Refinement, SearchRefine, refine_genome
from llm_trainer.core.errors import ConfigError, RolloutError

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")

if TYPE_CHECKING:
    from llm_trainer.agents.backends import Backend
    from llm_trainer.agents.llm_agent import LLMAgentConfig
    from llm_trainer.agents.policy import Policy
    from llm_trainer.distributed.executor import Executor


@dataclass(frozen=True, slots=True)
class Fitness:
    """A genome's results on the fitness seeds, one entry per seed (instance), in seed order.

    >>> f = Fitness((1.0, 0.0, 0.5), (True, False, False), (2, 6, 3))
    >>> f.mean, round(f.success_rate, 3), f.mean_steps
    (0.5, 0.333, 3.6666666666666665)
    """

    scores: tuple[float, ...]
    """Each episode's total reward."""
    successes: tuple[bool, ...] = ()
    """Each episode's ``success``."""
    steps: tuple[int, ...] = ()
    """Each episode's env steps."""
    errors: int = 0
    """Episodes that failed (the policy or the env raised; recorded, never fatal)."""
    tokens: tuple[int, ...] = ()
    """Each episode's generated tokens (0 for a solution genome), the searches of a refined
    genome's episodes included (:mod:`.refine`)."""

    @property
    def mean(self) -> float:
        return float(sum(self.scores) / len(self.scores)) if self.scores else 0.0

    @property
    def success_rate(self) -> float:
        return sum(self.successes) / len(self.successes) if self.successes else 0.0

    @property
    def mean_steps(self) -> float:
        return sum(self.steps) / len(self.steps) if self.steps else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "scores": list(self.scores),
            "successes": list(self.successes),
            "steps": list(self.steps),
            "errors": self.errors,
            "tokens": list(self.tokens),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fitness:
        return cls(
            tuple(float(s) for s in data["scores"]),
            tuple(bool(s) for s in data.get("successes", ())),
            tuple(int(s) for s in data.get("steps", ())),
            int(data.get("errors", 0)),
            tuple(int(t) for t in data.get("tokens", ())),
        )


@dataclass(frozen=True)
class EvaluationSpec:
    """How genomes are played: everything a worker process needs (it is pickled to them).

    Attributes:
        env_id: The env.
        seeds: One episode per seed (the instances).
        kind: The genomes' kind.
        difficulty: The env's difficulty (``None``: its default).
        env_kwargs: Extra env constructor arguments.
        backend: The LLM backend spec (``transformers:DIR``) for every kind but ``solution``.
        backend_options: Its options.
        system_prompt: The base system prompt (few-shot examples are appended to it; a sampling
            genome's agent uses it); ``None`` keeps the env's.
        temperature: Sampling temperature of prompt and few-shot agents (0: greedy).
        max_new_tokens: Generation budget per action.
        sampling_seed: Seeds the agents' sampling (with each episode's seed and step).
        batch_size: Envs played in lockstep (one batched generation per step).
        refine: The search refining each new genome (:mod:`.refine`; ``None``: none).
    """

    env_id: str
    seeds: tuple[int, ...]
    kind: GenomeKind
    difficulty: int | None = None
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    backend: str | None = None
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    system_prompt: str | None = None
    temperature: float = 0.0
    max_new_tokens: int = 64
    sampling_seed: int = 0
    batch_size: int = 8
    refine: SearchRefine | None = None

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("an evaluation needs at least one seed")
        if self.kind != "solution" and self.backend is None:
            raise ConfigError(f"{self.kind} genomes are played by an LLM: give a backend spec")


class AnswerPolicy:
    """Answers every observation with ``<answer>TEXT</answer>``: a solution genome played
    through the env (a repeated answer keeps it and ends a problem env's episode).

    >>> AnswerPolicy("1, 3").act("Knapsack of capacity ...", {})
    '<answer>1, 3</answer>'
    """

    def __init__(self, text: str) -> None:
        from llm_trainer.envs.tools import format_answer

        self.action = format_answer(text)

    def reset(self, *, seed: int | None = None) -> None:
        """Nothing to reset: the answer is fixed."""

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        return self.action

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        return [self.action] * len(observations)


def with_examples(system_prompt: str | None, examples: str) -> str:
    """A base system prompt with a few-shot examples block after it."""
    parts = [p for p in (system_prompt or "", examples) if p]
    return "\n\n".join(parts)


def agent_config(spec: EvaluationSpec, genome: Genome) -> LLMAgentConfig:
    """The LLM agent that plays a prompt, few-shot or sampling genome under ``spec``."""
    from llm_trainer.agents.backends import SamplingConfig
    from llm_trainer.agents.llm_agent import LLMAgentConfig

    if genome.kind == "solution" or spec.backend is None:
        raise ValueError("a solution genome is played by an AnswerPolicy, not an LLM agent")
    temperature, top_p = spec.temperature, 1.0
    system_prompt = spec.system_prompt
    if genome.kind == "prompt":
        system_prompt = genome.text
    elif genome.kind == "few_shot":
        system_prompt = with_examples(spec.system_prompt, genome.text)
    else:
        values = parse_sampling(genome.text)
        temperature, top_p = values["temperature"], values["top_p"]
    return LLMAgentConfig(
        backend=spec.backend,
        system_prompt=system_prompt,
        sampling=SamplingConfig(
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=spec.max_new_tokens,
            seed=spec.sampling_seed,
        ),
    )


def genome_policy(spec: EvaluationSpec, genome: Genome, backend: Backend | None) -> Policy:
    """The policy that plays ``genome`` (see the module docstring)."""
    if genome.kind == "solution":
        return AnswerPolicy(genome.text)
    from llm_trainer.agents.llm_agent import LLMAgent

    assert backend is not None  # EvaluationSpec checks that LLM genomes have a backend
    return LLMAgent(agent_config(spec, genome), backend=backend)


def evaluate_genome(
    spec: EvaluationSpec, genome: Genome, backends: dict[str, Backend] | None = None
) -> Fitness:
    """Play ``genome`` once on every seed of ``spec``; ``backends`` caches the model by spec
    (built on first use)."""
    from llm_trainer.algorithms.rollout import collect

    if genome.kind != spec.kind:
        raise ValueError(f"a {genome.kind} genome given to a {spec.kind} evaluation")
    backend = backend_for(spec, backends) if genome.kind != "solution" else None
    policy = genome_policy(spec, genome, backend)
    played = collect(
        spec.env_id,
        lambda envs: policy,
        spec.seeds,
        num_envs=spec.batch_size,
        difficulty=spec.difficulty,
        env_kwargs=spec.env_kwargs,
        source=f"evolution:{genome.digest}",
    )
    return Fitness(
        tuple(t.total_reward for t in played),
        tuple(t.success for t in played),
        tuple(len(t.steps) for t in played),
        sum(t.error is not None for t in played),
        tuple(sum(len(s.completion_token_ids) for s in t.steps) for t in played),
    )


def backend_for(spec: EvaluationSpec, backends: dict[str, Backend] | None = None) -> Backend:
    """The model of ``spec`` (``backends`` caches it by spec; built on first use).

    Raises:
        ValueError: for a spec without a backend (solution genomes).
    """
    if spec.backend is None:
        raise ValueError("this evaluation plays solution genomes: it has no model")
    cache = backends if backends is not None else {}
    if spec.backend not in cache:
        from llm_trainer.agents.backends import make_backend

        cache[spec.backend] = make_backend(spec.backend, spec.backend_options)
    return cache[spec.backend]


#: A worker process's models, by backend spec (built once per process).
_WORKER_BACKENDS: dict[str, Backend] = {}


def _evaluate_in_worker(spec: EvaluationSpec, genome: Genome) -> Fitness:
    return evaluate_genome(spec, genome, _WORKER_BACKENDS)


def _refine_in_worker(spec: EvaluationSpec, item: tuple[Genome, Fitness]) -> Refinement:
    return refine_genome(spec, item[0], item[1], _WORKER_BACKENDS)


def resolve_workers(workers: int) -> int:
    """``workers``, with 0 meaning every core this process may run on."""
    if workers < 0:
        raise ConfigError(f"workers must be >= 0 (0: every core), got {workers}")
    if workers:
        return workers
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


class FitnessEvaluator:
    """Evaluates genomes in this process (``workers=1``) or in ``workers`` spawned processes
    (0: every core); the results are the same either way.

    Use it as a context manager (or call :meth:`close`): it owns the pool and the models.
    ``executor`` (a :class:`~llm_trainer.distributed.RayExecutor`, from an experiment's
    ``ray.address``) runs the evaluations instead, with the same results; it is closed with
    the evaluator.
    """

    def __init__(self, workers: int = 1, executor: Executor | None = None) -> None:
        self.executor = executor
        self.workers = executor.workers if executor is not None else resolve_workers(workers)
        self.evaluations = 0
        """Genomes evaluated (each on all the seeds of its spec)."""
        self.episodes = 0
        """Episodes played."""
        self.refinements = 0
        """Genomes refined by a search (:meth:`refine`)."""
        self._pool: ProcessPoolExecutor | None = None
        self._backends: dict[str, Backend] = {}

    def __enter__(self) -> FitnessEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def evaluate(
        self,
        spec: EvaluationSpec,
        genomes: Sequence[Genome],
        on_done: Callable[[int], None] | None = None,
    ) -> list[Fitness]:
        """The fitness of each genome, in order (a genome listed twice is played once);
        ``on_done(n)`` is called as evaluations finish (a progress bar).

        Raises:
            RolloutError: when a worker process died.
        """
        unique = list(dict.fromkeys(genomes))
        done = self._map(
            unique,
            functools.partial(_evaluate_in_worker, spec),
            lambda genome: evaluate_genome(spec, genome, self._backends),
            on_done,
            "a fitness worker",
        )
        self.evaluations += len(unique)
        self.episodes += len(unique) * len(spec.seeds)
        return [done[g] for g in genomes]

    def refine(
        self,
        spec: EvaluationSpec,
        genomes: Sequence[tuple[Genome, Fitness]],
        on_done: Callable[[int], None] | None = None,
    ) -> list[Refinement]:
        """Each ``(genome, its fitness under spec)`` refined by ``spec.refine``'s search
        (:func:`~.refine.refine_genome`), in order, in this process, the pool or the executor
        (the same results either way).

        Raises:
            RolloutError: when a worker process died.
        """
        unique = list(dict.fromkeys(genomes))
        done = self._map(
            unique,
            functools.partial(_refine_in_worker, spec),
            lambda item: refine_genome(spec, item[0], item[1], self._backends),
            on_done,
            "a refinement worker",
        )
        self.refinements += len(unique)
        return [done[item] for item in genomes]

    def _map(
        self,
        items: Sequence[_Item],
        in_worker: Callable[[_Item], _Result],
        in_process: Callable[[_Item], _Result],
        on_done: Callable[[int], None] | None,
        what: str,
    ) -> dict[_Item, _Result]:
        """``in_worker`` of each item on the executor or the pool, or ``in_process`` here
        (``workers == 1``: this process's backends are reused); the same results either way.

        Raises:
            RolloutError: when a worker process died (naming ``what``).
        """
        if self.executor is not None:
            return dict(zip(items, self.executor.map(in_worker, items, on_done), strict=True))
        done: dict[_Item, _Result] = {}
        if self.workers == 1:
            for item in items:
                done[item] = in_process(item)
                if on_done is not None:
                    on_done(1)
            return done
        if not items:
            return done
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        pool = self._start()
        futures: dict[Future[_Result], _Item] = {pool.submit(in_worker, i): i for i in items}
        try:
            for future in as_completed(futures):
                done[futures[future]] = future.result()
                if on_done is not None:
                    on_done(1)
        except BrokenProcessPool as exc:
            self.close()
            raise RolloutError(
                f"{what} process died ({exc}); rerun with resume: true to continue from the "
                "last finished generation"
            ) from exc
        return done

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def close(self) -> None:
        """Stop the workers and release the models."""
        if self.executor is not None:
            self.executor.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        while self._backends:
            _, backend = self._backends.popitem()
            backend.close()


@dataclass(frozen=True, slots=True)
class Task:
    """One fitness seed's problem as the env poses it (for the knowledge graph)."""

    seed: int
    statement: str
    difficulty: int
    tools: tuple[str, ...]


def probe_env(
    env_id: str,
    seeds: Sequence[int],
    *,
    difficulty: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
) -> tuple[list[Task], str]:
    """The task of each seed (the env's first observation, difficulty and tool names) and the
    env's system prompt."""
    from llm_trainer.algorithms.rollout import close_all, make_envs

    [env] = make_envs(env_id, 1, difficulty=difficulty, env_kwargs=env_kwargs)
    try:
        tasks, system_prompt = [], ""
        for seed in seeds:
            observation, info = env.reset(seed=seed)
            tools = tuple(str(t.get("function", {}).get("name", "")) for t in info.get("tools", ()))
            tasks.append(Task(seed, str(observation), int(info.get("difficulty", 0)), tools))
            system_prompt = str(info.get("system_prompt", ""))
    finally:
        close_all([env])
    return tasks, system_prompt
