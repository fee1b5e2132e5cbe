"""ResourceScheduler: slots are never handed out twice, requests are served in order, and a
worker process that applies its allocation runs on its cores only."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest

from llm_trainer.core.errors import ConfigError
from llm_trainer.experiments.scheduler import Allocation, ResourceScheduler, Slots
from llm_trainer.experiments.sweep import apply_allocation
from llm_trainer.tests.experiments.workers import confinement


def test_threads_contending_for_slots_never_share_a_core() -> None:
    scheduler = ResourceScheduler(cpus=2, gpus=0)
    held: list[tuple[int, ...]] = []
    overlaps: list[tuple[int, ...]] = []
    most = [0]
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            with scheduler.slots(Slots(cpus=1)) as allocation:
                with lock:
                    if any(set(allocation.cpus) & set(h) for h in held):
                        overlaps.append(allocation.cpus)
                    held.append(allocation.cpus)
                    most[0] = max(most[0], len(held))
                time.sleep(0.001)
                with lock:
                    held.remove(allocation.cpus)

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert most[0] == 2  # both cores were in use at once, never more
    assert scheduler.try_acquire(Slots(cpus=2)) is not None  # everything came back


def test_a_big_request_waiting_is_not_overtaken_by_small_ones() -> None:
    scheduler = ResourceScheduler(cpus=2, gpus=0)
    first = scheduler.acquire(Slots(cpus=1))
    got: list[Allocation] = []
    big = threading.Thread(target=lambda: got.append(scheduler.acquire(Slots(cpus=2))))
    big.start()
    deadline = time.monotonic() + 10
    while not scheduler._queue and time.monotonic() < deadline:  # the big one is waiting
        time.sleep(0.01)
    assert scheduler.try_acquire(Slots(cpus=1)) is None  # a core is free, but it waits first
    scheduler.release(first)
    big.join(timeout=10)
    assert [len(a.cpus) for a in got] == [2]


def test_impossible_requests_and_double_releases_are_errors() -> None:
    with pytest.raises(ConfigError, match="stage 'train' needs 1 CPU cores and 1 GPUs"):
        ResourceScheduler(cpus=1, gpus=0, stages={"train": Slots(cpus=1, gpus=1)})
    scheduler = ResourceScheduler(cpus=1, gpus=0)
    with pytest.raises(ConfigError, match="the request needs 2 CPU cores"):
        scheduler.acquire(Slots(cpus=2))
    with pytest.raises(ConfigError, match="asked for 99"):
        ResourceScheduler(cpus=99)
    allocation = scheduler.acquire(Slots())
    with pytest.raises(TimeoutError):
        scheduler.acquire(Slots(), timeout=0.05)
    scheduler.release(allocation)
    with pytest.raises(ValueError, match="released twice"):
        scheduler.release(allocation)
    with pytest.raises(ConfigError, match=r"slots\.cpus must be >= 1"):
        Slots(cpus=0)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs CPU affinity (Linux)")
def test_a_worker_that_applies_its_allocation_runs_on_its_cores_only() -> None:
    scheduler = ResourceScheduler(gpus=0)
    allocation = scheduler.acquire(Slots(cpus=1))
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, initializer=apply_allocation, initargs=(allocation,)) as pool:
        cores, threads, gpus = pool.apply(confinement)
    assert cores == list(allocation.cpus)
    assert (threads, gpus) == ("1", "")
