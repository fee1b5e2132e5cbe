"""Ray (the ``ray`` extra): connect to a cluster, or start one in this process, and run an
:class:`~llm_trainer.distributed.executor.Executor`'s chunks as Ray tasks.

Guarantees (the tests check them on a real local cluster):

* **Same results as the local path**: a chunk is :func:`~llm_trainer.distributed.executor.run_chunk`
  wherever it runs, its items carry their own seeds, and results are keyed by item index.
* **Nothing lost or duplicated after a killed worker**: a task whose worker process dies (killed,
  out of memory, its node lost) is re-run by Ray up to ``max_retries`` times; a chunk's results
  are taken once, from the attempt that finished. An exception raised *by* ``fn`` is not
  retried by default (the same item would raise again): it is re-raised here as itself.

:meth:`RayExecutor.stream` runs one task per item, drawing the items only as room frees up and
reserving the CPUs and GPUs asked for (a sweep's trials: ``llm-trainer sweep --ray``).

``ray`` is imported only when an executor is made: ``import llm_trainer`` never imports it.
Every node of a cluster needs llm-trainer (and the agents' dependencies) installed, in the
same version as the driver.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from llm_trainer.core.errors import ConfigError, RolloutError
from llm_trainer.distributed.executor import CHUNKS_PER_WORKER, Executor, chunked, run_chunk

T = TypeVar("T")
R = TypeVar("R")

RAY_EXTRA_HINT = "Ray is an optional extra: pip install 'llm-trainer[ray]'"


def check_ray_installed(what: str = "--ray") -> None:
    """Raise a :class:`ConfigError` naming the extra when ``ray`` is not installed (without
    importing it)."""
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # a broken or half-removed installation
        found = False
    if not found:
        raise ConfigError(f"{what} needs Ray, which is not installed. {RAY_EXTRA_HINT}")


def import_ray() -> Any:
    """``import ray``, or a :class:`ConfigError` naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"Ray could not be imported ({exc}). {RAY_EXTRA_HINT}") from None
    return ray


def connect(address: str = "local", *, num_cpus: int | None = None) -> bool:
    """Connect this process to the Ray cluster at ``address`` (``local``: start one here,
    with ``num_cpus`` CPUs, default all); a process already connected keeps its connection.

    Returns:
        Whether this call connected (the caller then disconnects with ``ray.shutdown()``).

    Raises:
        ConfigError: when Ray is missing or no cluster answers at ``address``.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    try:
        if address == "local":
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise ConfigError(
            f"ray address {address!r}: no Ray cluster could be reached ({exc}). Start one with "
            "`ray start --head` (then use auto, or the HOST:PORT it prints), or use local to "
            "start one in this process"
        ) from None
    return True


class RayExecutor(Executor):
    """Runs chunks of work as Ray tasks on the cluster at ``address``.

    Args:
        address: ``local`` (a cluster started in this process, shut down by :meth:`close`),
            ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``.
        max_in_flight: Most tasks submitted at once (``None``: all; Ray runs as many as the
            cluster has CPUs for).
        max_retries: Re-runs of a task whose worker died.
        retry_exceptions: Also re-run a task whose function raised (``True``, or a list of
            exception types); off by default, since the same item raises again.
        num_cpus: CPUs a task reserves.
        local_cpus: CPUs of a ``local`` cluster (default: every core).
    """

    def __init__(
        self,
        address: str = "local",
        *,
        max_in_flight: int | None = None,
        max_retries: int = 3,
        retry_exceptions: bool | list[type[BaseException]] = False,
        num_cpus: float = 1.0,
        local_cpus: int | None = None,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.address = address
        self.max_in_flight = max_in_flight
        self.max_retries = max_retries
        self.num_cpus = num_cpus
        self._ray = import_ray()
        self._owner = connect(address, num_cpus=local_cpus)
        self._options: dict[str, Any] = {
            "num_cpus": num_cpus,
            "max_retries": max_retries,
            "retry_exceptions": retry_exceptions,
        }
        self._remote = self._ray.remote(run_chunk)
        self._task = self._remote.options(**self._options)

    @property
    def workers(self) -> int:
        cpus = float(self._ray.cluster_resources().get("CPU", 1.0))
        parallel = max(1, int(cpus // self.num_cpus)) if self.num_cpus > 0 else 1
        return min(parallel, self.max_in_flight) if self.max_in_flight else parallel

    def describe(self) -> str:
        return f"Ray cluster {self.address} ({self.workers} workers)"

    def imap_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        if not items:
            return
        chunks = chunked(items, self.workers * CHUNKS_PER_WORKER)
        yield from self._run(self._task, fn, iter(chunks), self.max_in_flight or len(chunks))

    def stream(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        in_flight: int,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        on_lost: Callable[[T, RolloutError], R] | None = None,
    ) -> Iterator[tuple[int, R]]:
        """``(index, fn(item))`` for each item, one Ray task per item, at most ``in_flight`` at
        once, as tasks finish (``index``: the item's position in ``items``).

        An item is drawn from ``items`` only when a task may start, after the results yielded so
        far were handed over: a caller can choose each item from the results before it (a
        sweep's Optuna trials, asked one after another). Tasks are retried when their worker
        dies, as for :meth:`imap_unordered`.

        Args:
            num_cpus: CPUs each task reserves (default: the executor's ``num_cpus``).
            num_gpus: GPUs each task reserves (default: none).
            on_lost: What a task whose worker died after its retries were spent gives instead
                (called with its item and the error); ``None``: raise the
                :class:`~llm_trainer.core.errors.RolloutError`.
        """
        if in_flight < 1:
            raise ConfigError(f"in_flight must be >= 1, got {in_flight}")
        options = dict(self._options)
        if num_cpus is not None:
            options["num_cpus"] = num_cpus
        if num_gpus is not None:
            options["num_gpus"] = num_gpus
        task = self._remote.options(**options)
        chunks = ([(index, item)] for index, item in enumerate(items))
        yield from self._run(task, fn, chunks, in_flight, on_lost)

    def _run(
        self,
        task: Any,
        fn: Callable[[T], R],
        chunks: Iterator[list[tuple[int, T]]],
        limit: int,
        on_lost: Callable[[T, RolloutError], R] | None = None,
    ) -> Iterator[tuple[int, R]]:
        """Submit ``chunks`` (drawn as room frees up, at most ``limit`` running) and yield
        their results as they finish."""
        ray = self._ray
        fn_ref = ray.put(fn)  # sent to the object store once, not with every task
        pending: dict[Any, list[tuple[int, T]]] = {}
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < limit:
                    chunk = next(chunks, None)
                    if chunk is None:
                        exhausted = True
                    else:
                        pending[task.remote(fn_ref, chunk)] = chunk
                if not pending:
                    return
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    chunk = pending.pop(ref)
                    try:
                        results = self._result(ref)
                    except RolloutError as exc:
                        if on_lost is None:
                            raise
                        results = [(index, on_lost(item, exc)) for index, item in chunk]
                    yield from results
        finally:
            for ref in pending:  # an error, Ctrl-C or an iterator closed early
                with contextlib.suppress(Exception):
                    ray.cancel(ref)

    def node_resources(self) -> list[dict[str, float]]:
        """The resources (``CPU``, ``GPU``...) of each live node of the cluster."""
        return [dict(node["Resources"]) for node in self._ray.nodes() if node.get("Alive")]

    def _result(self, ref: Any) -> list[tuple[int, Any]]:
        exceptions = self._ray.exceptions
        try:
            result: list[tuple[int, Any]] = self._ray.get(ref)
        except exceptions.RayTaskError as exc:  # fn raised: raise that exception itself
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from exc
            raise
        except exceptions.RayError as exc:  # the worker (or its node) died, retries spent
            raise RolloutError(
                f"a Ray task failed after {self.max_retries} retries ({type(exc).__name__}: {exc})"
            ) from exc
        return result

    def close(self) -> None:
        if self._owner:
            self._owner = False
            self._ray.shutdown()
