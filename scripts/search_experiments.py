"""Does search help at equal model? MCTS vs its base policy; evolving the SFT agent's prompt.

The experiments of issue 16 (item 4), sized for a CPU. Every number comes with a 95% interval
over ``--seeds`` seeds, a paired test on the same tasks and the compute it took; the result is
reported whatever its sign. Writes ``results.json``, ``results.md`` and one plot per experiment
into ``--out``.

1. **MCTS vs its base policy, at equal generation budget** (``mcts_knapsack``,
   ``mcts_calculator``). On each task, with the same proposer (the same model and prompts):

   * ``greedy``: the base policy, no search (the proposer's first candidate; for the LLM, the
     SFT agent decoding greedily);
   * ``mcts``: the MCTS agent (:class:`~llm_trainer.algorithms.search.agent.MCTSAgent`): a tree
     search at every step, the env's rewards as values (terminal values: the env is the
     simulator, its reward the verifier);
   * ``bon_oracle``: best-of-n: full episodes sampled from the proposer's distribution (the LLM
     at ``--temperature``; a scripted proposer: a softmax over its candidates' priors), on
     the same budget as the search spent on that task, and the one with the best env reward
     played. This selector reads the env's rewards of the simulated episodes, the same
     information the search has, so it is the search's fair rival, not a deployable method;
   * ``bon_majority``: the same samples, the episode whose final answer is the most frequent
     played (self-consistency; it never reads a reward).

   The budget is counted per task: generated tokens for an LLM (every sample of every
   expansion; the greedy-decoded episode too), simulated env steps for a scripted proposer
   (tree nodes; sampled episodes' steps). Best-of-n takes the longest prefix of its samples
   that fits the search's budget (at least one episode).

   * ``mcts_knapsack``: ``LLMTrainer/Knapsack-v0`` at difficulty 2 (8 items, 2 revisions),
     the scripted :class:`~llm_trainer.algorithms.search.scripted.KnapsackProposer`
     (greedy fills by value per weight, then local moves): no model, many tasks.
   * ``mcts_calculator``: ``LLMTrainer/Calculator-v0`` (difficulty 1) with the weak SFT agent
     (``configs/calculator_weak_sft.yaml``; ``--base DIR``, else trained once into
     ``--out/weak``) as the LLM proposer.

2. **Evolution of the SFT agent's system prompt** (``evolution``): the weak agent was trained
   with an empty system prompt; a GA (programmatic sentence operators: insert, drop, swap
   sentences from a pool of short instructions and the env's prompt's sentences; one-point
   crossover) evolves it, with the agent's own prompt (empty) and the env's in the initial
   population. Fitness: success on
   ``--evo-train`` fitness tasks; the engine's final choice: the best of its finalists on
   ``--evo-select`` other tasks; the report: ``--evo-test`` further tasks, never seen by the
   search, for the best prompt of every generation (by fitness), the final choice and the
   fittest prompt other than the agent's own (``best_other``: how close the search came),
   against the agent's own prompt, paired on the same tasks, over ``--seeds`` evolution seeds.

    python scripts/search_experiments.py --base runs/x/final_model --threads 1   # ~25 min
    python scripts/search_experiments.py --quick --base DIR                    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TASK_OFFSET = 1_000_000
CONDITIONS = ("greedy", "bon_majority", "bon_oracle", "mcts")
COMPARISONS = (
    ("mcts", "greedy"),
    ("mcts", "bon_oracle"),
    ("mcts", "bon_majority"),
    ("bon_oracle", "greedy"),
    ("bon_majority", "greedy"),
)
#: What the evolved prompts are made of: short instructions (the weak agent, trained with an
#: empty system prompt, keeps its skill under a few words and loses it under long prompts), and
#: the env's system prompt's sentences.
PROMPT_POOL = (
    "Calculator.",
    "Use the tool.",
    "Compute it.",
    "Answer.",
    "Be brief.",
    "Numbers only.",
    "Think.",
    "Check the result.",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- compute accounting --------------------------------------------------------------------------


def counting_backend(inner: Any) -> Any:
    """``inner`` behind a :class:`~llm_trainer.agents.backends.Backend` that counts generation
    calls and generated tokens (a greedy call's repeated samples once), and keeps each prompt's
    generated tokens of the latest call (``last_tokens``)."""
    from llm_trainer.agents.backends import Backend

    class CountingBackend(Backend):
        def __init__(self) -> None:
            self.inner, self.spec, self.tokenizer = inner, inner.spec, inner.tokenizer
            self.calls = 0
            self.tokens = 0
            self.last_tokens: list[int] = []

        def _count(self, out: list[list[Any]], params: Any) -> list[list[Any]]:
            self.calls += 1
            self.last_tokens = [
                sum(len(g.token_ids) for g in (s[:1] if params.greedy else s)) for s in out
            ]
            self.tokens += sum(self.last_tokens)
            return out

        def generate(self, prompts: Any, params: Any) -> list[list[Any]]:
            return self._count(self.inner.generate(prompts, params), params)

        def chat(self, prompts: Any, params: Any) -> list[list[Any]]:
            return self._count(self.inner.chat(prompts, params), params)

        def render(self, prompt: Any) -> list[int]:
            return list(self.inner.render(prompt))

        def count_tokens(self, prompt: Any) -> int:
            return int(self.inner.count_tokens(prompt))

        @property
        def max_context(self) -> int | None:
            context: int | None = self.inner.max_context
            return context

        def close(self) -> None:
            self.inner.close()

    return CountingBackend()


# -- one task, four ways -------------------------------------------------------------------------


@dataclass
class Outcome:
    """One condition on one task: what was played and what it cost."""

    reward: float
    success: bool
    cost: int
    """Budget units: generated tokens (LLM) or simulated env steps (scripted)."""
    calls: float = 0.0
    """Proposer (generation) calls (the greedy LLM's: its batched calls per task)."""
    seconds: float = 0.0
    samples: int = 0
    """Best-of-n: episodes sampled."""


@dataclass
class Sampled:
    reward: float
    success: bool
    answer: str | None
    cost: int


def _answer_of(action: str) -> str | None:
    from llm_trainer.envs.tools import AnswerAction, parse_action

    parsed = parse_action(action)
    return parsed.text.strip() if isinstance(parsed, AnswerAction) else None


def sample_episodes(
    adapter: Any,
    observation: str,
    info: Mapping[str, Any],
    proposer: Any,
    count: int,
    seed: int,
    *,
    backend: Any = None,
    candidates: int = 4,
    temperature: float = 1.0,
) -> list[Sampled]:
    """``count`` full episodes from the live state of ``adapter``'s env (a search env), in
    lockstep: each step one proposer call for every unfinished episode. An LLM proposer
    (``backend`` given: its counting backend) samples one action per episode at its own
    temperature; a scripted one is asked for ``candidates`` and one is drawn from the softmax
    of their log-probs at ``temperature``. The live env is restored afterwards."""
    from llm_trainer.algorithms.search.context import Request
    from llm_trainer.core.seeding import derive_seed

    root = adapter.root(observation, info)
    horizon = adapter.horizon if adapter.horizon is not None else 16
    requests = [
        Request.start(root.state, observation, info, steps_left=horizon) for _ in range(count)
    ]
    rewards = [0.0] * count
    costs = [0] * count
    success = [False] * count
    answers: list[str | None] = [None] * count
    active = list(range(count))
    rng = np.random.default_rng(derive_seed(seed, "sample"))
    step = 0
    try:
        while active:
            batch = [requests[i] for i in active]
            if backend is not None:
                proposals = proposer.propose(batch, 1, derive_seed(seed, "step", step))
                spent = list(backend.last_tokens)
            else:
                proposals = proposer.propose(batch, candidates, derive_seed(seed, "step", step))
                spent = [1] * len(batch)
            still = []
            for k, (i, options) in enumerate(zip(active, proposals, strict=True)):
                if backend is None and options:
                    logits = np.array([c.logprob for c in options]) / temperature
                    weights = np.exp(logits - logits.max())
                    pick = int(rng.choice(len(options), p=weights / weights.sum()))
                    action = options[pick].action
                else:
                    action = options[0].action if options else ""
                costs[i] += spent[k]
                t = adapter.step(requests[i].state, action)
                rewards[i] += t.rewards[0]
                answer = _answer_of(action)
                if answer is not None:
                    answers[i] = answer
                if t.terminal or step + 1 >= horizon:
                    success[i] = bool(t.info.get("success", False))
                else:
                    requests[i] = requests[i].after(
                        action, t.state, t.observation, t.info, t.to_move
                    )
                    still.append(i)
            active = still
            step += 1
    finally:
        adapter.restore(root.state)
    return [Sampled(rewards[i], success[i], answers[i], costs[i]) for i in range(count)]


def best_of_n(samples: Sequence[Sampled], budget: int) -> tuple[list[Sampled], Sampled, Sampled]:
    """The longest prefix of ``samples`` whose cost fits ``budget`` (at least one), and the
    episodes the oracle (best reward; ties: the first) and the majority selector (the most
    frequent final answer, ties: the first seen; no answer at all: the first) pick from it."""
    used: list[Sampled] = []
    total = 0
    for s in samples:
        if used and total + s.cost > budget:
            break
        used.append(s)
        total += s.cost
    oracle = max(used, key=lambda s: s.reward)  # max keeps the first of equals
    answered = [s.answer for s in used if s.answer is not None]
    if answered:
        counts = Counter(answered)
        top = max(counts.values())
        winner = next(a for a in answered if counts[a] == top)
        majority = next(s for s in used if s.answer == winner)
    else:
        majority = used[0]
    return used, oracle, majority


def play(env: Any, agent: Any, seed: int) -> tuple[float, bool, int]:
    """One episode of the MCTS ``agent`` in ``env`` from reset seed ``seed``: its return,
    success, and the nodes its searches added (each one simulated env step)."""
    observation, info = env.reset(seed=seed)
    agent.reset(seed=seed)
    total, nodes = 0.0, 0
    while True:
        action = agent.act(observation, info)
        search = agent.last_search
        nodes += sum(int(t.summary["nodes"]) - 1 for t in search.trees)
        observation, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        if terminated or truncated:
            return total, bool(info.get("success", False)), nodes


@dataclass
class TaskSetup:
    """What the MCTS experiment plays on one env."""

    name: str
    env_id: str
    difficulty: int
    proposer: Callable[[], Any]
    """A fresh proposer for the search and the samples."""
    greedy: Callable[[Sequence[int]], list[Outcome]]
    """The base policy's outcome on each task seed."""
    backend: Any = None
    """The counting backend of an LLM proposer (``None``: scripted)."""
    unit: str = "env steps"
    mcts: Mapping[str, Any] = field(default_factory=dict)
    batch: int = 8
    max_samples: int = 64
    temperature: float = 1.0


def run_mcts_experiment(setup: TaskSetup, seeds: int, tasks: int) -> dict[str, Any]:
    """Every condition on ``tasks`` tasks per seed (seed ``k`` plays task seeds
    ``TASK_OFFSET + 1000 k + i``)."""
    import llm_trainer
    from llm_trainer.algorithms.search import MCTSAgent, MCTSConfig, TerminalValue, search_env
    from llm_trainer.core.seeding import derive_seed

    rows: dict[str, list[list[Outcome]]] = {c: [] for c in CONDITIONS}
    started = time.perf_counter()
    for k in range(seeds):
        task_seeds = [TASK_OFFSET + 1000 * k + i for i in range(tasks)]
        rows["greedy"].append(setup.greedy(task_seeds))
        env = llm_trainer.make(setup.env_id, difficulty=setup.difficulty)
        config = MCTSConfig(**{**setup.mcts, "seed": derive_seed(k, "mcts")})
        proposer = setup.proposer()
        agent = MCTSAgent(env, proposer, estimator=TerminalValue(), config=config, reflector=None)
        sampler = setup.proposer()
        per_seed: dict[str, list[Outcome]] = {c: [] for c in ("mcts", "bon_oracle", "bon_majority")}
        for task in task_seeds:
            tokens0 = setup.backend.tokens if setup.backend is not None else 0
            calls0 = proposer.calls
            t0 = time.perf_counter()
            reward, success, nodes = play(env, agent, task)
            cost = (setup.backend.tokens - tokens0) if setup.backend is not None else nodes
            per_seed["mcts"].append(
                Outcome(reward, success, cost, proposer.calls - calls0, time.perf_counter() - t0)
            )
            # best-of-n on the same budget, sampled in lockstep batches until it is spent
            observation, info = env.reset(seed=task)
            adapter = search_env(env)
            t0, calls0 = time.perf_counter(), sampler.calls
            samples: list[Sampled] = []
            while sum(s.cost for s in samples) < cost and len(samples) < setup.max_samples:
                samples += sample_episodes(
                    adapter,
                    observation,
                    info,
                    sampler,
                    setup.batch,
                    derive_seed(k, task, "bon", len(samples)),
                    backend=setup.backend,
                    candidates=int(setup.mcts.get("candidates", 4)),
                    temperature=setup.temperature,
                )
            if not samples:  # a search that cost nothing: one sample all the same
                samples = sample_episodes(
                    adapter, observation, info, sampler, 1, derive_seed(k, task, "bon", 0),
                    backend=setup.backend, temperature=setup.temperature,
                )  # fmt: skip
            used, oracle, majority = best_of_n(samples, cost)
            spent = sum(s.cost for s in used)
            seconds = time.perf_counter() - t0
            calls = sampler.calls - calls0
            for name, pick in (("bon_oracle", oracle), ("bon_majority", majority)):
                per_seed[name].append(
                    Outcome(pick.reward, pick.success, spent, calls, seconds, len(used))
                )
        env.close()
        for name, outcomes in per_seed.items():
            rows[name].append(outcomes)
        log(
            f"{setup.name} seed {k}: "
            + ", ".join(f"{c} {np.mean([o.reward for o in rows[c][-1]]):.3f}" for c in CONDITIONS)
        )
    return summarise_mcts(setup, rows, seeds, tasks, time.perf_counter() - started)


def summarise_mcts(
    setup: TaskSetup,
    rows: Mapping[str, list[list[Outcome]]],
    seeds: int,
    tasks: int,
    seconds: float,
) -> dict[str, Any]:
    from llm_trainer.benchmarks.stats import bootstrap_ci, paired_family

    strata = np.repeat(np.arange(seeds), tasks)
    metrics: dict[str, dict[str, Any]] = {}
    flat: dict[str, dict[str, np.ndarray]] = {"reward": {}, "success": {}}
    for c in CONDITIONS:
        outcomes = [o for per_seed in rows[c] for o in per_seed]
        reward = np.array([o.reward for o in outcomes])
        success = np.array([float(o.success) for o in outcomes])
        flat["reward"][c], flat["success"][c] = reward, success
        metrics[c] = {
            "reward": bootstrap_ci(reward, strata).as_dict(),
            "success": bootstrap_ci(success, strata).as_dict(),
            "per_seed_reward": [float(np.mean([o.reward for o in s])) for s in rows[c]],
            "per_seed_success": [float(np.mean([o.success for o in s])) for s in rows[c]],
            "cost_per_task": float(np.mean([o.cost for o in outcomes])),
            "calls_per_task": float(np.mean([o.calls for o in outcomes])),
            "seconds_per_task": float(np.mean([o.seconds for o in outcomes])),
            "samples_per_task": float(np.mean([o.samples for o in outcomes])) or None,
        }
    return {
        "env_id": setup.env_id,
        "difficulty": setup.difficulty,
        "unit": setup.unit,
        "seeds": seeds,
        "tasks_per_seed": tasks,
        "mcts": dict(setup.mcts),
        "temperature": setup.temperature,
        "conditions": metrics,
        "comparisons": {
            m: paired_family(flat[m], COMPARISONS, strata) for m in ("reward", "success")
        },
        "minutes": round(seconds / 60, 2),
    }


# -- the two MCTS setups -------------------------------------------------------------------------


def knapsack_setup(args: argparse.Namespace) -> TaskSetup:
    from llm_trainer.algorithms.rollout import collect
    from llm_trainer.algorithms.search import GreedyPolicy
    from llm_trainer.algorithms.search.scripted import KnapsackProposer

    def greedy(seeds: Sequence[int]) -> list[Outcome]:
        played = collect(
            "LLMTrainer/Knapsack-v0",
            lambda envs: GreedyPolicy(KnapsackProposer()),
            seeds,
            num_envs=8,
            difficulty=2,
        )
        return [Outcome(t.total_reward, t.success, 0, len(t.steps)) for t in played]

    return TaskSetup(
        name="mcts_knapsack",
        env_id="LLMTrainer/Knapsack-v0",
        difficulty=2,
        proposer=KnapsackProposer,
        greedy=greedy,
        unit="simulated env steps",
        mcts={"simulations": args.knapsack_simulations, "batch_size": 4, "candidates": 4},
        batch=8,
        max_samples=256,
        temperature=args.temperature,
    )


def calculator_setup(args: argparse.Namespace, base: Path) -> TaskSetup:
    from llm_trainer.agents.backends import SamplingConfig, make_backend
    from llm_trainer.agents.llm_agent import LLMAgent, LLMAgentConfig
    from llm_trainer.algorithms.rollout import collect
    from llm_trainer.algorithms.search import LLMProposer

    backend = counting_backend(make_backend(f"transformers:{base}"))
    config = LLMAgentConfig(
        backend=f"transformers:{base}",
        system_prompt="",  # the weak SFT agent was trained with an empty system prompt
        sampling=SamplingConfig(temperature=0.0, max_new_tokens=args.max_new_tokens),
    )
    agent = LLMAgent(config, backend=backend)

    def greedy(seeds: Sequence[int]) -> list[Outcome]:
        calls0 = backend.calls
        t0 = time.perf_counter()
        played = collect(
            "LLMTrainer/Calculator-v0", lambda envs: agent, seeds, num_envs=16, difficulty=1
        )
        seconds = (time.perf_counter() - t0) / len(seeds)
        calls = (backend.calls - calls0) / len(seeds)
        return [
            Outcome(
                t.total_reward,
                t.success,
                sum(len(s.completion_token_ids) for s in t.steps),
                calls,
                seconds,
            )
            for t in played
        ]

    return TaskSetup(
        name="mcts_calculator",
        env_id="LLMTrainer/Calculator-v0",
        difficulty=1,
        proposer=lambda: LLMProposer.from_agent(agent, temperature=args.temperature),
        greedy=greedy,
        backend=backend,
        unit="generated tokens",
        mcts={"simulations": args.llm_simulations, "batch_size": 4, "candidates": 4},
        batch=8,
        max_samples=64,
        temperature=args.temperature,
    )


# -- evolution of the SFT agent's prompt ---------------------------------------------------------


def run_evolution_experiment(args: argparse.Namespace, base: Path, out: Path) -> dict[str, Any]:
    from llm_trainer.algorithms.evolution import (
        EvolutionEngine,
        EvolutionSettings,
        FitnessEvaluator,
        Genome,
    )
    from llm_trainer.algorithms.evolution.engine import Search
    from llm_trainer.algorithms.evolution.fitness import EvaluationSpec, Fitness, probe_env
    from llm_trainer.algorithms.evolution.genome import split_sentences
    from llm_trainer.algorithms.evolution.operators import (
        ProgrammaticVariation,
        SentenceCrossover,
        SentenceEdit,
    )
    from llm_trainer.algorithms.evolution.population import ranked
    from llm_trainer.benchmarks.stats import bootstrap_ci, paired_family

    env_id = "LLMTrainer/Calculator-v0"
    _, env_prompt = probe_env(env_id, [0], difficulty=1)
    train_seeds = tuple(range(args.evo_train))
    select_seeds = tuple(range(500_000, 500_000 + args.evo_select))
    test_seeds = tuple(range(TASK_OFFSET, TASK_OFFSET + args.evo_test))
    common: dict[str, Any] = {
        "env_id": env_id,
        "kind": "prompt",
        "difficulty": 1,
        "backend": f"transformers:{base}",
        "temperature": 0.0,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": 16,
    }
    train = EvaluationSpec(seeds=train_seeds, **common)
    select = EvaluationSpec(seeds=select_seeds, **common)
    test = EvaluationSpec(seeds=test_seeds, **common)
    own = Genome("prompt", "")  # the SFT agent's own prompt
    initial = (own, Genome("prompt", env_prompt))
    pool = [*PROMPT_POOL, *split_sentences(env_prompt)]
    settings = EvolutionSettings(
        env_id=env_id,
        difficulty=1,
        genome="prompt",
        population=args.evo_population,
        generations=args.evo_generations,
        selection="tournament",
        tournament_size=2,
        elitism=1,
        crossover_rate=0.3,
        episodes=len(train_seeds),
        finalists=3,
        max_new_tokens=args.max_new_tokens,
        batch_size=16,
    )
    search = Search(
        train=train,
        held_out=select,
        variation=ProgrammaticVariation(SentenceEdit(pool), SentenceCrossover()),
        initial=initial,
        random=None,
    )

    memo: dict[tuple[tuple[int, ...], Genome], Fitness] = {}

    class SharedEvaluator(FitnessEvaluator):
        """Greedy play depends on the prompt alone: a genome met in an earlier seed's search
        is not played again (the compute reported per seed counts it as if it were)."""

        def evaluate(self, spec: Any, genomes: Any, on_done: Any = None) -> list[Fitness]:
            todo = [g for g in dict.fromkeys(genomes) if (spec.seeds, g) not in memo]
            if todo:
                played = super().evaluate(spec, todo)
                memo.update({(spec.seeds, g): f for g, f in zip(todo, played, strict=True)})
            if on_done is not None:
                on_done(len(genomes))
            return [memo[(spec.seeds, g)] for g in genomes]

    per_seed: list[dict[str, Any]] = []
    chosen_rows: list[np.ndarray] = []
    own_rows: list[np.ndarray] = []
    initial_rows: list[np.ndarray] = []
    other_rows: list[np.ndarray] = []
    by_generation: list[list[float]] = []
    started = time.perf_counter()
    with SharedEvaluator(1) as evaluator:

        def on_test(genome: Genome) -> Fitness:
            [fitness] = evaluator.evaluate(test, [genome])
            return fitness

        own_test = on_test(own)
        for k in range(args.seeds):
            t0 = time.perf_counter()
            directory = out / "evolution" / f"seed{k}"
            if directory.exists():
                import shutil

                shutil.rmtree(directory)
            engine = EvolutionEngine(
                settings, search, seed=k, directory=directory, evaluator=evaluator, log=log,
                progress=False,
            )  # fmt: skip
            result = engine.run()
            genealogy = result.genealogy.individuals
            bests = []
            for path in sorted((directory / "generations").glob("*.json")):
                members = [genealogy[i] for island in json.loads(path.read_text())["islands"]
                           for i in island]  # fmt: skip
                bests.append(ranked(members)[0])
            curve = [on_test(b.genome).success_rate for b in bests]
            by_generation.append(curve)
            chosen_test = on_test(result.chosen.genome)
            baseline_test = on_test(result.baseline.genome)
            # the fittest prompt the search made other than the agent's own (how close it got)
            other = ranked([i for i in genealogy.values() if i.genome != own])[0]
            other_test = on_test(other.genome)
            other_rows.append(np.array(other_test.successes, dtype=float))
            chosen_rows.append(np.array(chosen_test.successes, dtype=float))
            own_rows.append(np.array(own_test.successes, dtype=float))
            initial_rows.append(np.array(baseline_test.successes, dtype=float))
            genomes = {ind.genome for ind in genealogy.values()}
            train_tokens = sum(sum(memo[(train_seeds, g)].tokens) for g in genomes)
            finalists = [f[0] for f in result.finalists]
            select_genomes = {genealogy[i].genome for i in finalists} | {result.baseline.genome}
            select_tokens = sum(sum(memo[(select_seeds, g)].tokens) for g in select_genomes)
            per_seed.append(
                {
                    "seed": k,
                    "chosen": result.chosen.genome.text,
                    "chosen_operator": result.chosen.operator,
                    "chosen_train_success": result.chosen.fitness.success_rate,
                    "chosen_test_success": chosen_test.success_rate,
                    "initial_best": result.baseline.genome.text,
                    "initial_best_test_success": baseline_test.success_rate,
                    "best_other": other.genome.text,
                    "best_other_train_success": other.fitness.success_rate,
                    "best_other_test_success": other_test.success_rate,
                    "train_best_by_generation": [round(h.best, 4) for h in result.history],
                    "test_success_of_generation_best": curve,
                    "generation_best": [b.genome.text for b in bests],
                    "individuals": len(genealogy),
                    "distinct_genomes": len(genomes),
                    "search_tokens": train_tokens + select_tokens,
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            )
            log(
                f"evolution seed {k}: chose {result.chosen.genome.text!r}: test success "
                f"{chosen_test.success_rate:.3f} (own prompt {own_test.success_rate:.3f}); "
                f"by generation {curve}"
            )
    seeds, n = args.seeds, len(test_seeds)
    strata = np.repeat(np.arange(seeds), n)
    rows = {
        "evolved": np.concatenate(chosen_rows),
        "own_prompt": np.concatenate(own_rows),
        "initial_best": np.concatenate(initial_rows),
        "best_other": np.concatenate(other_rows),
    }
    generation_cis = []
    for g in range(len(by_generation[0])):
        best_rows = []
        for k in range(seeds):
            genome = Genome("prompt", per_seed[k]["generation_best"][g])
            best_rows.append(np.array(memo[(test_seeds, genome)].successes, dtype=float))
        generation_cis.append(bootstrap_ci(np.concatenate(best_rows), strata).as_dict())
    return {
        "env_id": env_id,
        "difficulty": 1,
        "seeds": seeds,
        "train_tasks": len(train_seeds),
        "select_tasks": len(select_seeds),
        "test_tasks": n,
        "population": args.evo_population,
        "generations": args.evo_generations,
        "operators": "programmatic (sentence insert/drop/swap from a pool; one-point crossover)",
        "pool": pool,
        "success": {name: bootstrap_ci(r, strata).as_dict() for name, r in rows.items()},
        "test_success_by_generation": generation_cis,
        "comparisons": paired_family(
            rows,
            (
                ("evolved", "own_prompt"),
                ("evolved", "initial_best"),
                ("best_other", "own_prompt"),
            ),
            strata,
        ),
        "per_seed": per_seed,
        "tokens_per_seed": float(np.mean([p["search_tokens"] for p in per_seed])),
        "seconds_per_seed": float(np.mean([p["seconds"] for p in per_seed])),
        "minutes": round((time.perf_counter() - started) / 60, 2),
    }


# -- the weak SFT agent --------------------------------------------------------------------------


def weak_model(args: argparse.Namespace, out: Path) -> Path:
    """``--base``, else the weak SFT agent trained once into ``out/weak`` (reused after)."""
    if args.base is not None:
        return Path(args.base)
    found = sorted((out / "weak").glob("*/final_model/config.json"))
    if found:
        log(f"weak SFT agent: reusing {found[-1].parent}")
        return found[-1].parent
    from llm_trainer.algorithms.config import load_experiment
    from llm_trainer.algorithms.experiment import run_experiment

    log("weak SFT agent: training configs/calculator_weak_sft.yaml (about 3 minutes)")
    config = load_experiment(
        ROOT / "configs" / "calculator_weak_sft.yaml", [f"output_dir={out / 'weak'}"]
    )
    summary = run_experiment(config, log=log)
    return Path(summary["model_dir"])


# -- reports -------------------------------------------------------------------------------------


def _ci(d: Mapping[str, float], digits: int = 3) -> str:
    return f"{d['mean']:.{digits}f} [{d['ci_low']:.{digits}f}, {d['ci_high']:.{digits}f}]"


def _comparison_table(family: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["| candidate - baseline | difference [95% CI] | p | p (Holm) |", "|---|---|---|---|"]
    for c in family:
        lines.append(
            f"| {c['candidate']} - {c['baseline']} | {c['difference']:+.3f} "
            f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | {c['p_value']:.4f} | "
            f"{c['p_holm']:.4f} |"
        )
    return lines


def mcts_markdown(name: str, r: Mapping[str, Any]) -> list[str]:
    lines = [
        f"### {name}: {r['env_id']} (difficulty {r['difficulty']}), {r['seeds']} seeds x "
        f"{r['tasks_per_seed']} tasks, MCTS {r['mcts']}, {r['minutes']} min",
        "",
        f"| condition | reward [95% CI] | success [95% CI] | {r['unit']} / task | "
        "calls / task | s / task | samples / task |",
        "|---|---|---|---|---|---|---|",
    ]
    for c, m in r["conditions"].items():
        samples = "" if m["samples_per_task"] is None else f"{m['samples_per_task']:.1f}"
        lines.append(
            f"| {c} | {_ci(m['reward'])} | {_ci(m['success'])} | {m['cost_per_task']:.1f} | "
            f"{m['calls_per_task']:.1f} | {m['seconds_per_task']:.3f} | {samples} |"
        )
    lines += ["", "Paired differences in reward:", ""]
    lines += _comparison_table(r["comparisons"]["reward"])
    lines += ["", "Paired differences in success:", ""]
    lines += _comparison_table(r["comparisons"]["success"])
    return lines


def evolution_markdown(r: Mapping[str, Any]) -> list[str]:
    lines = [
        f"### evolution: the SFT agent's system prompt on {r['env_id']}, {r['seeds']} seeds, "
        f"population {r['population']}, {r['generations']} generations, {r['minutes']} min",
        "",
        f"Fitness on {r['train_tasks']} tasks, final choice on {r['select_tasks']}, reported on "
        f"{r['test_tasks']} test tasks never seen by the search.",
        "",
        "| prompt | test success [95% CI] |",
        "|---|---|",
    ]
    for name, ci in r["success"].items():
        lines.append(f"| {name} | {_ci(ci)} |")
    lines += ["", "| generation | test success of the fittest prompt [95% CI] |", "|---|---|"]
    for g, ci in enumerate(r["test_success_by_generation"]):
        lines.append(f"| {g} | {_ci(ci)} |")
    lines += ["", *_comparison_table(r["comparisons"]), ""]
    lines.append(
        f"Compute per seed: {r['tokens_per_seed']:.0f} generated tokens (fitness and final "
        f"choice), {r['seconds_per_seed']:.0f} s."
    )
    lines += [
        "",
        "| seed | chosen prompt | train | test | fittest other prompt | train | test |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in r["per_seed"]:
        text = p["chosen"].replace("|", "\\|") or "(empty)"
        other = p["best_other"].replace("|", "\\|") or "(empty)"
        lines.append(
            f"| {p['seed']} | {text} | {p['chosen_train_success']:.3f} | "
            f"{p['chosen_test_success']:.3f} | {other} | {p['best_other_train_success']:.3f} | "
            f"{p['best_other_test_success']:.3f} |"
        )
    return lines


def plot_mcts(name: str, r: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = list(r["conditions"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("reward", "success"), strict=True):
        values = [r["conditions"][c][metric] for c in conditions]
        means = [v["mean"] for v in values]
        err = [[m - v["ci_low"] for m, v in zip(means, values, strict=True)],
               [v["ci_high"] - m for m, v in zip(means, values, strict=True)]]  # fmt: skip
        ax.bar(conditions, means, yerr=err, capsize=4, color="#4c72b0")
        ax.set_ylabel(f"{metric} (95% CI)")
        ax.tick_params(axis="x", rotation=20)
    costs = ", ".join(f"{c} {r['conditions'][c]['cost_per_task']:.0f}" for c in conditions)
    fig.suptitle(f"{name}: {r['env_id']}, {r['seeds']} seeds; {r['unit']}/task: {costs}", size=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_evolution(r: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cis = r["test_success_by_generation"]
    x = np.arange(len(cis))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(x, [c["mean"] for c in cis], marker="o", label="fittest prompt of the generation")
    ax.fill_between(x, [c["ci_low"] for c in cis], [c["ci_high"] for c in cis], alpha=0.25)
    own = r["success"]["own_prompt"]
    ax.axhline(own["mean"], color="tab:red", linestyle="--", label="the agent's own prompt")
    for p in r["per_seed"]:
        ax.plot(x, p["test_success_of_generation_best"], color="0.7", linewidth=0.7)
    ax.set_xlabel("generation")
    ax.set_ylabel("test success (95% CI)")
    ax.set_xticks(x)
    ax.legend(fontsize=8)
    ax.set_title(f"evolving the SFT agent's prompt, {r['seeds']} seeds", size=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------------

EXPERIMENTS = ("mcts_knapsack", "mcts_calculator", "evolution")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/search_experiments"))
    parser.add_argument("--base", type=Path, default=None, help="the weak SFT agent's model")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only", default=",".join(EXPERIMENTS), help="comma-separated")
    parser.add_argument("--knapsack-tasks", type=int, default=200, help="per seed")
    parser.add_argument("--knapsack-simulations", type=int, default=16)
    parser.add_argument("--llm-tasks", type=int, default=40, help="per seed")
    parser.add_argument("--llm-simulations", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0, help="of sampled candidates")
    parser.add_argument("--max-new-tokens", type=int, default=80)
    parser.add_argument("--evo-population", type=int, default=5)
    parser.add_argument("--evo-generations", type=int, default=3)
    parser.add_argument("--evo-train", type=int, default=16, help="fitness tasks")
    parser.add_argument("--evo-select", type=int, default=16, help="final-choice tasks")
    parser.add_argument("--evo-test", type=int, default=64, help="report tasks")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.knapsack_tasks, args.knapsack_simulations = 2, 4, 4
        args.llm_tasks, args.llm_simulations, args.max_new_tokens = 2, 2, 8
        args.evo_population, args.evo_generations = 3, 1
        args.evo_train, args.evo_select, args.evo_test = 2, 2, 2
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    only = [e.strip() for e in args.only.split(",") if e.strip()]
    unknown = sorted(set(only) - set(EXPERIMENTS))
    if unknown:
        parser.error(f"--only: unknown experiments {unknown}; choose from {list(EXPERIMENTS)}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    results: dict[str, Any] = {}
    if results_file.is_file():  # keep the experiments not rerun now
        results = json.loads(results_file.read_text()).get("experiments", {})
    started = time.perf_counter()
    base = weak_model(args, out) if {"mcts_calculator", "evolution"} & set(only) else None
    for name in only:
        log(f"{name}: starting")
        if name == "mcts_knapsack":
            results[name] = run_mcts_experiment(
                knapsack_setup(args), args.seeds, args.knapsack_tasks
            )
        elif name == "mcts_calculator":
            assert base is not None
            setup = calculator_setup(args, base)
            results[name] = run_mcts_experiment(setup, args.seeds, args.llm_tasks)
            results[name]["base"] = str(base)
        else:
            assert base is not None
            results[name] = run_evolution_experiment(args, base, out)
            results[name]["base"] = str(base)
        document = {
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "experiments": results,
        }
        results_file.write_text(json.dumps(document, indent=2) + "\n")
        if name.startswith("mcts"):
            plot_mcts(name, results[name], out / f"{name}.png")
        else:
            plot_evolution(results[name], out / "evolution.png")
    lines = [f"# Search experiments ({time.strftime('%Y-%m-%d')})", ""]
    for name, r in results.items():
        lines += mcts_markdown(name, r) if name.startswith("mcts") else evolution_markdown(r)
        lines.append("")
    (out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))
    log(f"done in {(time.perf_counter() - started) / 60:.1f} min: {out}")
    return results


if __name__ == "__main__":
    main()
