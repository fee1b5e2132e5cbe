"""Research sprints: a team of four policies plays ``LLMTrainer/ResearchSprint-v0``, one
episode per sprint, and each sprint is written as seed 004 writes it.

``llm-trainer research --goal "..." --sprints N`` calls :func:`run_research`. Every sprint
``k`` (1..N) gets the id ``NNN`` (``001``, ``002``...), its own seed
(``derive_seed(seed, "research-sprint", k)``) and a folder::

    OUT/sprint_NNN/
        experiment.py        # the coder's final code, exactly as it ran
        requirements.txt     # its requirements block (a comment when it declared none)
        sprint_summary.json  # the whole sprint, in the seed's shape (written last, atomically)
    OUT/knowledge.sqlite     # memory across sprints (research_memory.py)

**Resuming.** A sprint whose ``sprint_summary.json`` exists is finished and skipped; any other
sprint folder (a run killed mid-sprint) is redone from its seed. The summary is replaced
atomically and written after the other files, so a kill at any moment loses at most the
sprint in progress. A finished sprint of another configuration (another goal, seed, agents or
settings) in the same folder is an error that names the difference: use another ``--out``.

**The team.** One agent spec per role (``--agent ROLE=SPEC``, or ``--agent SPEC`` for all):
``tiny`` (the default: the embedded tiny model, built into ``OUT/.tiny_model`` on first use;
untrained, it writes text but no working code), ``scripted``
(:mod:`llm_trainer.agents.research_team`: fixed, known-good texts; every sprint of a family
goal succeeds), or any spec of :func:`~llm_trainer.agents.factory.make_agent`
(``transformers:DIR``, ``vllm:DIR``, ``openai:URL#model``, a saved agent, ``python:mod:fn``).
The sprints are played by the :class:`~llm_trainer.agents.coordinator.MultiAgentCoordinator`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llm_trainer.agents.policy import Policy, resets_slots
from llm_trainer.core.errors import ConfigError, UserError, suggest
from llm_trainer.core.records import to_plain
from llm_trainer.core.rundir import atomic_directory, atomic_write, first_difference
from llm_trainer.core.seeding import derive_seed

ENV_ID = "LLMTrainer/ResearchSprint-v0"
#: The roles, in the order they speak.
ROLES: tuple[str, ...] = ("researcher", "architect", "coder", "validator")
#: The default agent spec of every role.
DEFAULT_AGENT = "tiny"
SUMMARY_FILE = "sprint_summary.json"
KNOWLEDGE_FILE = "knowledge.sqlite"
TINY_MODEL_DIR = ".tiny_model"
_NO_REQUIREMENTS = "# no requirements were declared (numpy is available in the sandbox)\n"
_FREE_TEXT_NOTE = (
    "The goal names no question the harness can answer itself (optimizer comparisons on least "
    "squares, halving an MLP's hidden size, weight decay), so only reproducibility was checked: "
    "the code's answer must be the same with fresh seeds and the conclusion must state it."
)


def parse_agent_specs(values: Sequence[str], default: str = DEFAULT_AGENT) -> dict[str, str]:
    """Agent specs by role from ``--agent`` values: ``ROLE=SPEC`` for one role, ``SPEC`` for
    every role; later values win.

    >>> parse_agent_specs(["scripted", "coder=openai:http://localhost:8000/v1#m"])["coder"]
    'openai:http://localhost:8000/v1#m'

    Raises:
        ConfigError: for an empty spec or an unknown role (with a suggestion).
    """
    specs = dict.fromkeys(ROLES, default)
    for value in values:
        role, sep, spec = value.partition("=")
        if not sep or (role not in ROLES and ":" in role):  # a spec that holds '='
            role, spec = "", value
        if role and role not in ROLES:
            raise ConfigError(
                f"--agent {value!r}: unknown role {role!r}{suggest(role, ROLES)}; roles: "
                f"{', '.join(ROLES)} (or give one SPEC for every role)"
            )
        if not spec.strip():
            raise ConfigError(f"--agent {value!r}: the agent spec is empty")
        for name in [role] if role else ROLES:
            specs[name] = spec.strip()
    return specs


@dataclass(frozen=True)
class ResearchConfig:
    """A run of research sprints (``llm-trainer research``)."""

    goal: str | None = None
    """The research goal as text; ``None``: each sprint draws a goal from the family."""
    sprints: int = 1
    """Sprints to run (``001`` to ``NNN``; finished ones are skipped)."""
    out: Path = Path("results")
    """The results folder: ``sprint_NNN/`` and ``knowledge.sqlite``."""
    seed: int = 0
    """The run's seed; sprint ``k`` plays ``derive_seed(seed, "research-sprint", k)``."""
    agents: Mapping[str, str] = field(default_factory=lambda: dict.fromkeys(ROLES, DEFAULT_AGENT))
    """The agent spec of every role (:func:`parse_agent_specs`)."""
    discussion_rounds: int = 1
    """Discussion rounds (each role speaks once per round)."""
    implementation_turns: int = 2
    """Most code submissions of the coder."""
    reproduction_seeds: int = 3
    """Fresh seeds the final code is run again with."""
    timeout_s: float = 120.0
    """Wall-clock limit of one run of the code (seed 004: two minutes)."""
    min_isolation: str = "L3"
    """The sandbox's minimum isolation level (``L0``: no isolation, trusted code only)."""
    memory_k: int = 3
    """Past sprints shown to the team (from ``knowledge.sqlite``)."""
    progress: bool | None = None
    """A progress bar on stderr (``None``: when stderr is a terminal)."""

    def __post_init__(self) -> None:
        if self.goal is not None and (not isinstance(self.goal, str) or not self.goal.strip()):
            raise ConfigError("ResearchConfig.goal: the research goal must be a non-empty text")
        if isinstance(self.sprints, bool) or not isinstance(self.sprints, int) or self.sprints < 1:
            raise ConfigError(f"ResearchConfig.sprints must be an int >= 1, got {self.sprints!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"ResearchConfig.seed must be an int, got {self.seed!r}")
        object.__setattr__(self, "out", Path(self.out))
        unknown = sorted(set(self.agents) - set(ROLES))
        missing = [r for r in ROLES if r not in self.agents]
        if unknown or missing:
            raise ConfigError(
                f"ResearchConfig.agents must give a spec for each of {', '.join(ROLES)}; "
                f"missing {missing}, unknown {unknown}"
            )
        object.__setattr__(self, "agents", {r: str(self.agents[r]) for r in ROLES})

    def env_kwargs(self) -> dict[str, Any]:
        """The env's arguments (the knowledge graph in ``out``)."""
        return {
            "discussion_rounds": self.discussion_rounds,
            "implementation_turns": self.implementation_turns,
            "reproduction_seeds": self.reproduction_seeds,
            "timeout_s": self.timeout_s,
            "min_isolation": self.min_isolation,
            "knowledge_path": str(self.out / KNOWLEDGE_FILE),
            "memory_k": self.memory_k,
        }

    def identity(self) -> dict[str, Any]:
        """What makes two runs' sprints the same (checked when resuming)."""
        return {
            "goal": self.goal,
            "seed": self.seed,
            "agents": dict(self.agents),
            "discussion_rounds": self.discussion_rounds,
            "implementation_turns": self.implementation_turns,
            "reproduction_seeds": self.reproduction_seeds,
            "timeout_s": self.timeout_s,
            "min_isolation": self.min_isolation,
            "memory_k": self.memory_k,
        }


@dataclass(frozen=True)
class SprintResult:
    """One sprint of a run: its folder, its summary, and whether it was already finished."""

    sprint_id: str
    path: Path
    summary: Mapping[str, Any]
    reused: bool


@dataclass(frozen=True)
class ResearchRun:
    """What :func:`run_research` did."""

    out: Path
    sprints: tuple[SprintResult, ...]
    knowledge: Path
    wall_seconds: float

    def as_dict(self) -> dict[str, Any]:
        """A JSON summary (the CLI's ``--json`` line)."""
        rows = []
        for s in self.sprints:
            summary = s.summary
            rows.append(
                {
                    "sprint_id": s.sprint_id,
                    "path": str(s.path),
                    "reused": s.reused,
                    "goal_kind": summary.get("goal_kind"),
                    "checking": summary.get("checking"),
                    "execution_success": summary["phases"]["validation"]["execution_success"],
                    "reproduced": summary.get("reproduced"),
                    "conclusion": summary["phases"]["validation"]["conclusion"],
                    "success": summary.get("success"),
                    "rewards": summary.get("rewards"),
                    "isolation_level": summary.get("isolation_level"),
                    "error": summary.get("error"),
                }
            )
        return {
            "out": str(self.out),
            "knowledge": str(self.knowledge),
            "sprints": rows,
            "successes": sum(bool(r["success"]) for r in rows),
            "wall_seconds": round(self.wall_seconds, 3),
        }


def sprint_id(index: int) -> str:
    """The id of sprint ``index`` (1-based): ``001``."""
    return f"{index:03d}"


def sprint_seed(seed: int, index: int) -> int:
    """The env seed of sprint ``index`` of a run with ``seed``."""
    return derive_seed(seed, "research-sprint", index)


# -- the team ---------------------------------------------------------------------------------


def _tiny_agent(out: Path, seed: int) -> Policy:
    """The embedded tiny model (built once into ``out/.tiny_model``), greedy."""
    from llm_trainer.agents.backends import SamplingConfig
    from llm_trainer.agents.llm_agent import LLMAgent, LLMAgentConfig, shared_backend
    from llm_trainer.agents.tinylm import create_tiny_model

    model = out / TINY_MODEL_DIR

    def build(tmp: Path) -> None:
        create_tiny_model(tmp, seed=0)

    if not (model / "config.json").exists():  # built aside and renamed: never half-written
        atomic_directory(model, build)
    spec = f"transformers:{model}"
    config = LLMAgentConfig(
        backend=spec, sampling=SamplingConfig(temperature=0.0, max_new_tokens=256, seed=seed)
    )
    return LLMAgent(config, backend=shared_backend(spec))


def build_team(config: ResearchConfig, env: Any) -> dict[str, Policy]:
    """The policy of every role from ``config.agents`` (roles with the same LLM spec share
    one backend: the model is loaded once).

    Raises:
        ConfigError: for an unknown spec (the factory's message).
    """
    from llm_trainer.agents.factory import make_agent
    from llm_trainer.agents.research_team import ScriptedResearchRole

    team: dict[str, Policy] = {}
    for role, spec in config.agents.items():
        seed = derive_seed(config.seed, "research-agent", role)
        if spec == "scripted":
            team[role] = ScriptedResearchRole(role)
        elif spec == DEFAULT_AGENT:
            team[role] = _tiny_agent(config.out, seed)
        else:
            team[role] = make_agent(spec, env, seed=seed)
    return team


class _Announce:
    """A role's policy that shows who is acting on the progress bar, and forwards the rest
    (slots, token records, episode ends) to the policy it wraps."""

    def __init__(self, policy: Policy, role: str, show: Callable[[str], None]) -> None:
        self.policy, self.role, self.show = policy, role, show
        self._slots = resets_slots(policy)

    def reset(self, *, seed: int | None = None, slot: int | None = None) -> None:
        if self._slots:
            self.policy.reset(seed=seed, slot=slot)  # type: ignore[call-arg]
        else:
            self.policy.reset(seed=seed)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        self.show(f"{self.role} ({str(info.get('phase', '')).replace('_', ' ')})")
        return self.policy.act(observation, info)

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        if infos:
            self.show(f"{self.role} ({str(infos[0].get('phase', '')).replace('_', ' ')})")
        return self.policy.act_batch(observations, infos)

    def __getattr__(self, name: str) -> Any:  # last_generation, end_episode...
        return getattr(self.policy, name)


# -- writing a sprint -------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON data with storable strings (lone surrogates replaced)."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _answer(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def _execution(run: Any) -> dict[str, Any]:
    return {
        "seed": run.seed,
        "success": run.ok,
        "returncode": run.returncode,
        "timed_out": run.timed_out,
        "result": to_plain(run.result),
        "answer": _answer(run.answer),
        "error": run.error,
        "stdout": run.stdout,
        "stderr": run.stderr,
        "isolation_level": run.level,
        "wall_seconds": round(run.wall_s, 3),
    }


def sprint_summary(
    config: ResearchConfig,
    sprint: str,
    seed: int,
    episode: Any,
    state: Any,
    started: datetime,
    wall: float,
) -> dict[str, Any]:
    """The sprint as seed 004's ``sprint_summary.json`` (``sprint_id``, ``goal``, ``phases``:
    discussion, implementation, validation), plus how it was judged, the rewards per role,
    the isolation level and the run's configuration.

    ``episode`` is the coordinator's :class:`~llm_trainer.agents.coordinator.
    MultiAgentEpisode`, ``state`` the env's final :class:`~llm_trainer.envs.multiagent.
    research.SprintEpisode`.
    """
    goal = state.goal
    outcome = state.outcome
    responses: dict[str, list[str]] = {r: [] for r in ROLES}
    for message in state.messages:
        if message.phase == "discussion":
            responses[message.agent].append(message.text)
    execution = state.execution
    reproduction = state.reproduction
    summary: dict[str, Any] = {
        "sprint_id": sprint,
        "goal": goal.text or goal.question,
        "research_question": goal.question,
        "goal_kind": goal.kind,
        "goal_params": to_plain(goal.params) if goal.kind else None,
        "checking": goal.checking,
        "note": None if goal.checkable else _FREE_TEXT_NOTE,
        "seed": seed,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 3),
        "agents": dict(config.agents),
        "phases": {
            "discussion": {
                "individual_responses": {r: "\n\n".join(t) for r, t in responses.items()},
                "hypothesis": state.hypothesis,
                "action_plan": state.plan,
            },
            "implementation": {
                "code": state.code or "",
                "requirements": state.requirements,
                "execution": _execution(execution) if execution is not None else None,
                "attempts": [_execution(run) for run in state.attempts],
            },
            "validation": {
                "analysis": state.analysis,
                "conclusion": _answer(state.conclusion),
                "execution_success": bool(outcome and outcome.execution_ok),
                "reproduction": {
                    "seeds": list(state.seeds[1:]),
                    "reproduced": bool(reproduction and reproduction.reproduced),
                    "answer": _answer(reproduction.answer) if reproduction else None,
                    "reason": reproduction.reason if reproduction else "the sprint did not end",
                    "runs": [_execution(run) for run in reproduction.runs] if reproduction else [],
                },
                "reference_answer": _answer(outcome.truth) if outcome else None,
                "verdict_correct": bool(outcome and outcome.verdict_correct),
            },
        },
        "isolation_level": execution.level if execution is not None else None,
        "reproduced": bool(outcome and outcome.reproduced),
        "success": bool(outcome and outcome.success),
        "rewards": {a: round(float(r), 6) for a, r in episode.returns.items()},
        "role_rewards": dict(outcome.role_rewards) if outcome else dict.fromkeys(ROLES, 0.0),
        "memory": list(state.memory),
        "transcript": [
            {"agent": m.agent, "phase": m.phase, "text": m.text} for m in state.messages
        ],
        "error": episode.error,
        "run": config.identity(),
    }
    cleaned: dict[str, Any] = _clean(summary)
    return cleaned


def write_sprint(folder: Path, summary: Mapping[str, Any]) -> None:
    """``experiment.py``, ``requirements.txt``, then ``sprint_summary.json`` (each atomic; the
    summary last: it marks the sprint finished)."""
    implementation = summary["phases"]["implementation"]
    code = implementation["code"] or "# the coder submitted no code that could run\n"
    atomic_write(folder / "experiment.py", code.encode("utf-8"))
    requirements = implementation["requirements"] or _NO_REQUIREMENTS
    atomic_write(folder / "requirements.txt", requirements.encode("utf-8"))
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    atomic_write(folder / SUMMARY_FILE, text.encode("utf-8"))


def _finished(config: ResearchConfig, folder: Path) -> dict[str, Any] | None:
    """The summary of a finished sprint in ``folder`` (``None``: not finished).

    Raises:
        UserError: when it is a sprint of another configuration, or unreadable.
    """
    path = folder / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        identity = summary["run"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a sprint summary this version can read ({exc})") from None
    difference = first_difference(identity, json.loads(json.dumps(config.identity())))
    if difference is not None:
        where, old, new = difference
        raise UserError(
            f"{folder} holds a sprint of another run ({where}: {old!r} there, {new!r} now); "
            "use another --out, or remove that folder to redo it"
        )
    return dict(summary)


# -- the run ----------------------------------------------------------------------------------


def run_research(
    config: ResearchConfig,
    *,
    log: Callable[[str], None] | None = None,
    on_sprint: Callable[[SprintResult], None] | None = None,
) -> ResearchRun:
    """Run ``config.sprints`` sprints (skipping finished ones) and write each one.

    Raises:
        UserError: for a bad agent spec, a sandbox below ``min_isolation``, or a results
            folder that holds another run's sprints.
    """
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    from llm_trainer.agents.coordinator import MultiAgentCoordinator
    from llm_trainer.envs.registration import make_multiagent

    say = log or (lambda _: None)
    start = time.perf_counter()
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    indices = range(1, config.sprints + 1)
    done = {i: _finished(config, out / f"sprint_{sprint_id(i)}") for i in indices}
    results: dict[int, SprintResult] = {}
    for i, summary in done.items():
        if summary is not None:
            results[i] = SprintResult(sprint_id(i), out / f"sprint_{sprint_id(i)}", summary, True)
    todo = [i for i in indices if done[i] is None]
    if results:
        say(f"{len(results)} finished sprint(s) in {out} kept; {len(todo)} to run")
    show = config.progress if config.progress is not None else sys.stderr.isatty()
    bar = tqdm(
        total=config.sprints,
        initial=len(results),
        desc="research sprints",
        unit="sprint",
        file=sys.stderr,
        disable=not show,
    )
    try:
        if todo:
            kwargs = config.env_kwargs()

            def team(envs: Sequence[Any]) -> dict[str, Policy]:
                policies = build_team(config, envs[0])
                return {
                    role: _Announce(policy, role, bar.set_postfix_str)
                    for role, policy in policies.items()
                }

            with MultiAgentCoordinator(
                lambda: make_multiagent(ENV_ID, **kwargs), team, num_envs=1
            ) as coordinator:
                for i in todo:
                    results[i] = _play_sprint(config, coordinator, i)
                    bar.update(1)
                    say(_line(results[i]))
                    if on_sprint is not None:
                        on_sprint(results[i])
    finally:
        bar.close()
    ordered = tuple(results[i] for i in indices)
    return ResearchRun(out, ordered, out / KNOWLEDGE_FILE, time.perf_counter() - start)


def _play_sprint(config: ResearchConfig, coordinator: Any, index: int) -> SprintResult:
    ident = sprint_id(index)
    folder = config.out / f"sprint_{ident}"
    seed = sprint_seed(config.seed, index)
    options: dict[str, Any] = {"sprint_id": ident}
    if config.goal is not None:
        options["goal"] = config.goal
    started = datetime.now(UTC)
    clock = time.perf_counter()
    [episode] = coordinator.play([seed], options=options)
    state = coordinator.envs[0].unwrapped.get_state()
    summary = sprint_summary(
        config, ident, seed, episode, state, started, time.perf_counter() - clock
    )
    write_sprint(folder, summary)
    return SprintResult(ident, folder, summary, False)


def _line(result: SprintResult) -> str:
    s = result.summary
    validation = s["phases"]["validation"]
    verdict = "succeeded" if s["success"] else "failed"
    error = f"; error: {s['error']}" if s.get("error") else ""
    return (
        f"sprint {result.sprint_id} ({s['goal_kind'] or 'free text'}): {verdict}; executed "
        f"{'yes' if validation['execution_success'] else 'no'}, reproduced "
        f"{'yes' if s['reproduced'] else 'no'}, conclusion {validation['conclusion']} "
        f"({'correct' if validation['verdict_correct'] else 'wrong'}); {result.path}{error}"
    )


__all__ = [
    "ENV_ID",
    "ROLES",
    "ResearchConfig",
    "ResearchRun",
    "SprintResult",
    "build_team",
    "parse_agent_specs",
    "run_research",
    "sprint_summary",
    "write_sprint",
]
