"""ResourceScheduler: CPU and GPU slots, handed to the stages that need them.

A machine's CPUs and GPUs are slots; a stage (a sweep's trial, a cycle's training or
evaluation step) asks for :class:`Slots` and gets an :class:`Allocation`: *which* CPU cores
and GPUs are its own until it gives them back. A worker process applies its allocation
(:meth:`Allocation.apply`) before it imports torch: it runs pinned to its cores, with as many
BLAS/OpenMP threads as it has cores, and sees only its GPUs (``CUDA_VISIBLE_DEVICES``). So two
trials on a 2-core machine each get one core instead of fighting over both.

Requests are served first come, first served (a small request never overtakes a big one that
waits, so the big one is not starved). Asking for more than the machine has is an error at
once, not a wait forever.

>>> scheduler = ResourceScheduler(cpus=2, gpus=0, stages={"trial": Slots(cpus=1)})
>>> first = scheduler.try_acquire("trial"); second = scheduler.try_acquire("trial")
>>> first.cpus != second.cpus, scheduler.try_acquire("trial")
(True, None)
>>> scheduler.release(first); scheduler.try_acquire(Slots(cpus=1)) == first
True
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated

from llm_trainer.core.config import NON_NEGATIVE, Range, check_ranges
from llm_trainer.core.errors import ConfigError

#: The thread-count variables of the BLAS / OpenMP libraries torch and numpy use.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True, slots=True)
class Slots:
    """What a stage needs."""

    cpus: Annotated[int, Range(ge=1)] = 1
    """CPU cores."""
    gpus: Annotated[int, NON_NEGATIVE] = 0
    """GPUs."""

    def __post_init__(self) -> None:
        check_ranges(self, "slots")


@dataclass(frozen=True, slots=True)
class Allocation:
    """The cores and GPUs a stage holds."""

    cpus: tuple[int, ...]
    """CPU core ids (as ``os.sched_getaffinity`` numbers them)."""
    gpus: tuple[int, ...] = ()
    """GPU indices (as ``CUDA_VISIBLE_DEVICES`` numbers them)."""

    def environment(self) -> dict[str, str]:
        """The variables a worker process of this allocation runs with.

        >>> Allocation((2, 3), (1,)).environment()["CUDA_VISIBLE_DEVICES"]
        '1'
        """
        env = dict.fromkeys(THREAD_VARIABLES, str(len(self.cpus)))
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpus))
        return env

    def apply(self) -> None:
        """Confine this process to the allocation: its environment (call before torch is
        imported: torch reads it once) and, where the OS supports it, its CPU affinity."""
        os.environ.update(self.environment())
        if hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):  # a core taken away since: run unpinned
                os.sched_setaffinity(0, self.cpus)


def available_cpus() -> tuple[int, ...]:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def available_gpus() -> tuple[int, ...]:
    """The GPUs of this machine, without importing torch: ``CUDA_VISIBLE_DEVICES`` when it is
    set, else the GPUs ``nvidia-smi -L`` lists (none when it is not installed)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        return tuple(range(len(ids)))
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        listing = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(range(sum(line.startswith("GPU ") for line in listing.splitlines())))


@dataclass
class _Waiter:
    slots: Slots
    granted: Allocation | None = field(default=None)


class ResourceScheduler:
    """Hands out CPU cores and GPUs to stages (thread-safe; see the module docstring).

    Args:
        cpus: How many cores to hand out (the first ones this process may use); default all.
        gpus: How many GPUs; default all (:func:`available_gpus`).
        stages: The slots of each named stage (a stage not named here asks for one core).
    """

    def __init__(
        self,
        cpus: int | None = None,
        gpus: int | None = None,
        *,
        stages: Mapping[str, Slots] | None = None,
    ) -> None:
        cores = available_cpus()
        if cpus is not None:
            if not 1 <= cpus <= len(cores):
                raise ConfigError(f"cpus: this machine has {len(cores)} cores, asked for {cpus}")
            cores = cores[:cpus]
        devices = available_gpus()
        if gpus is not None:
            if not 0 <= gpus <= len(devices):
                raise ConfigError(f"gpus: this machine has {len(devices)} GPUs, asked for {gpus}")
            devices = devices[:gpus]
        self.cpus, self.gpus = cores, devices
        self.stages = dict(stages or {})
        for name, slots in self.stages.items():
            self._check(slots, f"stage {name!r}")
        self._free_cpus = list(cores)
        self._free_gpus = list(devices)
        self._queue: list[_Waiter] = []
        self._changed = threading.Condition()

    def _slots(self, request: str | Slots) -> Slots:
        return request if isinstance(request, Slots) else self.stages.get(request, Slots())

    def _check(self, slots: Slots, what: str) -> None:
        if slots.cpus > len(self.cpus) or slots.gpus > len(self.gpus):
            raise ConfigError(
                f"{what} needs {slots.cpus} CPU cores and {slots.gpus} GPUs; this scheduler has "
                f"{len(self.cpus)} cores and {len(self.gpus)} GPUs"
            )

    def _grant(self) -> None:
        """Serve the queue in order while the first request fits (caller holds the lock)."""
        while self._queue:
            head = self._queue[0]
            if head.slots.cpus > len(self._free_cpus) or head.slots.gpus > len(self._free_gpus):
                return
            cpus = tuple(self._free_cpus[: head.slots.cpus])
            gpus = tuple(self._free_gpus[: head.slots.gpus])
            del self._free_cpus[: head.slots.cpus], self._free_gpus[: head.slots.gpus]
            head.granted = Allocation(cpus, gpus)
            self._queue.pop(0)
            self._changed.notify_all()

    def acquire(self, request: str | Slots, *, timeout: float | None = None) -> Allocation:
        """Wait for the slots of stage ``request`` (or for ``request`` itself).

        Raises:
            ConfigError: when the request exceeds what the scheduler has.
            TimeoutError: when ``timeout`` seconds pass first.
        """
        slots = self._slots(request)
        self._check(slots, f"stage {request!r}" if isinstance(request, str) else "the request")
        waiter = _Waiter(slots)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            self._queue.append(waiter)
            self._grant()
            while waiter.granted is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self._queue.remove(waiter)
                    self._grant()  # those behind it may fit now
                    raise TimeoutError(f"no {slots} free within {timeout} s")
                self._changed.wait(left)
            return waiter.granted

    def try_acquire(self, request: str | Slots) -> Allocation | None:
        """The slots now, or ``None`` when they are not free (or others wait before)."""
        slots = self._slots(request)
        self._check(slots, f"stage {request!r}" if isinstance(request, str) else "the request")
        with self._changed:
            if self._queue:
                return None
            waiter = _Waiter(slots)
            self._queue.append(waiter)
            self._grant()
            if waiter.granted is None:
                self._queue.remove(waiter)
            return waiter.granted

    def release(self, allocation: Allocation) -> None:
        """Give the slots back.

        Raises:
            ValueError: for slots that are not held (released twice, or never handed out).
        """
        with self._changed:
            if set(allocation.cpus) & set(self._free_cpus) or set(allocation.gpus) & set(
                self._free_gpus
            ):
                raise ValueError(f"{allocation} is not held (released twice?)")
            if not set(allocation.cpus) <= set(self.cpus) or not set(allocation.gpus) <= set(
                self.gpus
            ):
                raise ValueError(f"{allocation} was not handed out by this scheduler")
            self._free_cpus = sorted([*self._free_cpus, *allocation.cpus])
            self._free_gpus = sorted([*self._free_gpus, *allocation.gpus])
            self._grant()
            self._changed.notify_all()

    @contextlib.contextmanager
    def slots(self, request: str | Slots) -> Iterator[Allocation]:
        """Hold the slots of ``request`` for the ``with`` block."""
        allocation = self.acquire(request)
        try:
            yield allocation
        finally:
            self.release(allocation)

    def capacity(self, request: str | Slots) -> int:
        """How many requests like ``request`` fit at once.

        >>> ResourceScheduler(cpus=2, gpus=0).capacity(Slots(cpus=1))
        2
        """
        slots = self._slots(request)
        fits = len(self.cpus) // slots.cpus
        return min(fits, len(self.gpus) // slots.gpus) if slots.gpus else fits
