"""Executors: ``fn(item)`` for every item of a list, in this process, in local processes or on
a Ray cluster, with the same results.

An :class:`Executor` splits the items into chunks of consecutive indices, runs each chunk as one
unit of work (a pool task or a Ray task) and hands back ``(index, result)`` pairs: every index
exactly once, whichever worker ran it and however often (a chunk re-run after its worker was
killed returns its results once, from the attempt that finished). ``fn`` must be a picklable
module-level function (or a :func:`functools.partial` of one) whose result depends only on its
item: the items carry their own seeds, so the results do not depend on the executor, the number
of workers or the order in which chunks finish.

* :class:`LocalExecutor`: this process (``workers=1``) or a pool of ``spawn`` processes kept
  until :meth:`Executor.close` (so per-process caches, a loaded model, survive between calls).
  A worker that dies is an error (:class:`~llm_trainer.core.errors.RolloutError`).
* :class:`~llm_trainer.distributed.ray_backend.RayExecutor`: Ray tasks, retried when their
  worker dies (the ``ray`` extra).

>>> from functools import partial
>>> with LocalExecutor(1) as executor:
...     executor.map(partial(pow, 2), [0, 1, 2, 10])
[1, 2, 4, 1024]
>>> chunked(list("abcde"), 2)
[[(0, 'a'), (1, 'b'), (2, 'c')], [(3, 'd'), (4, 'e')]]
"""

from __future__ import annotations

import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Literal, TypeVar

from llm_trainer.core.errors import ConfigError, RolloutError

if TYPE_CHECKING:
    from llm_trainer.distributed.config import RayConfig

T = TypeVar("T")
R = TypeVar("R")

#: Chunks per worker: enough to balance uneven items, few enough that per-task overhead (a Ray
#: task costs about a millisecond) stays small against cheap items (an oracle episode).
CHUNKS_PER_WORKER = 4


def chunked(items: Sequence[T], chunks: int) -> list[list[tuple[int, T]]]:
    """``items`` with their indices, cut into at most ``chunks`` runs of consecutive indices
    (sizes differ by at most one)."""
    n = len(items)
    chunks = max(1, min(chunks, n))
    size, extra = divmod(n, chunks)
    out, start = [], 0
    for c in range(chunks if n else 0):
        end = start + size + (c < extra)
        out.append([(i, items[i]) for i in range(start, end)])
        start = end
    return out


def run_chunk(fn: Callable[[T], R], chunk: Sequence[tuple[int, T]]) -> list[tuple[int, R]]:
    """One unit of work (runs in a worker): ``fn`` on each item of the chunk, keyed by index."""
    return [(index, fn(item)) for index, item in chunk]


class Executor(ABC):
    """Runs ``fn`` on every item of a list somewhere; see the module docstring.

    Use it as a context manager (or call :meth:`close`): it owns its worker processes (or its
    connection to a Ray cluster).
    """

    @property
    @abstractmethod
    def workers(self) -> int:
        """Units of work that run at the same time."""

    @abstractmethod
    def imap_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        """``(index, fn(items[index]))`` for every index exactly once, as chunks finish.

        Closing the iterator early (or an exception) cancels the work not finished yet.

        Raises:
            RolloutError: when a worker died (and, on Ray, its retries were spent).
        """

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        on_done: Callable[[int], None] | None = None,
    ) -> list[R]:
        """``[fn(item) for item in items]``, in order; ``on_done(n)`` as results arrive."""
        results: dict[int, R] = {}
        for index, result in self.imap_unordered(fn, items):
            if index in results or not 0 <= index < len(items):
                raise RolloutError(f"executor returned item {index} twice or out of range")
            results[index] = result
            if on_done is not None:
                on_done(1)
        if len(results) != len(items):
            missing = sorted(set(range(len(items))) - set(results))
            raise RolloutError(f"executor lost items {missing[:10]} of {len(items)}")
        return [results[i] for i in range(len(items))]

    def describe(self) -> str:
        """Where the work runs (for logs and provenance)."""
        return f"{type(self).__name__}({self.workers} workers)"

    def close(self) -> None:  # noqa: B027 - an optional hook: in-process executors own nothing
        """Release the workers (idempotent)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """This process (``workers=1``) or ``workers`` local processes (``spawn`` by default)."""

    def __init__(
        self, workers: int = 1, start_method: Literal["fork", "forkserver", "spawn"] = "spawn"
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, got {workers!r}")
        self._workers = workers
        self.start_method = start_method
        self._pool: ProcessPoolExecutor | None = None

    @property
    def workers(self) -> int:
        return self._workers

    def describe(self) -> str:
        if self._workers == 1:
            return "this process"
        return f"{self._workers} local {self.start_method} processes"

    def imap_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        if self._workers == 1 or len(items) <= 1:
            for index, item in enumerate(items):
                yield index, fn(item)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context(self.start_method),
            )
        futures: list[Future[list[tuple[int, R]]]] = [
            self._pool.submit(run_chunk, fn, chunk)
            for chunk in chunked(items, self._workers * CHUNKS_PER_WORKER)
        ]
        try:
            for future in as_completed(futures):
                yield from future.result()
        except BrokenProcessPool as exc:
            self.close()
            raise RolloutError(f"a local worker process died ({exc})") from exc
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def make_executor(workers: int = 1, ray: RayConfig | str | None = None) -> Executor:
    """A :class:`~llm_trainer.distributed.ray_backend.RayExecutor` when ``ray`` names a cluster
    (a :class:`RayConfig` with an address, or the address itself), else a
    :class:`LocalExecutor` of ``workers`` processes."""
    address = ray if isinstance(ray, str) or ray is None else ray.address
    if address is None:
        return LocalExecutor(workers)
    from llm_trainer.distributed.ray_backend import RayExecutor

    return RayExecutor(address)
