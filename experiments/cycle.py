"""The whole cycle as one command: rounds of registered stages, benchmarked, with lineage.

Seed 000's data flow is a cycle: problem definition -> agent population -> evolution/search ->
training -> evaluation -> metrics collection -> data management -> knowledge base -> agents,
again and again. ``llm-trainer cycle --config configs/cycle.yaml`` runs it:

* **Population**: ``population`` independent lineages of one starting point; member ``k``
  runs every stage with seeds of its own (``seed + 1000 k + round``).
* **Round 0**: the ``bootstrap`` stages (once; e.g. SFT of the tiny model into a weak agent),
  then the benchmark. **Rounds 1..R**: the ``stages`` in order, each starting from the model
  the previous one made (expert iteration, search-distilled SFT, NAT, GRPO, DPO... any
  registered algorithm, or ``module:Class`` / ``file.py:Class``), then the benchmark.
* **Stages are experiments**: each is an ordinary run (``run_experiment``: its run directory,
  its row in the runs index labelled with the cycle, held-out evaluation, ``final_model``),
  configured by the cycle's shared sections (``model``, ``train``, ``eval``...) deep-merged
  with the stage's own. ``per_round`` moves a field each round (``{expert_iteration.
  first_seed: 1024}``: new training tasks every round).
* **Benchmark**: every round's agent of every member plays the same suite (a registry suite
  id, or an inline grid) through the benchmark runner, so rounds are paired on the same
  episodes: round r against round 0 and against round r-1, a paired bootstrap interval and a
  sign-flip p-value over (member, episode) pairs, stratified by member and cell. A round
  whose success fell past the noise floor of the one before is logged as an alert.
* **Knowledge graph** (``knowledge.sqlite`` in the cycle folder, or ``knowledge_path``): the
  stage runs record experiments, models (``derived_from`` the model they started from, so a
  round's model has the whole cycle as its lineage), datasets; the benchmark records the
  problems, the solutions and the failures (with their failure mode) of every episode.
* **Failure mining**: each round's failure modes (from the benchmark records) are in the
  round summary, next to the success they explain.
* **Resumable**: ``state.json`` (written atomically after every stage and benchmark) lists
  what is finished. Run the same command after a kill: finished stages are skipped, a stage
  killed midway restarts in its run directory (from its last checkpoint when its algorithm
  keeps them), a benchmark continues from its partial file. A changed config is refused
  (``--fresh`` starts over).
* **Outputs** (``OUTPUT_DIR/cycle_<name>/``): ``rounds.json`` (every number), ``rounds.md``
  (the round summary table), ``rounds.png`` (success per round with 95% intervals, and the
  failure modes per round), ``status.json``, the benchmark result files.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llm_trainer.core.config import apply_overrides, read_yaml_mapping, to_dict
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import atomic_write, run_slug

Log = Callable[[str], None]

#: Top-level keys of a cycle file that belong to the cycle itself (the rest are the shared
#: experiment sections every stage starts from).
CYCLE_KEYS = (
    "name",
    "seed",
    "rounds",
    "population",
    "output_dir",
    "knowledge_path",
    "bootstrap",
    "stages",
    "benchmark",
    "confidence",
    "parallel",
)
#: Keys of a stage that are not experiment fields.
STAGE_KEYS = ("algorithm", "per_round", "resources")
STATE_VERSION = 1


@dataclass(frozen=True)
class StageSpec:
    """One stage: an algorithm and the experiment settings it adds to the shared ones."""

    label: str
    """The stage's key in the cycle file (names its runs)."""
    algorithm: str
    """A registered name (``llm-trainer algorithms``), ``module:Class`` or ``file.py:Class``."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Experiment fields deep-merged over the cycle's shared sections (``train:``, the
    algorithm's own section...)."""
    per_round: Mapping[str, int] = field(default_factory=dict)
    """Dotted fields moved by ``step x (round - 1)`` in round ``round`` (e.g. the first
    training seed, so each round sees new tasks)."""
    resources: Any = None
    """The CPU cores and GPUs the stage runs on (``{cpus: N, gpus: M}``: a
    :class:`~llm_trainer.experiments.scheduler.Slots`); ``None``: the machine's cores shared
    out among ``parallel`` members, no GPU."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """The suite every round's agents play (the same episodes every round)."""

    suite: str | None = None
    """A suite id of registry.yaml; ``None``: the inline grid below."""
    envs: tuple[str, ...] = ("LLMTrainer/Calculator-v0",)
    difficulties: tuple[int, ...] = (1,)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    episodes_per_cell: int = 200
    """Episodes per (env, difficulty), split across the seeds."""
    workers: int = 2
    """Benchmark worker processes (1: in this process)."""
    ray_address: str | None = None
    """Play the episodes as Ray tasks on this cluster instead (``local``, ``auto`` or
    ``HOST:PORT``; the ``ray`` extra): the same records as the local workers."""


@dataclass(frozen=True)
class CycleConfig:
    """A cycle file (see the module docstring and ``configs/cycle.yaml``)."""

    name: str
    seed: int
    rounds: int
    population: int
    output_dir: str
    knowledge_path: str | None
    shared: Mapping[str, Any]
    """The experiment sections every stage starts from (``model``, ``train``, ``eval``...)."""
    bootstrap: tuple[StageSpec, ...]
    stages: tuple[StageSpec, ...]
    benchmark: BenchmarkSpec
    confidence: float = 0.95
    parallel: int = 1
    """Members whose stages run at once, each stage in a process of its own holding the
    slots the :class:`~llm_trainer.experiments.scheduler.ResourceScheduler` gave it (1, with
    no stage ``resources``: every stage runs in this process, one after another)."""

    @property
    def directory(self) -> Path:
        return Path(self.output_dir) / f"cycle_{run_slug(self.name)}"

    def to_dict(self) -> dict[str, Any]:
        """The cycle as YAML-shaped data (what ``cycle.yaml`` in its folder holds)."""

        def stages(specs: Sequence[StageSpec]) -> dict[str, Any]:
            return {
                s.label: {
                    "algorithm": s.algorithm,
                    **copy.deepcopy(dict(s.settings)),
                    **({"per_round": dict(s.per_round)} if s.per_round else {}),
                    **({"resources": to_dict(s.resources)} if s.resources is not None else {}),
                }
                for s in specs
            }

        return {
            "name": self.name,
            "seed": self.seed,
            "rounds": self.rounds,
            "population": self.population,
            "output_dir": self.output_dir,
            "knowledge_path": self.knowledge_path,
            "confidence": self.confidence,
            "parallel": self.parallel,
            **copy.deepcopy(dict(self.shared)),
            "bootstrap": stages(self.bootstrap),
            "stages": stages(self.stages),
            "benchmark": to_dict(self.benchmark),
        }

    def digest(self) -> str:
        """What must not change for a resumed cycle to continue: everything but ``rounds`` (a
        finished cycle run again with more rounds goes on from its last one) and
        ``parallel``."""
        data = self.to_dict()
        del data["rounds"], data["parallel"]  # how many at once does not change the work
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _int(data: Mapping[str, Any], key: str, default: int, low: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key}: must be an integer >= {low}, got {value!r}")
    return value


def _stages(raw: Any, key: str) -> tuple[StageSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{key}: must be a mapping of stage label -> stage (algorithm: NAME and its "
            f"settings), got {type(raw).__name__}"
        )
    specs = []
    for label, body in raw.items():
        where = f"{key}.{label}"
        if not isinstance(label, str) or not label.isidentifier():
            raise ConfigError(f"{where}: a stage label must be an identifier")
        if not isinstance(body, Mapping) or not isinstance(body.get("algorithm"), str):
            raise ConfigError(f"{where}: a stage needs 'algorithm: NAME' (llm-trainer algorithms)")
        per_round = body.get("per_round") or {}
        if not isinstance(per_round, Mapping) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in per_round.items()
        ):
            raise ConfigError(f"{where}.per_round: must map dotted fields to integer steps")
        resources = body.get("resources")
        if resources is not None:
            from llm_trainer.core.config import build
            from llm_trainer.experiments.scheduler import Slots

            if not isinstance(resources, Mapping):
                raise ConfigError(f"{where}.resources: must be a mapping (cpus: N, gpus: M)")
            try:
                resources = build(Slots, resources, f"{where}.resources")
            except ConfigError as exc:
                raise ConfigError(f"{where}.resources: {exc}") from None
        settings = {k: v for k, v in body.items() if k not in STAGE_KEYS}
        for reserved in ("name", "seed", "output_dir", "resume", "knowledge_path"):
            if reserved in settings:
                raise ConfigError(f"{where}.{reserved}: set by the cycle, not by a stage")
        specs.append(StageSpec(label, body["algorithm"], settings, dict(per_round), resources))
    return tuple(specs)


def _benchmark(raw: Any) -> BenchmarkSpec:
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("benchmark: must be a mapping")
    known = {f.name for f in dataclasses.fields(BenchmarkSpec)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"benchmark.{key}: unknown field; allowed: {', '.join(known)}")
    values = dict(raw)
    for key in ("envs", "difficulties", "seeds"):
        if key in values:
            if not isinstance(values[key], list | tuple) or not values[key]:
                raise ConfigError(f"benchmark.{key}: must be a non-empty list")
            values[key] = tuple(values[key])
    spec = BenchmarkSpec(**values)
    if isinstance(spec.workers, bool) or not isinstance(spec.workers, int) or spec.workers < 1:
        raise ConfigError(f"benchmark.workers: must be a positive integer, got {spec.workers!r}")
    if spec.ray_address is not None:
        from llm_trainer.distributed.ray_backend import check_ray_installed

        if not isinstance(spec.ray_address, str) or not spec.ray_address.strip():
            raise ConfigError("benchmark.ray_address: local, auto or HOST:PORT")
        check_ray_installed("benchmark.ray_address")
    return spec


def cycle_from_dict(data: Mapping[str, Any], source: str = "") -> CycleConfig:
    """Build a :class:`CycleConfig` from YAML-shaped data; every stage's experiment is checked
    (as ``llm-trainer train`` checks a file) before anything runs.

    Raises:
        ConfigError: naming the field (and ``source``) for anything wrong.
    """
    where = f"{source}: " if source else ""
    try:
        name = data.get("name", "cycle")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("name: must be a non-empty string")
        confidence = data.get("confidence", 0.95)
        if not isinstance(confidence, float) or not 0.5 <= confidence < 1.0:
            raise ConfigError(f"confidence: must be in [0.5, 1), got {confidence!r}")
        knowledge = data.get("knowledge_path")
        if knowledge is not None and not isinstance(knowledge, str):
            raise ConfigError("knowledge_path: must be a path")
        config = CycleConfig(
            name=name,
            seed=_int(data, "seed", 0, 0),
            rounds=_int(data, "rounds", 2, 1),
            population=_int(data, "population", 1, 1),
            output_dir=str(data.get("output_dir", "runs")),
            knowledge_path=knowledge,
            shared={k: v for k, v in data.items() if k not in CYCLE_KEYS},
            bootstrap=_stages(data.get("bootstrap"), "bootstrap"),
            stages=_stages(data.get("stages"), "stages"),
            benchmark=_benchmark(data.get("benchmark")),
            confidence=confidence,
            parallel=_int(data, "parallel", 1, 1),
        )
        if not config.stages:
            raise ConfigError("stages: a cycle needs at least one stage per round")
        labels = [s.label for s in (*config.bootstrap, *config.stages)]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"stage labels must be unique across bootstrap and stages: {labels}")
        for stage in (*config.bootstrap, *config.stages):
            stage_experiment(config, stage, round_=1, member=0, model_path="tiny")
        benchmark_suite(config)
        return config
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None


def load_cycle(path: str | Path, overrides: Sequence[str] = ()) -> CycleConfig:
    """A cycle file with ``--set key=value`` overrides (``stages.LABEL.train.max_steps=5``)."""
    data = read_yaml_mapping(path)
    try:
        data = apply_overrides(data, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return cycle_from_dict(data, str(path))


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def stage_name(config: CycleConfig, stage: StageSpec, round_: int, member: int) -> str:
    """The run name of a stage (unique in the output folder for one cycle)."""
    return f"{config.name}-r{round_}-m{member}-{stage.label}"


def stage_experiment(
    config: CycleConfig,
    stage: StageSpec,
    *,
    round_: int,
    member: int,
    model_path: str,
    system_prompt: str | None = None,
) -> Any:
    """The :class:`~llm_trainer.algorithms.config.ExperimentConfig` of ``stage`` in round
    ``round_`` for ``member``, starting from ``model_path`` (prompted with ``system_prompt``
    when an earlier stage chose one)."""
    from llm_trainer.algorithms.config import experiment_from_dict

    data = _merge(dict(config.shared), stage.settings)
    data = _merge(data, {"model": {"path": model_path}})
    if system_prompt is not None:
        data["model"]["system_prompt"] = system_prompt
    for dotted, step in stage.per_round.items():
        node: Any = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        current = node.get(parts[-1]) if isinstance(node, dict) else None
        if not isinstance(current, int) or isinstance(current, bool):
            raise ConfigError(
                f"stages.{stage.label}.per_round: {dotted} must be an integer set in the stage "
                f"(or the shared sections), got {current!r}"
            )
        node[parts[-1]] = current + step * max(0, round_ - 1)
    data.update(
        algorithm=stage.algorithm,
        name=stage_name(config, stage, round_, member),
        seed=config.seed + 1000 * member + round_,
        output_dir=config.output_dir,
        knowledge_path=str(knowledge_path(config)),
    )
    try:
        return experiment_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"stage {stage.label!r} ({stage.algorithm}): {exc}") from None


def knowledge_path(config: CycleConfig) -> Path:
    return Path(config.knowledge_path or config.directory / "knowledge.sqlite")


def benchmark_suite(config: CycleConfig) -> Any:
    """The :class:`~llm_trainer.benchmarks.suites.SuiteSpec` every round plays."""
    from llm_trainer.benchmarks.suites import parse_suite, suite_spec
    from llm_trainer.core.errors import RegistryError

    b = config.benchmark
    if b.suite is not None:
        try:
            return suite_spec(b.suite)
        except RegistryError as exc:
            raise ConfigError(f"benchmark.suite: {exc}") from None
    entry = {
        "id": f"cycle-{run_slug(config.name)}-v0",
        "description": f"The benchmark of cycle {config.name}",
        "envs": list(b.envs),
        "difficulties": list(b.difficulties),
        "seeds": list(b.seeds),
        "episodes_per_cell": b.episodes_per_cell,
    }
    try:
        return parse_suite(entry, "benchmark")
    except RegistryError as exc:
        raise ConfigError(str(exc)) from None


# -- running --------------------------------------------------------------------------------


@dataclass
class Member:
    """Where one lineage stands: its current model and how it must be prompted."""

    model_path: str
    task_template: str | None = None
    system_prompt: str | None = None
    """The system prompt a stage chose (an evolution stage's best agent); ``None``: the
    shared ``model.system_prompt``."""


class CycleState:
    """``state.json``: what is finished (stage summaries, benchmark files), written atomically
    after each piece of work."""

    def __init__(self, path: Path, digest: str, *, fresh: bool) -> None:
        import threading

        self._lock = threading.Lock()
        self.path = path
        self.data: dict[str, Any] = {"version": STATE_VERSION, "digest": digest, "done": {}}
        if path.exists() and not fresh:
            stored = json.loads(path.read_text())
            if stored.get("digest") != digest:
                raise ConfigError(
                    f"{path.parent} holds a cycle of another configuration (digest "
                    f"{stored.get('digest')} != {digest}); pass --fresh to start it over, or "
                    "give the cycle another name"
                )
            self.data = stored
        else:
            self._write()

    def get(self, key: str) -> dict[str, Any] | None:
        value = self.data["done"].get(key)
        return dict(value) if value is not None else None

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        with self._lock:  # members' stages finish in threads of their own
            self.data["done"][key] = dict(value)
            self._write()

    def _write(self) -> None:
        text = json.dumps(self.data, indent=2, default=str) + "\n"
        atomic_write(self.path, text.encode())


class Cycle:
    """Runs a :class:`CycleConfig` (see the module docstring).

    Args:
        config: The cycle.
        fresh: Discard a previous cycle of this name (its folder) and start over.
        log: Where progress lines go.
        progress: Progress bars of the benchmarks (``None``: when stderr is a terminal).
    """

    def __init__(
        self,
        config: CycleConfig,
        *,
        fresh: bool = False,
        log: Log = print,
        progress: bool | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.progress = progress
        self.directory = config.directory
        if fresh and self.directory.exists():
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.state = CycleState(self.directory / "state.json", config.digest(), fresh=fresh)
        atomic_write(
            self.directory / "cycle.yaml",
            _yaml(config.to_dict()).encode(),
        )
        self.suite = benchmark_suite(config)
        self.scheduler = self._scheduler()

    def _scheduler(self) -> Any:
        """The scheduler of the stages' slots when stages run in processes of their own
        (``parallel`` > 1 or a stage with ``resources``); ``None`` otherwise."""
        c = self.config
        stages = (*c.bootstrap, *c.stages)
        if c.parallel == 1 and all(s.resources is None for s in stages):
            return None
        from llm_trainer.experiments.scheduler import ResourceScheduler, Slots, available_cpus

        share = Slots(cpus=max(1, len(available_cpus()) // c.parallel))
        return ResourceScheduler(stages={s.label: s.resources or share for s in stages})

    @property
    def cycle_id(self) -> str:
        return f"{self.config.name}@{self.config.digest()}"

    def run(self) -> dict[str, Any]:
        """Every round (resuming what a previous call finished); returns ``rounds.json``."""
        from llm_trainer.experiments.index import run_labels
        from llm_trainer.experiments.monitor import MonitoringService

        c = self.config
        monitor = MonitoringService(self.directory, name=f"cycle {c.name}", log=self.log)
        members = [Member(str(c.shared.get("model", {}).get("path", "tiny")))] * c.population
        members = [dataclasses.replace(m) for m in members]
        rounds: list[dict[str, Any]] = []
        try:
            with run_labels(cycle_id=self.cycle_id):
                for round_ in range(c.rounds + 1):
                    stages = c.bootstrap if round_ == 0 else c.stages
                    with monitor.stage(f"round_{round_}"):
                        self._members_round(round_, stages, members)
                        results = [self._benchmark(round_, k, m) for k, m in enumerate(members)]
                    rounds.append(self._round_summary(round_, results, rounds))
                    monitor.step(round_, {"success": rounds[-1]["success"]["mean"]})
                    self._write(rounds)
        except BaseException:
            monitor.finish("failed")
            raise
        monitor.finish("finished")
        return self._report(rounds)

    # -- one stage -------------------------------------------------------------------------

    def _members_round(
        self, round_: int, stages: Sequence[StageSpec], members: Sequence[Member]
    ) -> None:
        """Every member through ``stages``: one after another, or ``parallel`` at once (each
        member's stages in order, in a thread that runs them as processes)."""

        def advance(k: int) -> None:
            for stage in stages:
                self._stage(stage, round_, k, members[k])

        if self.config.parallel == 1:
            for k in range(len(members)):
                advance(k)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.config.parallel, thread_name_prefix="cycle-member") as pool:
            for future in [pool.submit(advance, k) for k in range(len(members))]:
                future.result()  # the first failure is raised (the others finish first)

    def _stage(self, stage: StageSpec, round_: int, k: int, member: Member) -> None:
        from llm_trainer.algorithms.experiment import run_experiment
        from llm_trainer.core.rundir import find_runs

        key = f"r{round_}/m{k}/{stage.label}"
        done = self.state.get(key)
        if done is not None:
            self.log(f"[{key}] finished before: {done['run_dir']}")
        else:
            experiment = stage_experiment(
                self.config,
                stage,
                round_=round_,
                member=k,
                model_path=member.model_path,
                system_prompt=member.system_prompt,
            )
            if member.model_path == "tiny" and experiment.algorithm_class().name != "sft":
                self.log(f"[{key}] note: starts from an untrained tiny model")
            resume = bool(find_runs(experiment.output_dir, experiment.name))
            if resume:
                self.log(f"[{key}] continuing its interrupted run")
            experiment = dataclasses.replace(experiment, resume=resume)
            self.log(f"[{key}] {stage.algorithm} from {member.model_path}")
            if self.scheduler is None:
                done = stage_record(
                    run_experiment(experiment, log=lambda m: self.log(f"[{key}] {m}"))
                )
            else:
                done = self._stage_in_process(stage, key, experiment)
            self.state.put(key, done)
        if done.get("model_dir"):
            member.model_path = str(done["model_dir"])
            member.task_template = done.get("task_template")
        if done.get("system_prompt") is not None:
            member.system_prompt = done["system_prompt"]
            self.log(f"[{key}] later stages and the benchmark use the system prompt it chose")

    def _stage_in_process(self, stage: StageSpec, key: str, experiment: Any) -> dict[str, Any]:
        """Run ``experiment`` in a fresh process confined to the slots of ``stage`` (held
        until it ends); its record."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from llm_trainer.experiments.sweep import apply_allocation

        with self.scheduler.slots(stage.label) as allocation:
            self.log(f"[{key}] on cores {list(allocation.cpus)}, GPUs {list(allocation.gpus)}")
            with ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=apply_allocation,
                initargs=(allocation,),
            ) as pool:
                return pool.submit(
                    run_stage, experiment.to_dict(), self.cycle_id, f"[{key}]"
                ).result()

    # -- benchmark -------------------------------------------------------------------------

    def _agent_dir(self, round_: int, k: int, member: Member) -> Path:
        """A saved agent running ``member``'s model greedily with the cycle's prompting."""
        from llm_trainer.agents.backends.base import SamplingConfig
        from llm_trainer.agents.llm_agent import LLMAgentConfig, save_agent_pointer

        model = Path(member.model_path)
        if member.model_path == "tiny" or not (model / "config.json").is_file():
            raise ConfigError(
                f"round {round_}: member {k}'s model {member.model_path!r} is not a model "
                "directory; start from a trained model (model.path) or add a bootstrap stage "
                "that trains one"
            )
        shared = self.config.shared
        system_prompt = member.system_prompt
        if system_prompt is None:
            system_prompt = shared.get("model", {}).get("system_prompt")
        tokens = shared.get("eval", {}).get("max_new_tokens", 96)
        agent = LLMAgentConfig(
            backend=f"transformers:{model.resolve()}",
            system_prompt=system_prompt,
            sampling=SamplingConfig(temperature=0.0, max_new_tokens=tokens, seed=0),
            task_template=member.task_template,
        )
        return save_agent_pointer(self.directory / f"round_{round_}" / f"agent_m{k}", agent)

    def _benchmark(self, round_: int, k: int, member: Member) -> Any:
        from llm_trainer.benchmarks.results import load_result
        from llm_trainer.benchmarks.runner import BenchConfig, run_bench

        key = f"r{round_}/m{k}/benchmark"
        out = self.directory / f"round_{round_}" / f"bench_m{k}.json"
        done = self.state.get(key)
        if done is not None and out.is_file():
            return load_result(out)
        agent = self._agent_dir(round_, k, member)
        self.log(f"[{key}] {self.suite.id}: {len(self.suite.episode_keys())} episodes")
        run = run_bench(
            BenchConfig(
                suite=self.suite.id,
                agent=str(agent),
                name=f"{self.config.name} round {round_} member {k}",
                out=out,
                workers=self.config.benchmark.workers,
                progress=self.progress,
                knowledge_path=knowledge_path(self.config),
                ray_address=self.config.benchmark.ray_address,
            ),
            self.suite,
        )
        self.state.put(key, {"result": str(out), "model_dir": member.model_path})
        return run.result

    # -- summaries -------------------------------------------------------------------------

    def _round_summary(
        self, round_: int, results: Sequence[Any], previous: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        from llm_trainer.benchmarks.stats import bootstrap_ci, paired_compare

        c = self.config
        values = [r.values("success") for r in results]
        strata = self._strata(results)
        pooled = np.concatenate(values)
        interval = bootstrap_ci(pooled, strata, confidence=c.confidence, seed=c.seed)
        modes: Counter[str] = Counter(
            e.failure_mode or "unknown" for r in results for e in r.episodes if e.failure_mode
        )
        summary: dict[str, Any] = {
            "round": round_,
            "stages": [s.label for s in (c.bootstrap if round_ == 0 else c.stages)],
            "models": [str(r.agent_spec) for r in results],
            "success": interval.as_dict(),
            "success_per_member": [float(v.mean()) for v in values],
            "format_correctness": _mean(results, "format_correctness"),
            "episodes": int(pooled.size),
            "failure_modes": dict(modes.most_common()),
            "values": [v.tolist() for v in values],
        }
        for label, index in (("vs_round_0", 0), ("vs_previous", round_ - 1)):
            if round_ == 0 or index < 0:
                continue
            base = np.concatenate([np.asarray(v) for v in previous[index]["values"]])
            compared = paired_compare(pooled, base, strata, confidence=c.confidence, seed=c.seed)
            summary[label] = compared.as_dict()
        if round_ > 0:
            base_means = previous[0]["success_per_member"]
            gains = [float(v.mean()) - b for v, b in zip(values, base_means, strict=True)]
            summary["gain_per_member"] = gains
            summary["member_interval"] = _t_interval(gains, c.confidence)
        regression = summary.get("vs_previous")
        if regression is not None and regression["ci_high"] < 0:
            self.log(
                f"ALERT: cycle {c.name} round {round_}: success fell "
                f"{-regression['difference']:.3f} below round {round_ - 1} "
                f"({c.confidence:.0%} interval [{regression['ci_low']:+.3f}, "
                f"{regression['ci_high']:+.3f}], p = {regression['p_value']:.2g})"
            )
        return summary

    def _strata(self, results: Sequence[Any]) -> Any:
        from llm_trainer.benchmarks.results import cell_strata

        cells = len(self.suite.cells())
        return np.concatenate(
            [k * cells + cell_strata(r.suite, r.episodes) for k, r in enumerate(results)]
        )

    def _report(self, rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        c = self.config
        last = rounds[-1]
        gain = last.get("vs_round_0")
        if gain is None:
            verdict = "one round only: nothing to compare"
        elif gain["ci_low"] > 0:
            verdict = (
                f"round {last['round']} beats round 0 by {gain['difference']:+.3f} success "
                f"[{gain['ci_low']:+.3f}, {gain['ci_high']:+.3f}] (p = {gain['p_value']:.2g})"
            )
        elif gain["ci_high"] < 0:
            verdict = (
                f"round {last['round']} is WORSE than round 0: {gain['difference']:+.3f} "
                f"[{gain['ci_low']:+.3f}, {gain['ci_high']:+.3f}] (p = {gain['p_value']:.2g})"
            )
        else:
            verdict = (
                f"no gain shown: round {last['round']} - round 0 = {gain['difference']:+.3f} "
                f"[{gain['ci_low']:+.3f}, {gain['ci_high']:+.3f}] includes 0 "
                f"(p = {gain['p_value']:.2g})"
            )
        members = last.get("member_interval")
        if members is not None:
            verdict += (
                f"; over the {c.population} lineages {members['mean']:+.3f} "
                f"[{members['ci_low']:+.3f}, {members['ci_high']:+.3f}] (t-interval)"
            )
        return {
            "cycle": c.name,
            "directory": str(self.directory),
            "suite": self.suite.id,
            "population": c.population,
            "confidence": c.confidence,
            "verdict": verdict,
            "usage": self._usage(),
            "rounds": [{k: v for k, v in r.items() if k != "values"} for r in rounds],
            "knowledge_path": str(knowledge_path(c)),
            "table": str(self.directory / "rounds.md"),
            "plot": str(self.directory / "rounds.png"),
        }

    def _usage(self) -> dict[str, Any] | None:
        """Seconds and tokens of the cycle's stage runs, summed from the runs index."""
        from llm_trainer.experiments.cost import RunUsage
        from llm_trainer.experiments.index import ExperimentManager, default_index_path

        path = default_index_path(self.config.output_dir)
        if not path.is_file():
            return None
        records = ExperimentManager(path).runs(cycle_id=self.cycle_id)
        return {"runs": len(records), **RunUsage.total(r.usage for r in records).as_dict()}

    def _write(self, rounds: Sequence[Mapping[str, Any]]) -> None:
        report = self._report(rounds)
        data = {**report, "rounds": list(rounds)}
        atomic_write(
            self.directory / "rounds.json",
            (json.dumps(data, indent=2, default=str) + "\n").encode(),
        )
        atomic_write(self.directory / "rounds.md", round_table(report).encode())
        plot_rounds(report["rounds"], self.directory / "rounds.png", self.config)


def stage_record(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What ``state.json`` keeps of a finished stage's summary."""
    return {
        "algorithm": summary.get("algorithm"),
        "run_dir": summary.get("run_dir"),
        "model_dir": summary.get("model_dir"),
        "task_template": summary.get("task_template"),
        "success_before": summary.get("success_before"),
        "success_after": summary.get("success_after"),
        "wall_seconds": summary.get("wall_seconds"),
        "system_prompt": _chosen_prompt(summary.get("best_agent")),
    }


def run_stage(experiment: Mapping[str, Any], cycle_id: str, prefix: str) -> dict[str, Any]:
    """Run one stage's experiment (in a worker process) labelled with its cycle; its
    record. Progress lines go to this process's stdout, prefixed."""
    from llm_trainer.algorithms.config import experiment_from_dict
    from llm_trainer.algorithms.experiment import run_experiment
    from llm_trainer.experiments.index import run_labels

    with run_labels(cycle_id=cycle_id):
        summary = run_experiment(
            experiment_from_dict(experiment), log=lambda m: print(f"{prefix} {m}", flush=True)
        )
    return stage_record(summary)


def _t_interval(values: Sequence[float], confidence: float) -> dict[str, float] | None:
    """Mean and t-interval over lineages (each member's gain: the training seed as the unit);
    ``None`` for fewer than two members or without scipy."""
    if len(values) < 2:
        return None
    try:
        from scipy import stats  # type: ignore[import-untyped]  # the bench extra
    except ImportError:
        return None
    mean = float(np.mean(values))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1)) * float(
        np.std(values, ddof=1) / np.sqrt(len(values))
    )
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half}


def _chosen_prompt(agent_dir: Any) -> str | None:
    """The system prompt of the agent a stage chose (evolution's ``best_agent``), if any."""
    if not isinstance(agent_dir, str):
        return None
    from llm_trainer.agents.llm_agent import CONFIG_FILE

    try:
        config = json.loads((Path(agent_dir) / CONFIG_FILE).read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    prompt = config.get("system_prompt") if isinstance(config, dict) else None
    return prompt if isinstance(prompt, str) else None


def _mean(results: Sequence[Any], metric: str) -> float | None:
    values = [r.values(metric) for r in results]
    if any(v is None for v in values):
        return None
    return float(np.concatenate(values).mean())


def _yaml(data: Any) -> str:
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False))


def _interval(d: Mapping[str, Any] | None, key: str = "mean") -> str:
    if d is None:
        return "-"
    low, high, value = d["ci_low"], d["ci_high"], d[key]
    sign = "+" if key == "difference" else ""
    return f"{value:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"


def round_table(report: Mapping[str, Any]) -> str:
    """The round summary as a Markdown table (``rounds.md``), the verdict under it."""
    level = f"{report['confidence']:.0%}"
    lines = [
        f"# Cycle {report['cycle']}: {report['suite']}, population {report['population']}",
        "",
        f"| round | stages | success [{level}] | vs round 0 | p | vs previous | format | "
        "top failure modes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rounds"]:
        modes = ", ".join(f"{m} {n}" for m, n in list(r["failure_modes"].items())[:3]) or "-"
        first = r.get("vs_round_0")
        fmt = r["format_correctness"]
        lines.append(
            f"| {r['round']} | {', '.join(r['stages']) or '-'} | {_interval(r['success'])} | "
            f"{_interval(first, 'difference')} | "
            f"{'-' if first is None else format(first['p_value'], '.2g')} | "
            f"{_interval(r.get('vs_previous'), 'difference')} | "
            f"{'-' if fmt is None else format(fmt, '.3f')} | {modes} |"
        )
    lines += ["", report["verdict"], ""]
    return "\n".join(lines)


def plot_rounds(rounds: Sequence[Mapping[str, Any]], path: Path, config: CycleConfig) -> Path:
    """Success per round (pooled, with its interval; each member's mean as a dot) and the
    failure modes per round (stacked episode counts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["round"] for r in rounds]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    means = [r["success"]["mean"] for r in rounds]
    low = [r["success"]["mean"] - r["success"]["ci_low"] for r in rounds]
    high = [r["success"]["ci_high"] - r["success"]["mean"] for r in rounds]
    left.errorbar(x, means, yerr=[low, high], marker="o", capsize=4, label="population")
    for k in range(config.population):
        left.scatter(x, [r["success_per_member"][k] for r in rounds], s=12, alpha=0.6)
    left.set_xlabel("round")
    left.set_ylabel(f"benchmark success ({config.confidence:.0%} interval)")
    left.set_xticks(x)
    left.set_ylim(0, 1)
    left.set_title(f"cycle {config.name}")
    modes = sorted({m for r in rounds for m in r["failure_modes"]})
    bottom = np.zeros(len(rounds))
    for mode in modes:
        counts = np.array([r["failure_modes"].get(mode, 0) for r in rounds], dtype=float)
        right.bar(x, counts, bottom=bottom, label=mode)
        bottom += counts
    right.set_xlabel("round")
    right.set_ylabel("failed episodes")
    right.set_xticks(x)
    right.set_title("failure modes")
    if modes:
        right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
