"""Synthetic trajectories: generate, keep what the env verifies, augment, store with lineage.

:func:`synthesize` runs a :class:`~llm_trainer.data.taskspec.TaskSpec` in three stages:

1. **Generation**, through the real envs. ``oracle``: the scripted oracle plays env-drawn tasks
   (:func:`~llm_trainer.algorithms.rollout.collect`); ``templates``: the canonical examples of
   :mod:`~llm_trainer.data.templates`, replayed in the spec's env; ``teacher``: the calls that
   teacher mode (:mod:`~llm_trainer.data.teacher`) keeps, replayed against the template task
   they came from (so a call of the wrong tool is caught); ``llm:<backend>``: an
   :class:`~llm_trainer.agents.llm_agent.LLMAgent` samples ``samples`` episodes per env-drawn
   task in lockstep (:func:`~llm_trainer.algorithms.rollout.play_episodes`). Every candidate
   comes with its :class:`~llm_trainer.envs.tooluse.base.Task`.
2. **Quality filters**, each a function of its own, applied in this order; the first that fails
   is the candidate's :class:`FilterDecision`: :func:`parses` (every action is a well-formed
   tool call or answer, ending with the answer), :func:`length_bounds`, :func:`reexecutes`
   (replayed through the env, every tool result, reward and metric is reproduced),
   :func:`answer_verified` (the answer is the task's and the env counts a success; optionally
   grounded in a tool result) and :func:`deduplicate` (by content).
3. **Augmentation** of the kept trajectories: :func:`paraphrase_question` rewords the task with
   the templates' deterministic paraphraser, :func:`reorder_independent_calls` puts tool calls
   that do not depend on each other's results in another order. Both replay the result through
   the env, and the filters judge it again; an augmented trajectory records its parent's
   :func:`~llm_trainer.core.store.trajectory_hash`.

With a store, the kept trajectories become the dataset ``NAME`` and the rejected ones
``NAME-rejected``, each trajectory annotated with its hash, generator, augmentation, parent and
filter decision (:meth:`~llm_trainer.core.store.TrajectoryStore.annotations`).

Trajectories are ``source="synthetic:<generator kind>"`` (``+paraphrase`` / ``+reorder`` for
augmented ones). Env-drawn ones keep their reset seed; the others (templates, teacher,
paraphrased) have the seed of their weather world, the data strategies' convention, so
:func:`~llm_trainer.data.base.validate_trajectory` checks any of them without its task.

Determinism: every draw derives from ``spec.seed`` (:func:`~llm_trainer.core.seeding.derive_seed`);
the same spec gives the same trajectories, decisions and dataset versions (exactly for the
oracle, templates and augmentations; for an LLM as far as its backend is deterministic).

>>> result = synthesize({"tasks": [{"env_id": "LLMTrainer/MultiTool-v0", "difficulties": [2],
...                                 "count": 2}], "augment": {"reorder": True}}, log=None)
>>> [(s.generator, s.augmentation, s.decision.kept) for s in result.items]
[('oracle', None, True), ('oracle', None, True),
 ('oracle', 'reorder', True), ('oracle', 'reorder', True)]
>>> result.items[2].parent == result.items[0].hash
True
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from llm_trainer.core.errors import UserError
from llm_trainer.core.records import ToolCall, to_plain
from llm_trainer.core.seeding import derive_seed
from llm_trainer.core.store import Provenance, TrajectoryStore, trajectory_hash
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.data.base import (
    EnvPool,
    Example,
    answer_is_grounded,
    replay_differences,
    replay_task,
    solution_actions,
)
from llm_trainer.data.taskspec import GeneratorSpec, TaskEntry, TaskSpec, load_task_spec
from llm_trainer.envs.tools import AnswerAction, InvalidAction, format_answer, parse_action
from llm_trainer.envs.tooluse.base import Task, answer_matches, system_prompt

#: Prefix of the ``source`` of every synthesized trajectory.
SOURCE = "synthetic"
#: The quality filters, in the order they are applied.
FILTERS: tuple[str, ...] = (
    "parses",
    "length_bounds",
    "reexecutes",
    "answer_verified",
    "deduplicate",
)

Log = Callable[[str], None] | None


# -- records -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FilterDecision:
    """What the quality filters decided about a trajectory.

    Attributes:
        kept: Whether every filter passed.
        filter: The first filter that failed (one of :data:`FILTERS`), ``None`` when kept.
        reason: Why it failed, ``None`` when kept.
    """

    kept: bool
    filter: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "filter": self.filter, "reason": self.reason}


KEPT = FilterDecision(True)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A generated trajectory before the filters: its task and where it came from.

    Attributes:
        task: The task it solves (what the filters replay and check against).
        trajectory: The trajectory.
        generator: The generator's name (``oracle``, ``templates``, ``teacher``,
            ``llm:<backend>``).
        augmentation: ``paraphrase`` or ``reorder`` for an augmented copy, else ``None``.
        parent: The :func:`~llm_trainer.core.store.trajectory_hash` of the trajectory an
            augmented copy was made from.
    """

    task: Task
    trajectory: Trajectory
    generator: str
    augmentation: str | None = None
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class Synthesized:
    """A candidate with the filters' decision and its content hash."""

    task: Task
    trajectory: Trajectory
    generator: str
    augmentation: str | None
    parent: str | None
    decision: FilterDecision
    hash: str

    def annotation(self) -> dict[str, Any]:
        """What the store keeps beside the trajectory."""
        return {
            "hash": self.hash,
            "generator": self.generator,
            "augmentation": self.augmentation,
            "parent": self.parent,
            "task_answer": self.task.answer,
            **self.decision.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class SynthesisResult:
    """Every candidate of a synthesis, in order (originals, then augmentations), with its
    decision; the datasets' versions when stored."""

    spec: TaskSpec
    items: tuple[Synthesized, ...]
    kept_dataset: str | None = None
    """Version of the stored dataset of kept trajectories (``None``: not stored or empty)."""
    rejected_dataset: str | None = None
    """Version of the stored dataset of rejected ones (``None``: not stored or none)."""

    @property
    def kept(self) -> tuple[Synthesized, ...]:
        return tuple(s for s in self.items if s.decision.kept)

    @property
    def rejected(self) -> tuple[Synthesized, ...]:
        return tuple(s for s in self.items if not s.decision.kept)

    @property
    def trajectories(self) -> list[Trajectory]:
        """The kept trajectories (the training data)."""
        return [s.trajectory for s in self.kept]

    def stats(self) -> dict[str, Any]:
        """Counts: candidates and kept per generator (augmentations apart), rejections per
        filter, and the stored datasets."""
        by: dict[str, dict[str, int]] = {}
        for s in self.items:
            key = s.generator if s.augmentation is None else f"{s.generator}+{s.augmentation}"
            row = by.setdefault(key, {"candidates": 0, "kept": 0})
            row["candidates"] += 1
            row["kept"] += s.decision.kept
        rejected = Counter(s.decision.filter for s in self.rejected)
        return {
            "candidates": len(self.items),
            "kept": len(self.kept),
            "by_generator": by,
            "rejected_by_filter": {f: rejected[f] for f in FILTERS if rejected[f]},
            "kept_dataset": self.kept_dataset,
            "rejected_dataset": self.rejected_dataset,
        }


# -- the quality filters -------------------------------------------------------------------------


def parses(trajectory: Trajectory) -> str | None:
    """Every action is a well-formed tool call or answer, the calls come first and the last
    action is the answer; returns why not, or ``None``.

    >>> from llm_trainer.core.trajectory import Step
    >>> t = Trajectory("e", 0, 1, "", (), "q", (Step("<answer>4</answer>", "", "user", 1.0,
    ...                                               True, False),))
    >>> parses(t) is None, parses(replace(t, steps=(replace(t.steps[0], action="4"),)))
    (True, 'step 0: invalid action (expected <tool_call>...</tool_call> or <answer>...</answer>)')
    """
    if trajectory.error is not None:
        return f"the episode failed: {trajectory.error}"
    if not trajectory.steps:
        return "no steps"
    last = len(trajectory.steps) - 1
    for i, step in enumerate(trajectory.steps):
        action = parse_action(step.action)
        if isinstance(action, InvalidAction):
            return f"step {i}: invalid action ({action.reason})"
        if isinstance(action, AnswerAction) and i != last:
            return f"step {i}: an answer before the last step"
        if isinstance(action, ToolCall) and i == last:
            return f"step {i}: ends with a tool call, not an answer"
    return None


def length_bounds(
    trajectory: Trajectory,
    *,
    min_steps: int = 1,
    max_steps: int | None = None,
    max_chars: int | None = None,
) -> str | None:
    """The trajectory has ``min_steps`` to ``max_steps`` steps and at most ``max_chars``
    characters (task, actions and observations together); returns why not, or ``None``."""
    n = len(trajectory.steps)
    if n < min_steps:
        return f"{n} steps < min_steps={min_steps}"
    if max_steps is not None and n > max_steps:
        return f"{n} steps > max_steps={max_steps}"
    if max_chars is not None:
        chars = len(trajectory.prompt) + sum(
            len(s.action) + len(s.observation) for s in trajectory.steps
        )
        if chars > max_chars:
            return f"{chars} characters > max_chars={max_chars}"
    return None


def reexecutes(
    trajectory: Trajectory, task: Task, *, pool: EnvPool | None = None, corpus_seed: int = 0
) -> str | None:
    """Replayed on ``task`` through the real env, every step is reproduced: the same tool
    results, roles, rewards, episode ends and metrics (and the env's system prompt and tools);
    returns the differences, or ``None``.

    Args:
        trajectory: The trajectory.
        task: The task it solves.
        pool: Envs to replay in (made on first use when ``None``).
        corpus_seed: The search corpus's seed (when ``pool`` is ``None``).
    """
    pool = pool or EnvPool(corpus_seed)
    try:
        env = pool[trajectory.env_id]
    except (TypeError, ValueError) as exc:  # an unknown id (a UserError) or another kind of env
        return f"cannot replay in {trajectory.env_id!r}: {exc}"
    problems = []
    if trajectory.prompt != task.prompt:
        problems.append("the prompt is not the task's")
    if trajectory.system_prompt != system_prompt(env.tools.names):
        problems.append("system_prompt differs from the env's")
    if to_plain(trajectory.tools) != to_plain(env.tools.specs):
        problems.append("tools differ from the env's")
    problems += replay_differences(env, task, trajectory)
    return "; ".join(problems) if problems else None


def answer_verified(trajectory: Trajectory, task: Task, *, grounded: bool = False) -> str | None:
    """The final answer is the task's and the env counted the episode a success (every metric
    true); with ``grounded``, the answer also occurs in a tool result
    (:func:`~llm_trainer.data.base.answer_is_grounded`). Returns why not, or ``None``."""
    if not trajectory.steps:
        return "no final answer"
    action = parse_action(trajectory.steps[-1].action)
    if not isinstance(action, AnswerAction):
        return "no final answer"
    if not answer_matches(action.text, task.answer, task.answer_kind):
        return f"answer {action.text!r} does not match {task.answer!r}"
    failed = [k for k, ok in trajectory.metrics.items() if not ok]
    if failed:
        return f"the env does not count it a success ({', '.join(failed)} false)"
    observations = [s.observation for s in trajectory.steps if s.role == "tool"]
    if grounded and not answer_is_grounded(action.text, observations):
        return f"answer {action.text!r} occurs in no tool result"
    return None


def content_key(trajectory: Trajectory) -> str:
    """What makes two trajectories duplicates: the env, the task and every action and
    observation (not the seed, source or token records)."""
    payload = [
        trajectory.env_id,
        trajectory.prompt,
        [[s.action, s.observation] for s in trajectory.steps],
    ]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


def deduplicate(
    trajectories: Sequence[Trajectory], seen: MutableMapping[str, str] | None = None
) -> list[str | None]:
    """One entry per trajectory: ``None`` for the first of its content (:func:`content_key`),
    else why it is dropped (``"duplicate of <hash>"``). ``seen`` (content key -> hash of the
    first) carries the state across calls and is updated.
    """
    seen = {} if seen is None else seen
    out: list[str | None] = []
    for t in trajectories:
        key = content_key(t)
        if key in seen:
            out.append(f"duplicate of {seen[key]}")
        else:
            seen[key] = trajectory_hash(t)
            out.append(None)
    return out


def judge(
    candidate: Candidate,
    spec: TaskSpec,
    *,
    pool: EnvPool,
    seen: MutableMapping[str, str],
) -> Synthesized:
    """Apply the filters in the order of :data:`FILTERS`; the first that fails decides."""
    t, task, f = candidate.trajectory, candidate.task, spec.filters
    checks: tuple[tuple[str, Callable[[], str | None]], ...] = (
        ("parses", lambda: parses(t)),
        (
            "length_bounds",
            lambda: length_bounds(
                t, min_steps=f.min_steps, max_steps=f.max_steps, max_chars=f.max_chars
            ),
        ),
        ("reexecutes", lambda: reexecutes(t, task, pool=pool)),
        ("answer_verified", lambda: answer_verified(t, task, grounded=f.grounded)),
        ("deduplicate", lambda: deduplicate([t], seen)[0]),
    )
    decision = KEPT
    for name, check in checks:
        reason = check()
        if reason is not None:
            decision = FilterDecision(False, name, reason)
            break
    return Synthesized(
        task,
        t,
        candidate.generator,
        candidate.augmentation,
        candidate.parent,
        decision,
        trajectory_hash(t),
    )


# -- augmentation --------------------------------------------------------------------------------


def paraphrase_question(
    example: Example,
    rng: np.random.Generator,
    *,
    strength: float = 0.5,
    pool: EnvPool | None = None,
    attempts: int = 4,
) -> Example | None:
    """The example with its task reworded by the templates' paraphraser
    (:func:`~llm_trainer.data.templates.paraphrase`), replayed through the env.

    Numbers, the string arguments of the task's planned calls (cities, dates, names) and the
    answer are kept verbatim. The new trajectory's ``seed`` is the task's world seed (it is no
    longer what ``reset(seed)`` draws). ``None`` when ``attempts`` draws leave the text as it
    was.
    """
    from llm_trainer.data.templates import paraphrase

    task, t = example.task, example.trajectory
    protect = [str(v) for call in task.plan for v in call.arguments.values() if isinstance(v, str)]
    protect.append(task.answer)
    for _ in range(attempts):
        text = paraphrase(task.prompt, rng, protect, strength=strength)
        if text != task.prompt:
            break
    else:
        return None
    new_task = task._replace(prompt=text)
    pool = pool or EnvPool()
    trajectory = replay_task(
        pool[t.env_id],
        new_task,
        [s.action for s in t.steps],
        env_id=t.env_id,
        seed=new_task.world_seed,
        source=f"{t.source}+paraphrase",
        difficulty=t.difficulty,
    )
    return Example(new_task, trajectory)


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def call_dependencies(
    prompt: str, calls: Sequence[ToolCall], observations: Sequence[str]
) -> list[frozenset[int]]:
    """For each call, the earlier calls whose results it uses.

    A string argument found in the task text is known from the start. Any other argument
    depends on every earlier call whose result holds it (the whole string, ignoring case) or
    one of its numbers (in any form: ``14`` matches ``14.0``; signs are ignored). Erring
    towards a dependency is safe: it only forbids a reordering.

    >>> from llm_trainer.core.records import ToolCall, to_plain
    >>> calls = [ToolCall("weather", {"city": "Oslo"}), ToolCall("weather", {"city": "Rome"}),
    ...          ToolCall("calculator", {"expression": "3 - (7)"})]
    >>> call_dependencies("Oslo or Rome?", calls, ['{"t": 3}', '{"t": 7}', "-4"])
    [frozenset(), frozenset(), frozenset({0, 1})]
    """
    text = prompt.casefold()
    found = [
        ({abs(float(n)) for n in _NUMBER.findall(obs.replace(",", ""))}, obs.casefold())
        for obs in observations
    ]
    out = []
    for j, call in enumerate(calls):
        deps: set[int] = set()
        for value in call.arguments.values():
            atom = str(value).strip().casefold()
            if not atom or (isinstance(value, str) and atom in text):
                continue
            numbers = {abs(float(n)) for n in _NUMBER.findall(atom.replace(",", ""))}
            for i in range(j):
                numbers_i, obs_i = found[i]
                if atom in obs_i or numbers & numbers_i:
                    deps.add(i)
        out.append(frozenset(deps))
    return out


def reorder_independent_calls(
    example: Example, rng: np.random.Generator, *, pool: EnvPool | None = None
) -> Example | None:
    """The example with its tool calls in another order that keeps every call after the
    calls it depends on (:func:`call_dependencies`), replayed through the env; ``None`` when
    the trajectory is not calls-then-answer or no other order exists.

    The order is a random topological order drawn from ``rng``; when that is the original,
    one randomly chosen pair of adjacent independent calls is swapped instead.
    """
    task, t = example.task, example.trajectory
    parsed = [parse_action(s.action) for s in t.steps]
    if len(parsed) < 3 or not isinstance(parsed[-1], AnswerAction):
        return None
    calls = [a for a in parsed[:-1] if isinstance(a, ToolCall)]
    if len(calls) != len(parsed) - 1:
        return None
    deps = call_dependencies(t.prompt, calls, [s.observation for s in t.steps[:-1]])
    order = _random_topological_order(deps, rng)
    if order == list(range(len(calls))):
        swappable = [k for k in range(len(calls) - 1) if k not in deps[k + 1]]
        if not swappable:
            return None
        k = swappable[int(rng.integers(len(swappable)))]
        order[k], order[k + 1] = order[k + 1], order[k]
    pool = pool or EnvPool()
    trajectory = replay_task(
        pool[t.env_id],
        task,
        [t.steps[i].action for i in order] + [t.steps[-1].action],
        env_id=t.env_id,
        seed=t.seed,
        source=f"{t.source}+reorder",
        difficulty=t.difficulty,
    )
    return Example(task, trajectory)


def _random_topological_order(
    deps: Sequence[frozenset[int]], rng: np.random.Generator
) -> list[int]:
    order: list[int] = []
    done: set[int] = set()
    while len(order) < len(deps):
        ready = [i for i in range(len(deps)) if i not in done and deps[i] <= done]
        pick = ready[int(rng.integers(len(ready)))]
        order.append(pick)
        done.add(pick)
    return order


# -- the generators ------------------------------------------------------------------------------


def task_seeds(spec: TaskSpec, index: int, difficulty: int) -> list[int]:
    """The reset seeds of the env-drawn tasks (oracle, llm) of ``spec.tasks[index]`` at
    ``difficulty``: ``count`` consecutive seeds from one derived from ``spec.seed``, the same
    for every generator of the entry (so their trajectories solve the same tasks)."""
    first = derive_seed(spec.seed, "synthesis-tasks", index, difficulty, bits=30)
    return list(range(first, first + spec.tasks[index].count))


@dataclass(frozen=True)
class _Job:
    """What a generator needs: the entry, the generator, the spec, the entry's index, envs."""

    entry: TaskEntry
    generator: GeneratorSpec
    spec: TaskSpec
    index: int
    pool: EnvPool
    log: Callable[[str], None] = field(default=lambda _: None)

    @property
    def source(self) -> str:
        return f"{SOURCE}:{self.generator.kind}"

    def seeds(self, difficulty: int) -> list[int]:
        return task_seeds(self.spec, self.index, difficulty)

    def env_kwargs(self) -> dict[str, Any]:
        from llm_trainer.envs.registration import spec

        declared = spec(self.entry.env_id).kwargs
        return {"corpus_seed": self.spec.corpus_seed} if "corpus_seed" in declared else {}

    def rollout_task(self, seed: int, difficulty: int) -> Task:
        env = self.pool[self.entry.env_id]
        env.reset(seed=seed, options={"difficulty": difficulty})
        return env.task

    def template_tasks(self, purpose: str) -> list[Task]:
        """``count`` template tasks, spread over the env's tools, interleaved."""
        from llm_trainer.data.templates import TemplateConfig, template_tasks

        tools = self.entry.tools
        per_tool = -(-self.entry.count // len(tools))
        config = TemplateConfig(corpus_seed=self.spec.corpus_seed)
        by_tool = [
            template_tasks(
                tool,  # type: ignore[arg-type]  # the spec checked these are our tools
                per_tool,
                derive_seed(self.spec.seed, purpose, self.index, tool),
                config,
            )
            for tool in tools
        ]
        interleaved = [tasks[i] for i in range(per_tool) for tasks in by_tool]
        return interleaved[: self.entry.count]

    def replay(self, task: Task, actions: Sequence[str]) -> Trajectory:
        env_id = self.entry.env_id
        return replay_task(
            self.pool[env_id],
            task,
            actions,
            env_id=env_id,
            seed=task.world_seed,
            source=self.source,
        )


def _oracle(job: _Job) -> list[Candidate]:
    from llm_trainer.agents.baselines import OracleAgent
    from llm_trainer.algorithms.rollout import collect

    out = []
    for difficulty in job.entry.difficulties:
        seeds = job.seeds(difficulty)
        played = collect(
            job.entry.env_id,
            OracleAgent,
            seeds,
            num_envs=32,
            difficulty=difficulty,
            env_kwargs=job.env_kwargs(),
            source=job.source,
        )
        out += [
            Candidate(job.rollout_task(t.seed, difficulty), t, job.generator.name) for t in played
        ]
    return out


def _templates(job: _Job) -> list[Candidate]:
    return [
        Candidate(task, job.replay(task, solution_actions(task)), job.generator.name)
        for task in job.template_tasks("synthesis-templates")
    ]


def _teacher(job: _Job) -> list[Candidate]:
    from llm_trainer.data.teacher import PlainExample, TeacherConfig, teacher_trajectories

    tasks = job.template_tasks("synthesis-teacher")
    questions = [PlainExample(t.prompt, t.answer, t.answer_kind, t.world_seed) for t in tasks]
    g = job.generator
    assert g.model is not None  # GeneratorSpec requires it for teacher
    result = teacher_trajectories(
        g.model,
        None,
        questions,
        TeacherConfig(
            threshold=g.threshold,
            seed=derive_seed(job.spec.seed, "synthesis-teacher-calls", job.index),
            tools=job.entry.tools,  # type: ignore[arg-type]  # the spec checked these
            corpus_seed=job.spec.corpus_seed,
        ),
    )
    job.log(f"  teacher mode: {result.stats.as_dict()}")
    # The kept call is judged against the template task it came from (its planned tool and
    # answer), not against a task made from the call itself.
    out = []
    for c in result.candidates:
        if c.kept:
            task = tasks[c.question_index]
            actions = [c.call.to_text(), format_answer(task.answer)]
            out.append(Candidate(task, job.replay(task, actions), g.name))
    return out


def _llm(job: _Job) -> list[Candidate]:
    from llm_trainer.agents.backends import SamplingConfig, parse_backend_spec
    from llm_trainer.agents.llm_agent import (
        LLMAgent,
        LLMAgentConfig,
        saved_task_template,
        shared_backend,
    )
    from llm_trainer.algorithms.rollout import EpisodeTask, close_all, make_envs, play_episodes

    g = job.generator
    assert g.backend is not None  # an llm generator always has one
    local = parse_backend_spec(g.backend).kind != "openai"
    agent = LLMAgent(
        LLMAgentConfig(
            backend=g.backend,
            sampling=SamplingConfig(
                temperature=g.temperature,
                max_new_tokens=g.max_new_tokens,
                seed=derive_seed(job.spec.seed, "synthesis-llm", job.index),
            ),
            task_template=saved_task_template(parse_backend_spec(g.backend).target)
            if local
            else None,
        ),
        backend=shared_backend(g.backend),
    )
    tasks = [
        EpisodeTask(
            seed,
            {"difficulty": difficulty},
            policy_seed=derive_seed(job.spec.seed, "synthesis-sample", job.index, seed, k),
        )
        for difficulty in job.entry.difficulties
        for seed in job.seeds(difficulty)
        for k in range(g.samples)
    ]
    envs = make_envs(job.entry.env_id, min(g.batch_size, len(tasks)), env_kwargs=job.env_kwargs())
    try:
        played = play_episodes(envs, agent, tasks, source=job.source)
    finally:
        close_all(envs)
    return [
        Candidate(
            job.rollout_task(e.trajectory.seed, int((task.options or {})["difficulty"])),
            e.trajectory,
            g.name,
        )
        for task, e in zip(tasks, played, strict=True)
    ]


#: The generator of each kind.
GENERATORS: Mapping[str, Callable[[_Job], list[Candidate]]] = {
    "oracle": _oracle,
    "templates": _templates,
    "teacher": _teacher,
    "llm": _llm,
}


# -- the pipeline --------------------------------------------------------------------------------


def synthesize(
    spec: TaskSpec | Mapping[str, Any] | str | Path,
    *,
    store: TrajectoryStore | None = None,
    log: Log = print,
) -> SynthesisResult:
    """Generate, filter, augment and (with ``store``) store synthetic trajectories; see the
    module docstring.

    Args:
        spec: A :class:`~llm_trainer.data.taskspec.TaskSpec`, a mapping or a YAML/JSON file.
        store: Where to store the datasets ``spec.name`` (kept) and ``spec.name-rejected``.
        log: Progress lines (``None``: silent).

    Raises:
        ConfigError: for an invalid spec (naming the field), or a backend or model that
            cannot be built.
    """
    spec = load_task_spec(spec)
    say = log or (lambda _: None)
    pool = EnvPool(spec.corpus_seed)
    seen: dict[str, str] = {}
    items: list[Synthesized] = []
    for index, entry in enumerate(spec.tasks):
        for generator in entry.generators:
            job = _Job(entry, generator, spec, index, pool, say)
            made = GENERATORS[generator.kind](job)
            judged = [judge(c, spec, pool=pool, seen=seen) for c in made]
            kept = sum(s.decision.kept for s in judged)
            say(f"{entry.env_id} {generator.name}: {kept} of {len(judged)} kept")
            items += judged
    originals = [s for s in items if s.decision.kept]
    for s in originals:
        for candidate in augmentations(s, spec, pool=pool):
            items.append(judge(candidate, spec, pool=pool, seen=seen))
    result = SynthesisResult(spec, tuple(items))
    if store is not None:
        result = store_synthesis(result, store)
    stats = result.stats()
    say(
        f"synthesis: {stats['kept']} of {stats['candidates']} kept; rejected by filter: "
        f"{stats['rejected_by_filter'] or 'none'}"
    )
    return result


def augmentations(
    item: Synthesized, spec: TaskSpec, *, pool: EnvPool | None = None
) -> list[Candidate]:
    """The augmented copies of a kept trajectory that ``spec.augment`` asks for (each seeded
    from ``spec.seed`` and the trajectory's hash, so independent of the order)."""
    a = spec.augment
    example = Example(item.task, item.trajectory)
    out = []
    for k in range(a.paraphrases):
        rng = np.random.default_rng(derive_seed(spec.seed, "paraphrase", item.hash, k))
        made = paraphrase_question(example, rng, strength=a.paraphrase_strength, pool=pool)
        if made is not None:
            out.append(
                Candidate(made.task, made.trajectory, item.generator, "paraphrase", item.hash)
            )
    if a.reorder:
        rng = np.random.default_rng(derive_seed(spec.seed, "reorder", item.hash))
        made = reorder_independent_calls(example, rng, pool=pool)
        if made is not None:
            out.append(Candidate(made.task, made.trajectory, item.generator, "reorder", item.hash))
    return out


def store_synthesis(result: SynthesisResult, store: TrajectoryStore) -> SynthesisResult:
    """Store the kept trajectories as dataset ``spec.name`` and the rejected ones as
    ``spec.name-rejected``, each trajectory annotated (:meth:`Synthesized.annotation`); returns
    the result with the datasets' versions."""
    spec = result.spec
    kept = _store_group(store, spec, spec.name, result.kept)
    rejected = _store_group(store, spec, f"{spec.name}-rejected", result.rejected)
    return replace(result, kept_dataset=kept, rejected_dataset=rejected)


def _store_group(
    store: TrajectoryStore, spec: TaskSpec, name: str, group: Sequence[Synthesized]
) -> str | None:
    if not group:
        return None
    trajectories = [s.trajectory for s in group]
    provenance = Provenance(
        env_ids=tuple(sorted({t.env_id for t in trajectories})),
        seeds=(spec.seed,),
        agent=",".join(sorted({s.generator for s in group})),
        strategy=SOURCE,
        config=spec.to_dict(),
    )
    annotations = [s.annotation() for s in group]
    return store.add(name, trajectories, provenance, annotations=annotations).id


def load_synthesized(
    store: TrajectoryStore, dataset_id: str
) -> list[tuple[Trajectory, dict[str, Any]]]:
    """A stored synthesis dataset: each trajectory with its annotation.

    Raises:
        UserError: for an unknown dataset, or one stored without annotations.
    """
    trajectories = store.load(dataset_id)
    notes = store.annotations(dataset_id)
    if len(notes) != len(trajectories):
        raise UserError(f"dataset {dataset_id} has no synthesis annotations")
    return list(zip(trajectories, notes, strict=True))
