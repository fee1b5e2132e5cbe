"""The processes of one run under a multi-process launcher (``torchrun``, ``accelerate launch``).

A launcher starts the same command N times and tells each process who it is through the
environment: ``WORLD_SIZE`` (N), ``RANK`` (0 to N-1) and ``LOCAL_RANK`` (its index on its
machine). :func:`launched` reads them (importing nothing); :meth:`Processes.start` joins the
process group through accelerate's ``PartialState`` (gloo on CPU, NCCL on GPUs; TRL's trainers
then reuse that group for data-parallel training).

One of the processes, rank 0, is the *main* one: in a run of llm-trainer it alone writes the
run directory, the runs index, the trajectory store and the knowledge graph, and evaluates.
:meth:`Processes.on_main` runs work on the main process only and gives every process its result
(or its error); :meth:`Processes.broadcast` shares a value the main process has.

>>> launched({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
Processes(rank=1, world_size=2, local_rank=1)
>>> launched({}).is_main, launched({}).multi
(True, False)
"""

from __future__ import annotations

import atexit
import datetime as dt
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from llm_trainer.core.errors import ConfigError, UserError

T = TypeVar("T")

#: How long a process waits for the others in one collective (the main process evaluates and
#: collects data while the others wait: a held-out evaluation of a large model takes minutes).
TIMEOUT = dt.timedelta(hours=1)


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name, "")
    if not value.strip():
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"${name}={value!r} is not an integer (set by the launcher)") from None


@dataclass(frozen=True, slots=True)
class Processes:
    """This process's place among the processes of one run (one process: the defaults).

    Attributes:
        rank: Its index, 0 to ``world_size - 1`` (0: the main process).
        world_size: How many processes run.
        local_rank: Its index on its machine (its GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this is the main process (rank 0), which writes the run's files."""
        return self.rank == 0

    @property
    def multi(self) -> bool:
        """Whether there are several processes."""
        return self.world_size > 1

    def start(self, device: str) -> Processes:
        """Join the process group (once per process; no-op for one process): accelerate's
        ``PartialState`` with ``device`` (``cpu``: gloo; ``cuda``: NCCL, one GPU per local
        rank). Returns the processes as the group numbers them.

        Raises:
            RuntimeError: when the group disagrees with the environment.
        """
        if not self.multi:
            return self
        import torch.distributed as dist

        if not dist.is_initialized():
            from accelerate import PartialState  # type: ignore[import-untyped]

            # transformers' TrainingArguments rebuilds the state later and keeps this group
            PartialState(cpu=device == "cpu", timeout=TIMEOUT)
            atexit.register(_leave)
        joined = Processes(dist.get_rank(), dist.get_world_size(), self.local_rank)
        if (joined.rank, joined.world_size) != (self.rank, self.world_size):
            raise RuntimeError(
                f"the process group numbers this process {joined.rank} of {joined.world_size}, "
                f"the launcher's environment {self.rank} of {self.world_size}"
            )
        return joined

    def broadcast(self, value: T) -> T:
        """The main process's ``value`` in every process (pickled; the others' ``value`` is
        ignored). Every process must call it, in the same order as every other collective."""
        if not self.multi:
            return value
        import torch.distributed as dist

        box: list[Any] = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        shared: T = box[0]
        return shared

    def on_main(self, work: Callable[[], T]) -> T:
        """``work()`` run by the main process only; its result is returned in every process,
        and its error raised in every process (a :class:`~llm_trainer.core.errors.UserError`
        as itself, another as a ``RuntimeError`` naming it). Every process must call it at the
        same point; ``work`` itself must not wait for the other processes."""
        if not self.multi:
            return work()
        if self.is_main:
            try:
                value = work()
            except Exception as exc:
                self.broadcast(_Failure.of(exc))
                raise
            return self.broadcast(value)
        shared: object = self.broadcast(None)
        if isinstance(shared, _Failure):
            raise shared.error
        return cast(T, shared)


@dataclass(frozen=True, slots=True)
class _Failure:
    """The main process's error, as the other processes raise it."""

    error: Exception

    @classmethod
    def of(cls, exc: Exception) -> _Failure:
        if isinstance(exc, UserError):
            try:
                copy = pickle.loads(pickle.dumps(exc))
            except Exception:  # an error whose arguments do not rebuild it
                copy = UserError(str(exc))
            return cls(copy)
        return cls(RuntimeError(f"the main process failed: {type(exc).__name__}: {exc}"))


def launched(environ: Mapping[str, str] | None = None) -> Processes:
    """This process's place as the launcher's environment variables give it (``WORLD_SIZE``,
    ``RANK``, ``LOCAL_RANK``; absent: one process). Nothing is imported or joined."""
    env = os.environ if environ is None else environ
    world_size = _int(env, "WORLD_SIZE", 1)
    rank = _int(env, "RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(
            f"$RANK={rank} and $WORLD_SIZE={world_size} (set by the launcher) are inconsistent"
        )
    return Processes(rank, world_size, _int(env, "LOCAL_RANK", rank))


def _leave() -> None:
    """Leave the process group at exit (NCCL warns about a group never destroyed)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
