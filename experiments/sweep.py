"""Sweeps over config fields: grid, random and Optuna search, trials run in parallel.

``llm-trainer sweep --config X --grid train.learning_rate=1e-3,2e-3 --parallel 2`` trains one
run per point of the space (every combination of the ``--grid`` values), ``--random N`` draws
``N`` points (``--range train.learning_rate=loguniform(1e-4,1e-2)`` adds a continuous
dimension), and ``--optuna N`` lets Optuna's TPE sampler choose ``N`` points one after the
other, each informed by the results so far. Each trial is an ordinary run: it has its run
directory and its row in the runs index, labelled with the sweep's id and its trial number.

* :class:`ConfigManager` holds the base experiment (a YAML file and ``--set`` overrides) and
  makes each trial's config, checked like a loaded file: a misspelt field or a value out of
  range fails before any trial starts.
* Trials run in ``--parallel`` worker processes (``spawn``: fresh interpreters), each holding
  the CPU cores and GPUs the :class:`~llm_trainer.experiments.scheduler.ResourceScheduler` gave
  it for the whole sweep (applied before torch is imported) and running its trials one after
  another; every run seeds itself, so a trial's result does not depend on which worker ran it.
  With ``--parallel 1`` the trials run in this process, one after another.
* With ``--ray ADDRESS`` (or the base config's ``ray.address``) the trials run as Ray tasks
  instead (:meth:`~llm_trainer.distributed.ray_backend.RayExecutor.stream`), ``--parallel`` at
  once, each reserving ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs. A trial is the same
  run wherever it runs (the same config, seeds, run directory layout, index row and labels),
  so the results equal the local path's. A task whose worker dies is re-run by Ray; a re-run
  of a trial that had already finished returns that run instead of training it again.
* A sweep's id is a digest of its base config and its search (not of its trial count): the same
  command resumes it, and one asking for more ``--random`` or ``--optuna`` trials extends it.
  Grid and random sweeps skip the trials already finished in the index (a random sweep's first
  ``N`` draws are the same whatever its ``N``); an Optuna sweep keeps its study in
  ``optuna.sqlite`` beside the index and runs only the trials still missing.

Search space syntax (``FIELD=SPEC``, ``FIELD`` a dotted config field):

========================  ===================================================
``a,b,c``                 choices (grid: each of them; random/optuna: one of them)
``uniform(lo,hi)``        a float in [lo, hi] (random and optuna only)
``loguniform(lo,hi)``     a float in [lo, hi], uniform in log space (lo > 0)
``int(lo,hi)``            an integer in [lo, hi]
========================  ===================================================

>>> parse_parameter("train.learning_rate=1e-3,2e-3")
Parameter(field='train.learning_rate', dimension=Choice(values=(0.001, 0.002)))
>>> grid_trials([parse_parameter("a=1,2"), parse_parameter("b=x,y")])
[{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import random
import re
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llm_trainer.core.errors import ConfigError, UserError
from llm_trainer.distributed.ray_backend import check_ray_installed
from llm_trainer.experiments.index import ExperimentManager, RunRecord, default_index_path
from llm_trainer.experiments.scheduler import (
    THREAD_VARIABLES,
    Allocation,
    ResourceScheduler,
    Slots,
)

if TYPE_CHECKING:
    from llm_trainer.algorithms.config import ExperimentConfig
    from llm_trainer.distributed.ray_backend import RayExecutor

Log = Callable[[str], None]
Mode = Literal["grid", "random", "optuna"]
Direction = Literal["maximize", "minimize"]

# -- the search space -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a few values."""

    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Uniform:
    """A float in ``[low, high]`` (uniform in log space when ``log``)."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True, slots=True)
class IntRange:
    """An integer in ``[low, high]``."""

    low: int
    high: int


Dimension = Choice | Uniform | IntRange


@dataclass(frozen=True, slots=True)
class Parameter:
    """A config field and the values a sweep gives it."""

    field: str
    dimension: Dimension


def _value(raw: str) -> Any:
    """A value of the command line: an int, a float (``1e-3`` too), or YAML.

    >>> _value("3"), _value("1e-3"), _value("true"), _value("cosine")
    (3, 0.001, True, 'cosine')
    """
    import yaml

    text = raw.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {raw!r}: {' '.join(str(exc).split())}") from None


_RANGE = re.compile(r"(uniform|loguniform|int)\((.*)\)")


def parse_parameter(text: str) -> Parameter:
    """``FIELD=SPEC`` (see the module docstring).

    >>> parse_parameter("train.learning_rate=loguniform(1e-4, 1e-2)").dimension
    Uniform(low=0.0001, high=0.01, log=True)
    >>> parse_parameter("train.batch_size=int(2,8)").dimension
    IntRange(low=2, high=8)

    Raises:
        ConfigError: naming the parameter and what is wrong with it.
    """
    field, sep, spec = text.partition("=")
    field, spec = field.strip(), spec.strip()
    if not sep or not field or not spec:
        raise ConfigError(f"sweep parameter {text!r}: expected FIELD=SPEC, e.g. seed=0,1")
    match = _RANGE.fullmatch(spec)
    if match is None:
        values = tuple(_value(v) for v in spec.split(","))
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"sweep parameter {field}: a value is listed twice in {spec!r}")
        return Parameter(field, Choice(values))
    kind, arguments = match.groups()
    bounds = [_value(v) for v in arguments.split(",")]
    if len(bounds) != 2 or not all(
        isinstance(b, int | float) and not isinstance(b, bool) for b in bounds
    ):
        raise ConfigError(f"sweep parameter {field}: {kind}(low,high) takes two numbers")
    low, high = bounds
    if not low < high:
        raise ConfigError(f"sweep parameter {field}: {kind} needs low < high, got {spec}")
    if kind == "int":
        if not (isinstance(low, int) and isinstance(high, int)):
            raise ConfigError(f"sweep parameter {field}: int(low,high) takes integers")
        return Parameter(field, IntRange(low, high))
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"sweep parameter {field}: loguniform needs low > 0, got {low}")
    return Parameter(field, Uniform(float(low), float(high), log=kind == "loguniform"))


def grid_trials(parameters: Sequence[Parameter]) -> list[dict[str, Any]]:
    """Every combination of the parameters' choices, the last parameter varying fastest.

    Raises:
        ConfigError: for a range (a grid needs listed values).
    """
    for p in parameters:
        if not isinstance(p.dimension, Choice):
            raise ConfigError(
                f"sweep parameter {p.field}: a grid takes listed values (a,b,c); ranges are "
                "for --random and --optuna"
            )
    choices = [p.dimension.values for p in parameters if isinstance(p.dimension, Choice)]
    fields = [p.field for p in parameters]
    return [dict(zip(fields, combo, strict=True)) for combo in itertools.product(*choices)]


def random_trials(parameters: Sequence[Parameter], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` points drawn independently (``seed`` fixes them: a resumed sweep draws the same).

    >>> random_trials([parse_parameter("a=int(1,100)")], 3, seed=0) == random_trials(
    ...     [parse_parameter("a=int(1,100)")], 3, seed=0)
    True
    """
    rng = random.Random(seed)
    trials = []
    for _ in range(n):
        point: dict[str, Any] = {}
        for p in parameters:
            d = p.dimension
            if isinstance(d, Choice):
                point[p.field] = d.values[rng.randrange(len(d.values))]
            elif isinstance(d, IntRange):
                point[p.field] = rng.randint(d.low, d.high)
            elif d.log:
                point[p.field] = math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
            else:
                point[p.field] = rng.uniform(d.low, d.high)
        trials.append(point)
    return trials


def _set_field(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"sweep parameter {dotted}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


class ConfigManager:
    """Hyperparameter management: the base experiment and the trial configs of a sweep.

    Args:
        path: The experiment YAML file (``None``: the defaults).
        overrides: ``--set key=value`` overrides of the base.

    Raises:
        ConfigError: for anything wrong with the base config.
    """

    def __init__(self, path: str | Path | None = None, overrides: Sequence[str] = ()) -> None:
        from llm_trainer.algorithms.config import load_experiment

        self.base: ExperimentConfig = load_experiment(path, overrides)
        self.base_data: dict[str, Any] = self.base.to_dict()

    def trial_config(self, params: Mapping[str, Any], name: str) -> ExperimentConfig:
        """The base with ``params`` set, named ``name`` (never resuming another run).

        Raises:
            ConfigError: naming the parameter when a value does not fit its field.
        """
        from llm_trainer.algorithms.config import experiment_from_dict

        data = copy.deepcopy(self.base_data)
        for field, value in params.items():
            _set_field(data, field, value)
        data["name"], data["resume"] = name, False
        try:
            return experiment_from_dict(data)
        except ConfigError as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise ConfigError(f"sweep trial ({shown}): {exc}") from None

    def check(self, parameters: Sequence[Parameter]) -> None:
        """Build a trial config with every listed value and both ends of every range, so that
        a bad field or value fails before any trial runs."""
        for p in parameters:
            if p.field in ("name", "resume", "output_dir"):
                raise ConfigError(f"sweep parameter {p.field}: a sweep sets it for each trial")
            d = p.dimension
            values = d.values if isinstance(d, Choice) else (d.low, d.high)
            for value in values:
                self.trial_config({p.field: value}, self.base.name)


# -- sweep settings and results --------------------------------------------------------------


def default_direction(objective: str) -> Direction:
    """``minimize`` for losses, times and errors; ``maximize`` for the rest.

    >>> default_direction("final_loss"), default_direction("success")
    ('minimize', 'maximize')
    """
    lowered = objective.lower()
    return "minimize" if any(w in lowered for w in ("loss", "seconds", "errors")) else "maximize"


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: its space, its search and how its trials run."""

    parameters: tuple[Parameter, ...]
    """The fields swept and their values."""
    mode: Mode = "grid"
    """``grid`` (every combination), ``random`` (``trials`` draws) or ``optuna`` (``trials``
    chosen by Optuna's TPE sampler)."""
    trials: int | None = None
    """How many trials (random and optuna; a grid has as many as combinations)."""
    parallel: int = 1
    """Trials at once."""
    cpus_per_trial: int | None = None
    """CPU cores per trial (default: the cores divided among the parallel trials)."""
    gpus_per_trial: int | None = None
    """GPUs per trial (default: 1 when every parallel trial can have one, else 0)."""
    objective: str = "success"
    """The metric that ranks trials (a key of the runs index: ``success``, ``final_loss``,
    ``after/mean_reward``...)."""
    direction: Direction | None = None
    """Better is higher (``maximize``) or lower; default: :func:`default_direction`."""
    seed: int = 0
    """Seeds the random draws and Optuna's sampler."""
    name: str | None = None
    """The sweep's name (default: the base experiment's); its id adds a digest of the rest."""
    ray_address: str | None = None
    """Run the trials as Ray tasks on this cluster: ``local`` (started here), ``auto``,
    ``HOST:PORT`` or ``ray://HOST:PORT`` (the ``ray`` extra); ``None``: the base config's
    ``ray.address``, else local processes. Not part of the sweep's id: a sweep started
    locally can be resumed on Ray."""

    def __post_init__(self) -> None:
        if not self.parameters:
            raise ConfigError("sweep: give at least one parameter (--grid or --range)")
        fields = [p.field for p in self.parameters]
        if len(set(fields)) != len(fields):
            raise ConfigError(f"sweep: a field is swept twice in {fields}")
        if self.mode == "grid" and self.trials is not None:
            raise ConfigError("sweep: a grid runs every combination; trials is for random/optuna")
        if self.mode == "grid":
            grid_trials(self.parameters)  # ranges are refused here, before anything is written
        if self.mode != "grid" and (self.trials is None or self.trials < 1):
            raise ConfigError(f"sweep: {self.mode} needs trials >= 1")
        if self.parallel < 1:
            raise ConfigError(f"sweep: parallel must be >= 1, got {self.parallel}")
        if self.direction not in (None, "maximize", "minimize"):
            raise ConfigError(f"sweep: direction {self.direction!r} is not maximize or minimize")
        if self.ray_address is not None:
            if not self.ray_address.strip():
                raise ConfigError("sweep: --ray must not be empty (local, auto or HOST:PORT)")
            check_ray_installed("--ray")

    @property
    def resolved_direction(self) -> Direction:
        return self.direction or default_direction(self.objective)

    def spec(self) -> dict[str, Any]:
        """What defines the sweep (its id is a digest of it, less ``trials``, and the base)."""
        return {
            "mode": self.mode,
            "parameters": [
                {"field": p.field, "kind": type(p.dimension).__name__, **_asdict(p.dimension)}
                for p in self.parameters
            ],
            "trials": self.trials,
            "objective": self.objective,
            "direction": self.resolved_direction,
            "seed": self.seed,
        }


def _asdict(dimension: Dimension) -> dict[str, Any]:
    return {f.name: getattr(dimension, f.name) for f in dataclasses.fields(dimension)}


def sweep_id(name: str, spec: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """``<name>-<digest>``: the same sweep of the same base has the same id."""
    from llm_trainer.core.rundir import run_slug

    digest = hashlib.sha256(
        json.dumps({"spec": spec, "base": base}, sort_keys=True, default=str).encode()
    ).hexdigest()[:8]
    return f"{run_slug(name)}-{digest}"


@dataclass(frozen=True, slots=True)
class TrialResult:
    """One trial, as the runs index has it (its latest run)."""

    trial: int
    params: Mapping[str, Any]
    status: str
    objective: float | None
    run_id: int | None
    run_dir: str | None
    error: str | None = None


@dataclass(frozen=True)
class SweepResult:
    """A sweep's trials (those of earlier, resumed sessions too) and the best of them."""

    id: str
    mode: Mode
    objective: str
    direction: Direction
    trials: tuple[TrialResult, ...]
    index_path: Path
    ran: int
    """Trials run in this session (the others were finished before)."""

    @property
    def best(self) -> TrialResult | None:
        """The finished trial with the best objective (``None`` when none has one)."""
        scored = [t for t in self.trials if t.objective is not None]
        if not scored:
            return None
        sign = 1.0 if self.direction == "maximize" else -1.0
        return max(scored, key=lambda t: (sign * (t.objective or 0.0), -t.trial))

    def ranked(self) -> list[TrialResult]:
        """Trials best first (failed and unscored ones last, by trial number)."""
        sign = -1.0 if self.direction == "maximize" else 1.0
        return sorted(
            self.trials,
            key=lambda t: (t.objective is None, sign * (t.objective or 0.0), t.trial),
        )

    def as_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "sweep_id": self.id,
            "mode": self.mode,
            "objective": self.objective,
            "direction": self.direction,
            "index": str(self.index_path),
            "ran": self.ran,
            "best": None if best is None else dataclasses.asdict(best),
            "trials": [dataclasses.asdict(t) for t in self.ranked()],
        }


# -- running trials --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrialJob:
    """What a worker process (or a Ray task) needs to run one trial."""

    sweep_id: str
    trial: int
    config: dict[str, Any]
    cpus: int | None = None
    """The CPUs a Ray task reserved (its BLAS/OpenMP and torch threads)."""
    cwd: str | None = None
    """The sweep's working directory (a Ray task runs there: relative paths, the run
    directories' among them, mean what they mean to the sweep)."""
    index: str | None = None
    """The sweep's runs index (a Ray task's run registers there, whatever the environment
    the cluster was started with)."""


class _Worker:
    """One worker process of a sweep and the allocation it holds."""

    def __init__(self, allocation: Allocation, context: Any) -> None:
        self.allocation, self.context = allocation, context
        self.pool = self._pool()

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            1, mp_context=self.context, initializer=apply_allocation, initargs=(self.allocation,)
        )

    def restart(self) -> None:
        """A new process in place of one that died."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._pool()


def apply_allocation(allocation: Allocation) -> None:
    """A worker's first act: confine it to its cores and GPUs (before torch is imported)."""
    allocation.apply()


@dataclass(frozen=True, slots=True)
class _Done:
    trial: int
    run_dir: str | None
    error: str | None


def _print(message: str) -> None:
    print(message, flush=True)


def run_trial(job: TrialJob, log: Log = _print) -> _Done:
    """Run one trial (in a worker process, or in this one: see :meth:`Sweep._run_pool`); its
    progress lines go to ``log``, prefixed with the trial."""
    from llm_trainer.algorithms.config import experiment_from_dict
    from llm_trainer.algorithms.experiment import run_experiment
    from llm_trainer.experiments.index import run_labels

    def trial_log(message: str) -> None:
        log(f"[trial {job.trial}] {message}")

    try:
        config = experiment_from_dict(job.config)
        with run_labels(sweep_id=job.sweep_id, trial=job.trial):
            summary = run_experiment(config, log=trial_log)
    except Exception as exc:  # the trial failed (the index says so); its siblings go on
        return _Done(job.trial, None, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    return _Done(job.trial, str(summary["run_dir"]), None)


def run_ray_trial(job: TrialJob) -> _Done:
    """Run one trial as a Ray task (see :meth:`Sweep._run_ray`): in the sweep's working
    directory and runs index, with as many threads as its CPUs, its index row labelled here
    (the labels are a context variable of this process). A re-run of a task whose worker died
    after the trial had finished returns that run: a trial is never recorded twice as
    finished.

    What the trial prints goes to stderr: Ray forwards a worker's output to the driver's
    terminal asynchronously, so a line on stdout could land after the sweep's ``--json``
    summary line."""
    from llm_trainer.experiments.index import INDEX_ENV

    if job.cwd is not None and not os.path.isdir(job.cwd):
        return _Done(
            job.trial,
            None,
            f"the sweep's working directory {job.cwd} is not on Ray node {socket.gethostname()}: "
            "trials read and write paths relative to it, so every node needs it (shared "
            "storage at the same path)",
        )
    before, index_before = os.getcwd(), os.environ.get(INDEX_ENV)
    try:
        if job.cwd is not None:
            os.chdir(job.cwd)
        if job.index is not None:
            os.environ[INDEX_ENV] = job.index
        if job.cpus is not None:
            _use_threads(job.cpus)
        with contextlib.redirect_stdout(sys.stderr):
            finished = _finished_run(job)
            if finished is not None:
                _print(f"[trial {job.trial}] had finished before its worker died: {finished}")
                return _Done(job.trial, finished, None)
            return run_trial(job)
    finally:
        os.chdir(before)
        if index_before is None:
            os.environ.pop(INDEX_ENV, None)
        else:
            os.environ[INDEX_ENV] = index_before


def _use_threads(cpus: int) -> None:
    """BLAS/OpenMP and torch threads for ``cpus`` CPUs (a Ray worker may run trials of other
    sizes before, and may have imported torch already)."""
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(cpus)))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(cpus)


def _finished_run(job: TrialJob) -> str | None:
    """The run directory of a finished run of this trial in the runs index, if any."""
    path = default_index_path(job.config.get("output_dir", "runs"))
    if not path.exists():
        return None
    for record in ExperimentManager(path).runs(sweep_id=job.sweep_id, status="finished"):
        if record.labels.trial == job.trial:
            return record.run_dir
    return None


def _trial_params(record: RunRecord, fields: Sequence[str]) -> dict[str, Any]:
    params = {}
    for field in fields:
        node: Any = record.config
        for part in field.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        params[field] = node
    return params


def sweep_trials(
    index: ExperimentManager, sweep: str, fields: Sequence[str], objective: str
) -> list[TrialResult]:
    """The trials of sweep ``sweep`` in the index: the latest run of each trial number."""
    latest: dict[int, RunRecord] = {}
    for record in index.runs(sweep_id=sweep):
        if record.labels.trial is not None and record.labels.trial not in latest:
            latest[record.labels.trial] = record  # runs() is newest first
    out = []
    for trial, record in sorted(latest.items()):
        metric = record.metrics.get(objective)
        out.append(
            TrialResult(
                trial=trial,
                params=_trial_params(record, fields),
                status=record.status,
                objective=metric.value if metric is not None and record.status == "finished"
                else None,
                run_id=record.id,
                run_dir=record.run_dir,
                error=record.error,
            )
        )  # fmt: skip
    return out


class Sweep:
    """One sweep of ``manager``'s base experiment (see the module docstring).

    Args:
        manager: The base experiment.
        config: The sweep.
        log: Where progress lines go.
    """

    def __init__(self, manager: ConfigManager, config: SweepConfig, *, log: Log = print) -> None:
        self.manager, self.config, self.log = manager, config, log
        manager.check(config.parameters)
        base = manager.base
        self.name = config.name or base.name
        identity = {k: v for k, v in config.spec().items() if k != "trials"}
        self.id = sweep_id(self.name, identity, manager.base_data)
        self.ray_address = config.ray_address or base.ray.address
        """Where the trials run as Ray tasks (``None``: local processes)."""
        if config.ray_address is None and self.ray_address is not None:
            check_ray_installed("ray.address")
        self.index = ExperimentManager(default_index_path(base.output_dir))
        self.fields = [p.field for p in config.parameters]
        self.ran = 0

    def trial_name(self, trial: int) -> str:
        """A trial's run name (unique: parallel trials never share a run folder)."""
        return f"{self.name}_{self.id.rsplit('-', 1)[-1]}_t{trial:03d}"

    def _scheduler(self) -> tuple[ResourceScheduler, int]:
        probe = ResourceScheduler()
        cpus = self.config.cpus_per_trial or max(1, len(probe.cpus) // self.config.parallel)
        gpus = self.config.gpus_per_trial
        if gpus is None:
            gpus = 1 if len(probe.gpus) >= self.config.parallel else 0
        scheduler = ResourceScheduler(stages={"trial": Slots(cpus=cpus, gpus=gpus)})
        parallel = min(self.config.parallel, scheduler.capacity("trial"))
        if parallel < self.config.parallel:
            self.log(
                f"note: {self.config.parallel} parallel trials of {cpus} cores and {gpus} GPUs "
                f"do not fit on {len(scheduler.cpus)} cores and {len(scheduler.gpus)} GPUs: "
                f"running {parallel} at once"
            )
        return scheduler, parallel

    def run(self) -> SweepResult:
        """Run the trials still missing; returns every trial of the sweep."""
        cfg = self.config
        self.index.add_sweep(self.id, self.name, cfg.mode, cfg.spec(), self.manager.base_data)
        self.index.reap()  # trials of a killed session are failed, so they run again
        self.log(f"sweep {self.id} ({cfg.mode}), runs index {self.index.path}")
        if cfg.mode == "optuna":
            self._run_optuna()
        else:
            points = (
                grid_trials(cfg.parameters)
                if cfg.mode == "grid"
                else random_trials(cfg.parameters, cfg.trials or 0, cfg.seed)
            )
            done = {
                t.trial
                for t in sweep_trials(self.index, self.id, self.fields, cfg.objective)
                if t.status == "finished"
            }
            if done:
                self.log(f"resuming: {len(done)} of {len(points)} trials finished before")
            pending = [(i, p) for i, p in enumerate(points) if i not in done]
            if pending:
                self._run_pool(iter(pending), lambda trial, params, outcome: None)
        self.index.reap()  # a trial whose worker died is failed, not running
        return SweepResult(
            self.id,
            cfg.mode,
            cfg.objective,
            cfg.resolved_direction,
            tuple(sweep_trials(self.index, self.id, self.fields, cfg.objective)),
            self.index.path,
            self.ran,
        )

    def _objective(self, run_dir: str | None) -> float | None:
        """The objective of the run in ``run_dir`` (``None`` when it has none)."""
        if run_dir is None:
            return None
        record = self.index.find(run_dir)
        metric = record.metrics.get(self.config.objective)
        if metric is None:
            numbers = ", ".join(sorted(record.metrics)) or "none"
            self.log(
                f"objective {self.config.objective!r} is not a metric of run {record.id} "
                f"(it has: {numbers})"
            )
            return None
        return metric.value

    def _job(
        self, trial: int, params: Mapping[str, Any], where: str = "", **extra: Any
    ) -> TrialJob:
        config = self.manager.trial_config(params, self.trial_name(trial))
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        self.log(f"trial {trial}: {shown}{where}")
        return TrialJob(self.id, trial, config.to_dict(), **extra)

    def _report(
        self,
        done: _Done,
        params: Mapping[str, Any],
        report: Callable[[int, Mapping[str, Any], float | None], None],
    ) -> None:
        self.ran += 1
        objective = None if done.error else self._objective(done.run_dir)
        outcome = (
            f"failed: {done.error}" if done.error else f"{self.config.objective} = {objective}"
        )
        self.log(f"trial {done.trial} {outcome}")
        report(done.trial, params, objective)

    def _run_pool(
        self,
        pending: Iterator[tuple[int, Mapping[str, Any]]],
        report: Callable[[int, Mapping[str, Any], float | None], None],
    ) -> None:
        """Run the ``(trial, params)`` of ``pending`` (drawn only when a worker is free:
        Optuna chooses each point as late as possible), calling ``report(trial, params,
        objective)`` as each ends (``None``: it failed).

        Each worker is one ``spawn`` process holding one allocation of the scheduler for the
        whole sweep (applied when it starts, before torch is imported) and running trials one
        after another (every run seeds itself: a trial never depends on the one before). A
        worker that dies is replaced; its trial is failed. One trial at a time runs in this
        process, on the whole machine: there is nothing to share out, and no worker to start.
        With a Ray address the trials are Ray tasks instead (:meth:`_run_ray`).
        """
        if self.ray_address is not None:
            self._run_ray(self.ray_address, pending, report)
            return
        scheduler, parallel = self._scheduler()
        if parallel == 1:
            for trial, params in pending:
                self._report(run_trial(self._job(trial, params), self.log), params, report)
            return
        context = multiprocessing.get_context("spawn")
        workers: list[_Worker] = []
        idle: list[_Worker] = []
        running: dict[Future[_Done], tuple[int, Mapping[str, Any], _Worker]] = {}
        exhausted = False
        try:
            while True:
                while not exhausted and (idle or len(workers) < parallel):
                    item = next(pending, None)
                    if item is None:
                        exhausted = True
                        break
                    if idle:
                        worker = idle.pop()
                    else:
                        worker = _Worker(scheduler.acquire("trial"), context)
                        workers.append(worker)
                    trial, params = item
                    job = self._job(trial, params, f" (cores {list(worker.allocation.cpus)})")
                    running[worker.pool.submit(run_trial, job)] = (trial, params, worker)
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    trial, params, worker = running.pop(future)
                    try:
                        done = future.result()
                    except BrokenProcessPool:  # its worker died (killed, out of memory)
                        done = _Done(trial, None, "its worker process died")
                        worker.restart()
                    idle.append(worker)
                    self._report(done, params, report)
        finally:
            for worker in workers:
                worker.pool.shutdown(wait=not running, cancel_futures=True)
                scheduler.release(worker.allocation)

    def _ray_slots(self, executor: RayExecutor) -> tuple[int, int]:
        """CPUs and GPUs per trial on the cluster: ``cpus_per_trial`` and ``gpus_per_trial``,
        by default shared out as on one machine (the cluster's CPUs divided among the parallel
        trials, at most a node's; a GPU each when every parallel trial can have one)."""
        cfg = self.config
        nodes = executor.node_resources()
        largest = max((int(n.get("CPU", 0)) for n in nodes), default=1)
        total_cpus = sum(int(n.get("CPU", 0)) for n in nodes)
        total_gpus = sum(int(n.get("GPU", 0)) for n in nodes)
        cpus = cfg.cpus_per_trial or max(1, min(largest, total_cpus // cfg.parallel))
        gpus = cfg.gpus_per_trial
        if gpus is None:
            gpus = 1 if total_gpus >= cfg.parallel else 0
        if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
            self.log(
                f"note: no node of the Ray cluster has {cpus} CPUs and {gpus} GPUs now: the "
                "trials wait for one (an autoscaler may add it)"
            )
        return cpus, gpus

    def _run_ray(
        self,
        address: str,
        pending: Iterator[tuple[int, Mapping[str, Any]]],
        report: Callable[[int, Mapping[str, Any], float | None], None],
    ) -> None:
        """:meth:`_run_pool` with each trial a Ray task on the cluster at ``address``,
        ``parallel`` at once (each drawn from ``pending`` only when one may start, as in the
        local pool), reserving its CPUs and GPUs. A task whose worker dies is re-run by Ray
        (:class:`~llm_trainer.distributed.ray_backend.RayExecutor`'s retries); when the
        retries are spent, the trial is failed."""
        from llm_trainer.distributed.ray_backend import RayExecutor

        params_of: dict[int, Mapping[str, Any]] = {}
        executor = RayExecutor(address)
        with executor:
            cpus, gpus = self._ray_slots(executor)
            where = f" (Ray task: {cpus} CPU{'s' * (cpus != 1)}, {gpus} GPU{'s' * (gpus != 1)})"
            cwd, index = os.getcwd(), str(self.index.path.resolve())

            def jobs() -> Iterator[TrialJob]:
                for trial, params in pending:
                    params_of[trial] = params
                    yield self._job(trial, params, where, cpus=cpus, cwd=cwd, index=index)

            def lost(job: TrialJob, error: Exception) -> _Done:
                return _Done(job.trial, None, f"its Ray worker died ({error})")

            for _, done in executor.stream(
                run_ray_trial,
                jobs(),
                in_flight=self.config.parallel,
                num_cpus=cpus,
                num_gpus=gpus,
                on_lost=lost,
            ):
                self._report(done, params_of.pop(done.trial), report)

    def _run_optuna(self) -> None:
        try:
            import optuna
        except ImportError:
            raise UserError("--optuna needs optuna (pip install 'llm-trainer[train]')") from None
        from optuna.distributions import (
            BaseDistribution,
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )
        from optuna.trial import TrialState

        cfg = self.config
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        distributions: dict[str, BaseDistribution] = {}
        for p in cfg.parameters:
            d = p.dimension
            if isinstance(d, Choice):
                distributions[p.field] = CategoricalDistribution(d.values)
            elif isinstance(d, IntRange):
                distributions[p.field] = IntDistribution(d.low, d.high)
            else:
                distributions[p.field] = FloatDistribution(d.low, d.high, log=d.log)
        storage = f"sqlite:///{self.index.path.parent.resolve() / 'optuna.sqlite'}"
        study = optuna.create_study(
            storage=storage,
            study_name=self.id,
            direction=cfg.resolved_direction,
            sampler=optuna.samplers.TPESampler(seed=cfg.seed),
            load_if_exists=True,
        )
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(stale.number, state=TrialState.FAIL)  # its session was killed
        complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        wanted = max(0, (cfg.trials or 0) - complete)
        if complete:
            self.log(f"resuming: {complete} of {cfg.trials} Optuna trials complete ({storage})")
        asked: dict[int, Any] = {}

        def points() -> Iterator[tuple[int, Mapping[str, Any]]]:
            for _ in range(wanted):
                trial = study.ask(distributions)
                asked[trial.number] = trial
                yield trial.number, dict(trial.params)

        def report(number: int, params: Mapping[str, Any], objective: float | None) -> None:
            if objective is None or not math.isfinite(objective):
                study.tell(asked.pop(number), state=TrialState.FAIL)
            else:
                study.tell(asked.pop(number), objective)

        if wanted:
            self._run_pool(points(), report)
