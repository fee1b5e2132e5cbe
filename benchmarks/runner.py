"""Run an agent on a suite: parallel, resumable, deterministic.

``run_bench(BenchConfig(suite="tooluse-v0", agent="oracle"))`` plays every episode of the suite
(:meth:`SuiteSpec.episode_keys`) and writes one result file (:mod:`.results`).

* **Parallel**: a pool of ``workers`` processes (``forkserver`` by default: safe with threads,
  and cheaper than ``spawn``), each building one env and one policy per env id and reusing them
  (difficulty is a reset option). ``workers=1`` plays in this process. With ``ray_address``
  the episodes are Ray tasks on that cluster instead (:mod:`llm_trainer.distributed`; a task
  whose worker dies is re-run, its episodes recorded once), with the same records.
* **Deterministic**: every episode resets its env and its policy with the episode's env seed
  (a later trial of a task, in a suite with ``trials``: the policy with a seed of its own,
  :func:`~llm_trainer.benchmarks.suites.episode_policy_seed`), so its record does not depend
  on which worker played it or what that worker played before (for policies whose episodes
  depend only on ``reset(seed=...)``, as the protocol asks).
  Records are stored in canonical order, so the result file is the same for any number of
  workers, except wall times and provenance.
* **Resumable**: each finished episode is appended to ``<out>.partial.jsonl`` as one line (one
  ``os.write`` on an ``O_APPEND`` descriptor, fsync'ed at least every second and at the end).
  A restart with the same configuration skips the episodes recorded there; a torn last line (a
  kill mid-write) is dropped and replayed. The result file is written atomically at the end,
  then the partial file is removed. A finished result with the same configuration (suite,
  agent spec and the content of the agent's files, :func:`agent_fingerprint`) is reused as
  is; one of the same spec whose files changed (a model retrained in place) is played again
  and replaced; ``fresh=True`` starts over. An exclusive lock on the partial file keeps two
  runs from writing one result at the same time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import importlib.util
import json
import multiprocessing
import os
import pickle
import queue
import re
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from llm_trainer.agents.factory import make_agent, resolve_agent_spec
from llm_trainer.agents.policy import Policy
from llm_trainer.algorithms.rollout import EpisodeTask, play_episodes
from llm_trainer.analysis.failure_modes import classify
from llm_trainer.benchmarks.results import (
    SCHEMA_VERSION,
    BenchResult,
    EpisodeRecord,
    check_complete,
    collect_provenance,
    config_hash,
    load_result,
    summarize,
    write_json_atomic,
)
from llm_trainer.benchmarks.suites import (
    EpisodeKey,
    SuiteSpec,
    episode_env_seed,
    episode_policy_seed,
    suite_spec,
)
from llm_trainer.core.digest import file_digest, tree_digest
from llm_trainer.core.errors import ConfigError, RolloutError
from llm_trainer.core.records import FrozenDict
from llm_trainer.envs.registration import make

if TYPE_CHECKING:
    from llm_trainer.core.knowledge.recording import EpisodeRecorder

StartMethod = Literal["fork", "forkserver", "spawn"]
_START_METHODS: tuple[StartMethod, ...] = ("fork", "forkserver", "spawn")
DEFAULT_RESULTS_DIR = Path("results")
#: At most this long between two fsyncs of the partial file.
FSYNC_INTERVAL_S = 1.0


def default_workers() -> int:
    """``min(2, cpu count)``."""
    return max(1, min(2, os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """One ``llm-trainer bench`` run."""

    suite: str
    """Suite id from ``registry.yaml`` (``tooluse-v0``)."""
    agent: str
    """Agent spec (``oracle``, ``random``, ``python:module:factory``, ``sb3:PATH.zip``...)."""
    name: str | None = None
    """Display name on the leaderboard; defaults to the spec (paths shortened to file names)."""
    out: Path | None = None
    """Result file; defaults to ``results/<suite>/<name>.json``."""
    workers: int = field(default_factory=default_workers)
    """Worker processes; 1 plays in this process."""
    start_method: StartMethod = "forkserver"
    """How worker processes start (``fork``, ``forkserver`` or ``spawn``)."""
    fresh: bool = False
    """Discard a finished or partial result of this file and start over."""
    progress: bool | None = None
    """Show a progress bar on stderr (``None``: when stderr is a terminal)."""
    agent_seed: int = 0
    """Seed passed to the agent's constructor (episodes re-seed it with their env seed)."""
    knowledge_path: Path | None = None
    """A knowledge graph file: every episode played records the agent, the problem and the
    attempt (solved, or how it failed) there, from the worker that played it (see
    :mod:`llm_trainer.core.knowledge.recording`). ``None``: nothing is recorded. A reused
    finished result records nothing (play it again with ``fresh``)."""
    ray_address: str | None = None
    """Play the episodes as Ray tasks on this cluster instead of ``workers`` local processes:
    ``local`` (started here), ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` (the ``ray``
    extra; see :mod:`llm_trainer.distributed`). The records are the same."""

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be a positive integer, got {self.workers!r}")
        if self.start_method not in _START_METHODS:
            raise ConfigError(
                f"start_method must be one of {list(_START_METHODS)}, got {self.start_method!r}"
            )
        if self.name is not None and not self.name.strip():
            raise ConfigError("name must not be empty")
        if self.ray_address is not None:
            from llm_trainer.distributed.ray_backend import check_ray_installed

            if not self.ray_address.strip():
                raise ConfigError("ray_address must not be empty (local, auto or HOST:PORT)")
            check_ray_installed()
        resolve_agent_spec(self.agent)  # an unknown spec fails here, before any work

    @property
    def agent_name(self) -> str:
        return self.name or default_agent_name(self.agent)

    def out_path(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        return DEFAULT_RESULTS_DIR / self.suite / f"{slug(self.agent_name)}.json"


def default_agent_name(spec: str) -> str:
    """The spec, with a path argument shortened to its file name (``sb3:ppo.zip``)."""
    prefix, sep, argument = spec.partition(":")
    if sep and prefix in ("sb3", "transformers", "vllm") and argument:
        return f"{prefix}:{Path(argument).name}"
    if not sep and Path(spec).is_dir():
        return Path(spec).name
    return spec


def slug(name: str) -> str:
    """A file-name-safe version of ``name``.

    >>> slug("sb3:ppo multitool.zip")
    'sb3-ppo-multitool.zip'
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "agent"


def agent_fingerprint(spec: str) -> str | None:
    """SHA-256 prefix of what the agent of ``spec`` is made of, so that a retrained or edited
    agent under the same spec is a new configuration (its stored result is replayed, not
    reused):

    * ``sb3:PATH.zip``: the model file (its encoding file is written by the same training);
    * ``transformers:DIR``, ``vllm:DIR`` and a saved agent directory: the whole directory tree
      (see :func:`tree_digest`): weights, configs, tokenizer, the agent's memory; for a peft
      adapter, its base model directory too;
    * ``python:module:factory``: the module's own source file (found without importing it;
      what it imports is not hashed).
    * ``mcts:[OPTIONS:]BASE``: its base agent's fingerprint (a scripted proposer: ``None``);
      the search options are part of the spec itself.

    ``None`` where nothing local defines the agent: ``oracle`` and ``random`` (the package
    version, in every result's provenance, does), a model id that is no local directory, and
    ``openai:URL#model``: a served model cannot be hashed from here, so a stored result of it
    is reused as long as the spec is the same; pass ``--fresh`` after the served model changed.
    """
    from llm_trainer.agents.factory import SAVED_AGENT_BUILDER

    builder, argument = resolve_agent_spec(spec)
    prefix = spec.partition(":")[0]
    path = Path(argument)
    if builder is SAVED_AGENT_BUILDER or prefix in ("transformers", "vllm"):
        return tree_digest(path) if path.is_dir() else None
    if prefix == "sb3":
        return file_digest(path) if path.is_file() else None
    if prefix == "python":
        source = _module_source(argument.rpartition(":")[0])
        return file_digest(source) if source is not None else None
    if prefix == "mcts":
        from llm_trainer.algorithms.search.agent import parse_agent_spec

        base = parse_agent_spec(argument).base
        return agent_fingerprint(base) if ":" in base or Path(base).is_dir() else None
    return None


def _module_source(module: str) -> Path | None:
    """The source file of ``module`` (its parent packages are imported, the module is not);
    ``None`` when it cannot be found (building the agent then reports why)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and Path(origin).is_file() else None


# -- playing episodes --------------------------------------------------------------------------


class EpisodePlayer:
    """Plays episodes of one agent spec; keeps one env and one policy per env id."""

    def __init__(
        self, agent_spec: str, agent_seed: int = 0, knowledge: EpisodeRecorder | None = None
    ) -> None:
        self.agent_spec = agent_spec
        self.agent_seed = agent_seed
        self.knowledge = knowledge
        self._cache: dict[str, tuple[gym.Env[Any, Any], Policy]] = {}

    def _env_and_policy(self, env_id: str) -> tuple[gym.Env[Any, Any], Policy]:
        if env_id not in self._cache:
            env = make(env_id)
            self._cache[env_id] = (env, make_agent(self.agent_spec, env, seed=self.agent_seed))
        return self._cache[env_id]

    def play(self, key: EpisodeKey) -> EpisodeRecord:
        """Play one episode through the episode engine; a policy or env that fails is recorded
        as a failed episode (a :class:`~llm_trainer.core.errors.UserError` stops the run)."""
        env, policy = self._env_and_policy(key.env_id)
        env_seed = episode_env_seed(key)
        # the trials of a task: the same env seed, a policy seed of their own
        task = EpisodeTask(env_seed, {"difficulty": key.difficulty}, episode_policy_seed(key))
        [episode] = play_episodes([env], policy, [task])
        t = episode.trajectory
        usage = episode.usage
        if self.knowledge is not None:  # the attempt is this episode key (trials share a task)
            attempt = "/".join(map(str, dataclasses.astuple(key)))
            self.knowledge.record(t, episode.seconds, attempt=attempt)
        return EpisodeRecord(
            env_id=key.env_id,
            difficulty=key.difficulty,
            seed=key.seed,
            index=key.index,
            env_seed=env_seed,
            metrics=FrozenDict(t.metrics),
            reward=round(t.total_reward, 10),  # sums of -0.1 penalties, without float noise
            turns=len(t.steps),
            action_chars=sum(len(s.action) for s in t.steps),
            observation_chars=len(t.prompt) + sum(len(s.observation) for s in t.steps),
            prompt_tokens=usage.prompt_tokens if usage is not None else None,
            completion_tokens=usage.completion_tokens if usage is not None else None,
            seconds=episode.seconds,
            error=t.error,
            trial=key.trial,
            failure_mode=None if t.success else classify(t),
        )

    def close(self) -> None:
        """Close the envs and release the models the agents loaded (a later run of the same
        spec, e.g. after retraining the model in place, loads it afresh)."""
        for env, _ in self._cache.values():
            env.close()
        self._cache.clear()
        llm_agent = sys.modules.get("llm_trainer.agents.llm_agent")
        if llm_agent is not None:
            llm_agent.close_shared_backends()


#: How often the parent checks that its workers are alive while it waits for results.
_POLL_S = 0.5


def _worker_main(
    agent_spec: str,
    agent_seed: int,
    tasks: Queue[EpisodeKey | None],
    results: Queue[Any],
    knowledge: EpisodeRecorder | None = None,
) -> None:
    """A worker process: play the episodes of ``tasks`` until ``None``, report each one."""
    # Ctrl-C reaches the whole process group: the parent handles it (keeps the partial file,
    # stops the workers); workers ignore it instead of printing a traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    player = EpisodePlayer(agent_spec, agent_seed, knowledge)
    try:
        while (key := tasks.get()) is not None:
            try:
                results.put(("record", player.play(key).to_json()))
            except Exception as exc:  # a setup failure (e.g. the agent cannot be built)
                results.put(("error", _picklable(exc)))
                return
    finally:
        player.close()


def _picklable(exc: Exception) -> Exception:
    try:
        pickle.dumps(exc)
    except Exception:
        return RolloutError(f"{type(exc).__name__}: {exc}")
    return exc


def _play_all(
    config: BenchConfig, keys: list[EpisodeKey], knowledge: EpisodeRecorder | None = None
) -> Iterator[EpisodeRecord]:
    """Yield a record for every key, as episodes finish (in any order).

    Workers are plain processes fed from a queue (not ``multiprocessing.Pool``, which waits
    forever when a worker dies): a worker that dies makes this raise, naming its exit code.

    Raises:
        RolloutError: when a worker process dies (on Ray: when its retries are spent).
    """
    if config.ray_address is not None and keys:
        yield from _play_on_ray(config, keys, knowledge)
        return
    if config.workers == 1 or len(keys) <= 1:
        player = EpisodePlayer(config.agent, config.agent_seed, knowledge)
        try:
            for key in keys:
                yield player.play(key)
        finally:
            player.close()
        return
    context = multiprocessing.get_context(config.start_method)
    if config.start_method == "forkserver":
        context.set_forkserver_preload(["llm_trainer", "llm_trainer.benchmarks.runner"])
    tasks: Queue[EpisodeKey | None] = context.Queue()
    results: Queue[Any] = context.Queue()
    n_workers = min(config.workers, len(keys))
    for key in keys:
        tasks.put(key)
    for _ in range(n_workers):
        tasks.put(None)
    workers = [
        context.Process(  # type: ignore[attr-defined]
            target=_worker_main,
            args=(config.agent, config.agent_seed, tasks, results, knowledge),
            name=f"llm-trainer-bench-{i}",
            daemon=True,
        )
        for i in range(n_workers)
    ]
    for worker in workers:
        worker.start()
    remaining = len(keys)
    try:
        while remaining:
            try:
                kind, payload = results.get(timeout=_POLL_S)
            except queue.Empty:
                _check_workers(workers)
                continue
            if kind == "error":
                raise payload
            remaining -= 1
            yield EpisodeRecord.from_json(payload)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join()
        for q in (tasks, results):
            q.close()
            q.cancel_join_thread()


#: A Ray worker process's player: one run's at a time (a new run closes the last one's, so a
#: model retrained in place is loaded afresh, as by a new local worker).
_RAY_PLAYERS: dict[str, EpisodePlayer] = {}


def _play_in_ray_worker(
    run: str,
    agent_spec: str,
    agent_seed: int,
    knowledge: EpisodeRecorder | None,
    key: EpisodeKey,
) -> dict[str, Any]:
    player = _RAY_PLAYERS.get(run)
    if player is None:
        while _RAY_PLAYERS:
            _RAY_PLAYERS.popitem()[1].close()
        player = _RAY_PLAYERS[run] = EpisodePlayer(agent_spec, agent_seed, knowledge)
    return player.play(key).to_json()


def _play_on_ray(
    config: BenchConfig, keys: list[EpisodeKey], knowledge: EpisodeRecorder | None
) -> Iterator[EpisodeRecord]:
    """The episodes of ``keys`` as Ray tasks (chunks of episodes, re-run when their worker
    dies: each record comes once, from the attempt that finished)."""
    from llm_trainer.distributed.ray_backend import RayExecutor

    assert config.ray_address is not None
    run = uuid.uuid4().hex
    play = functools.partial(_play_in_ray_worker, run, config.agent, config.agent_seed, knowledge)
    with RayExecutor(config.ray_address) as executor:
        for _, record in executor.imap_unordered(play, keys):
            yield EpisodeRecord.from_json(record)


def _check_workers(workers: list[Any]) -> None:
    dead = [w for w in workers if w.exitcode not in (None, 0)]
    if dead or all(w.exitcode is not None for w in workers):
        code = dead[0].exitcode if dead else 0
        raise RolloutError(
            f"a benchmark worker process died (exit code {code}) before finishing its episodes. "
            "If you call run_bench() from a script, guard the script with "
            '`if __name__ == "__main__":` (worker processes import it), or pass workers=1'
        )


# -- the partial file --------------------------------------------------------------------------


class PartialFile:
    """``<out>.partial.jsonl``: a header line, then one finished episode per line.

    :meth:`lock` opens it and takes an exclusive ``flock`` (released when the process ends,
    however it ends), so two runs never write the same file.
    """

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self._fd: int | None = None
        self._last_sync = 0.0

    def lock(self) -> None:
        """Open (creating) and lock the file.

        Raises:
            ConfigError: when another process holds the lock (a run of the same result file).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"{self.path}: another llm-trainer bench is writing this result now; wait for "
                "it to finish (or stop it), or choose another --out"
            ) from None
        self._fd = fd

    def read(self, suite: SuiteSpec) -> dict[EpisodeKey, EpisodeRecord]:
        """The episodes recorded so far (a torn or duplicate line is dropped, and the file is
        cut after its last complete line); writes the header to a new file. Needs the lock.

        Raises:
            ConfigError: when the file belongs to another configuration.
        """
        assert self._fd is not None, "lock() first"
        data = self.path.read_bytes()
        valid: set[EpisodeKey] = set(suite.episode_keys())
        records: dict[EpisodeKey, EpisodeRecord] = {}
        good_end = 0
        for number, line in enumerate(data.splitlines(keepends=True)):
            if not line.endswith(b"\n"):
                break  # torn by a kill mid-write
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                break
            if number == 0:
                if item != self.header:
                    raise ConfigError(
                        f"{self.path}: an interrupted run of another configuration (suite, "
                        "agent or schema differ); pass --fresh to discard it, or choose "
                        "another --out"
                    )
            else:
                record = EpisodeRecord.from_json(item, f"{self.path}: line {number + 1}")
                if record.key in valid and record.key not in records:
                    records[record.key] = record
            good_end += len(line)
        if good_end < len(data):
            os.ftruncate(self._fd, good_end)
        if good_end == 0:
            self._write_line(self.header)
            os.fsync(self._fd)
        return records

    def append(self, record: EpisodeRecord) -> None:
        self._write_line(record.to_json())
        now = time.monotonic()
        if now - self._last_sync >= FSYNC_INTERVAL_S:
            assert self._fd is not None
            os.fsync(self._fd)
            self._last_sync = now

    def _write_line(self, item: dict[str, Any]) -> None:
        assert self._fd is not None, "lock() first"
        line = (json.dumps(item, ensure_ascii=False, allow_nan=False) + "\n").encode()
        written = os.write(self._fd, line)  # one write: whole line or (on a crash) a torn tail
        if written != len(line):
            raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes)")

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        """Sync and unlock (the file stays, for a later resume)."""
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """Delete the file (under the lock when this process holds it), then unlock."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial.jsonl")


# -- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenchRun:
    """What :func:`run_bench` did."""

    result: BenchResult
    path: Path
    episodes_played: int
    """Episodes played by this call (0 when a finished result was reused)."""
    episodes_resumed: int
    """Episodes taken from an interrupted run's partial file."""
    reused: bool
    """A finished result of the same configuration existed and was returned as is."""
    wall_seconds: float
    agent_changed: bool = False
    """A finished result of this spec and suite existed, made by other files of the agent (a
    retrained model: another :func:`agent_fingerprint`); the suite was played again and the
    result replaced."""


def run_bench(config: BenchConfig, suite: SuiteSpec | None = None) -> BenchRun:
    """Run (or resume, or reuse) ``config``; see the module docstring.

    Args:
        config: The run.
        suite: The suite to play; by default ``suite_spec(config.suite)`` from registry.yaml
            (tests pass suites of their own).

    Raises:
        ConfigError: for a bad configuration, or an existing result or partial file of
            another configuration (without ``fresh``).
        KeyboardInterrupt: when interrupted; the partial file keeps every finished episode.
    """
    start = time.perf_counter()
    suite = suite or suite_spec(config.suite)
    out = config.out_path()
    fingerprint = agent_fingerprint(config.agent)
    chash = config_hash(suite, config.agent, fingerprint)
    partial = PartialFile(
        partial_path(out),
        {"schema_version": SCHEMA_VERSION, "config_hash": chash, "suite_hash": suite.hash},
    )
    if config.fresh:
        partial.lock()
        partial.remove()
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
    agent_changed = False
    if out.exists():
        existing = load_result(out)
        # Same spec and suite, other agent files (a model retrained in place): that result is
        # stale, play the suite again (it is replaced when the new one is complete).
        agent_changed = existing.config_hash != chash and existing.config_hash == config_hash(
            suite, config.agent, existing.agent_fingerprint
        )
        if existing.config_hash != chash and not agent_changed:
            raise ConfigError(
                f"{out} holds a result of another configuration (suite, agent or schema "
                "differ); pass --fresh to overwrite it, or choose another --out"
            )
        if not agent_changed:
            if partial.path.exists():  # left by a kill between writing the result and cleanup
                with contextlib.suppress(ConfigError):
                    partial.lock()
                    partial.remove()
            return BenchRun(existing, out, 0, 0, True, time.perf_counter() - start)

    knowledge = _episode_recorder(config, suite, chash, fingerprint)
    partial.lock()
    try:
        done = partial.read(suite)
    except BaseException:
        partial.close()
        raise
    resumed = len(done)
    keys = [k for k in suite.episode_keys() if k not in done]
    started_at = _now()
    show = sys.stderr.isatty() if config.progress is None else config.progress
    try:
        with _progress_bar(show) as bar:
            task = bar.add_task(
                f"{suite.id} {config.agent_name}", total=len(done) + len(keys), completed=len(done)
            )
            for record in _play_all(config, keys, knowledge):
                partial.append(record)
                done[record.key] = record
                bar.advance(task)
        partial.sync()
        records = tuple(done[k] for k in suite.episode_keys())
        check_complete(suite, records, str(partial.path))
        result = BenchResult(
            agent=config.agent_name,
            agent_spec=config.agent,
            suite=suite,
            config_hash=chash,
            episodes=records,
            provenance=collect_provenance(
                suite,
                started_at=started_at,
                finished_at=_now(),
                workers=config.workers,
                start_method=config.start_method,
                **({"ray_address": config.ray_address} if config.ray_address else {}),
                episodes_played=len(keys),
                episodes_resumed=resumed,
                wall_seconds=round(time.perf_counter() - start, 3),
            ),
            agent_fingerprint=fingerprint,
            summary=summarize(suite, records),
        )
        write_json_atomic(out, result.to_json())
        partial.remove()
    finally:
        partial.close()
    return BenchRun(
        result, out, len(keys), resumed, False, time.perf_counter() - start, agent_changed
    )


def _episode_recorder(
    config: BenchConfig, suite: SuiteSpec, chash: str, fingerprint: str | None
) -> EpisodeRecorder | None:
    """With ``config.knowledge_path``: the agent (and the model it runs) recorded in the graph,
    and a recorder of this run's episodes (keyed by suite and configuration hash)."""
    if config.knowledge_path is None:
        return None
    from llm_trainer.agents.factory import SAVED_AGENT_BUILDER
    from llm_trainer.core.knowledge import KnowledgeGraph
    from llm_trainer.core.knowledge.recording import EpisodeRecorder, add_agent

    builder, argument = resolve_agent_spec(config.agent)
    prefix = config.agent.partition(":")[0]
    model_dir = Path(argument)
    if builder is SAVED_AGENT_BUILDER:
        from llm_trainer.agents.llm_agent import saved_model_dir

        model_dir = saved_model_dir(argument) or Path(argument) / "model"
    local = (builder is SAVED_AGENT_BUILDER or prefix in ("transformers", "vllm")) and (
        model_dir.is_dir()
    )
    with KnowledgeGraph(config.knowledge_path) as graph, graph.batch() as batch:
        agent = add_agent(
            batch,
            config.agent,
            name=config.agent_name,
            fingerprint=fingerprint,
            model_dir=model_dir if local else None,
        )
    return EpisodeRecorder(config.knowledge_path, agent, f"{suite.id}@{chash}")


def _progress_bar(show: bool) -> Progress:
    """Episodes done, rate and time left, on stderr (stdout stays for the JSON summary)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("episodes"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
