"""MonitoringService: a live status file, TensorBoard scalars and regression alerts.

One service watches one run (or one cycle) in its folder:

* ``status.json``, rewritten atomically (never half-written) as the work goes on: the status
  (``running``, then ``finished``, ``failed`` or ``interrupted``), the current stage and the
  time each stage took, the latest step and metrics, the usage at the end, and the alerts
  raised. A training run's service follows its ``metrics.jsonl`` (:meth:`MonitoringService.
  watch`), so the file shows every logged step, whichever the algorithm;
* TensorBoard scalars under ``tensorboard/monitor`` (``tensorboard --logdir runs``): seconds
  per stage, the summary's numbers, the usage; a clear note when TensorBoard is not installed;
* alerts: a metric that fell below its baseline's (the previous run of the same name, or a
  cycle's previous iteration) by more than the noise floor (:mod:`llm_trainer.experiments.
  noise`) is logged as one ``ALERT`` line and kept in ``status.json``.

>>> import json, tempfile
>>> from pathlib import Path
>>> lines = []
>>> monitor = MonitoringService(Path(tempfile.mkdtemp()), name="demo", log=lines.append,
...                             tensorboard=False)
>>> with monitor.stage("train"):
...     monitor.step(10, {"loss": 0.5})
>>> monitor.finish("finished")
>>> status = json.loads(monitor.status_path.read_text())
>>> status["status"], status["step"], status["metrics"], status["stages"]["train"]["status"]
('finished', 10, {'loss': 0.5}, 'finished')
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_trainer.core.rundir import atomic_write
from llm_trainer.experiments.cost import RunUsage
from llm_trainer.experiments.index import Metric

Log = Callable[[str], None]


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Alert:
    """A metric that regressed past the noise floor."""

    subject: str
    """What regressed (a run's or a stage's name)."""
    metric: str
    value: float
    baseline: float
    noise_floor: float
    episodes: int
    baseline_label: str
    """What the baseline is (``run 12``, ``iteration 3``)."""

    def line(self) -> str:
        """The log line.

        >>> print(Alert("sft", "success", 0.3, 0.42, 0.08, 200, "run 3").line())
        ALERT regression: sft success 0.420 -> 0.300 (-0.120, past the noise floor 0.080 of
        200 episodes; baseline: run 3)
        """
        return (
            f"ALERT regression: {self.subject} {self.metric} {self.baseline:.3f} -> "
            f"{self.value:.3f} ({self.value - self.baseline:+.3f}, past the noise floor "
            f"{self.noise_floor:.3f} of {self.episodes} episodes; baseline: {self.baseline_label})"
        )


def regressions(
    subject: str,
    current: Mapping[str, Metric],
    baseline: Mapping[str, Metric],
    baseline_label: str,
) -> list[Alert]:
    """The rates of ``current`` below ``baseline``'s by more than the baseline's noise floor.

    Only rates measured on held-out episodes (a :class:`Metric` with ``episodes``) have a
    noise floor; they are all higher-is-better (success, tool accuracy...).

    >>> before = {"success": Metric(0.8, episodes=200), "loss": Metric(0.1)}
    >>> [a.metric for a in regressions("x", {"success": Metric(0.5, episodes=200)}, before, "")]
    ['success']
    >>> regressions("x", {"success": Metric(0.78, episodes=200)}, before, "")
    []
    """
    alerts = []
    for key, old in baseline.items():
        new = current.get(key)
        if new is None or old.episodes is None or new.episodes is None:
            continue
        floor = old.noise_floor()
        if floor is not None and old.value - new.value > floor:
            alerts.append(
                Alert(subject, key, new.value, old.value, floor, old.episodes, baseline_label)
            )
    return alerts


class MonitoringService:
    """``status.json``, TensorBoard scalars and alerts of the work in ``directory``.

    Args:
        directory: The run's (or cycle's) folder.
        name: What is monitored (in alerts and the status).
        run_id: Its id in the runs index, when it has one.
        log: Where alerts and notes go (one line each).
        tensorboard: Write TensorBoard scalars (under ``directory/tensorboard/monitor``).
        min_interval: Least seconds between two rewrites of ``status.json`` for steps (stage
            changes and the end are written at once).
    """

    def __init__(
        self,
        directory: Path,
        *,
        name: str,
        run_id: int | None = None,
        log: Log = print,
        tensorboard: bool = True,
        min_interval: float = 1.0,
    ) -> None:
        self.directory = Path(directory)
        self.status_path = self.directory / "status.json"
        self.log = log
        self.min_interval = min_interval
        self._lock = threading.RLock()
        self._status: dict[str, Any] = {
            "name": name,
            "run_id": run_id,
            "status": "running",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": _now(),
            "updated": _now(),
            "ended": None,
            "stage": None,
            "stages": {},
            "step": None,
            "metrics": {},
            "usage": None,
            "alerts": [],
            "error": None,
        }
        self._written = 0.0
        self._stage_started: dict[str, float] = {}
        self._stage_count = 0
        self._tensorboard = tensorboard
        self._writer: Any = None
        self._metrics_offset = 0
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self._flush()

    # -- status.json -----------------------------------------------------------------------

    @property
    def status(self) -> dict[str, Any]:
        """The current status (a copy)."""
        with self._lock:
            status: dict[str, Any] = json.loads(json.dumps(self._status, default=str))
            return status

    def _flush(self) -> None:
        with self._lock:
            self._status["updated"] = _now()
            atomic_write(
                self.status_path, (json.dumps(self._status, indent=2, default=str) + "\n").encode()
            )
            self._written = time.monotonic()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Mark the ``with`` block as stage ``name``: its status and seconds in
        ``status.json``, its seconds as the scalar ``stages/<name>/seconds``."""
        with self._lock:
            self._status["stage"] = name
            self._status["stages"][name] = {"status": "running", "started": _now()}
            self._stage_started[name] = time.perf_counter()
            self._flush()
        outcome = "failed"
        try:
            yield
            outcome = "finished"
        except KeyboardInterrupt:
            outcome = "interrupted"
            raise
        finally:
            seconds = time.perf_counter() - self._stage_started.pop(name)
            with self._lock:
                self._status["stages"][name].update(
                    status=outcome, ended=_now(), seconds=round(seconds, 3)
                )
                self._status["stage"] = None
                self._flush()
            self.scalar(f"stages/{name}/seconds", seconds, self._stage_count)
            self._stage_count += 1

    def step(self, step: int, metrics: Mapping[str, Any], *, scalars: bool = True) -> None:
        """The latest step and its metrics (merged into the latest values); as TensorBoard
        scalars ``monitor/<key>`` too unless ``scalars`` is false (a trainer that writes its
        own)."""
        numbers = {
            k: v
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        with self._lock:
            self._status["step"] = step
            self._status["metrics"].update(numbers)
            if time.monotonic() - self._written >= self.min_interval:
                self._flush()
        if scalars:
            for key, value in numbers.items():
                self.scalar(f"monitor/{key}", value, step)

    def finish(
        self,
        status: str,
        *,
        metrics: Mapping[str, Metric] | None = None,
        usage: RunUsage | None = None,
        error: str | None = None,
    ) -> None:
        """The end: status, final metrics (also as ``summary/<key>`` scalars) and usage
        (``usage/<field>``)."""
        self.stop()
        self.poll()
        with self._lock:
            self._status.update(status=status, ended=_now(), error=error, stage=None)
            if metrics:
                self._status["summary"] = {k: m.value for k, m in sorted(metrics.items())}
            if usage is not None:
                self._status["usage"] = usage.as_dict()
            step = self._status["step"] or 0
            self._flush()
        for key, metric in sorted((metrics or {}).items()):
            self.scalar(f"summary/{key}", metric.value, step)
        for key, value in (usage.as_dict() if usage else {}).items():
            if value is not None:
                self.scalar(f"usage/{key}", value, step)
        self.close()

    # -- alerts ----------------------------------------------------------------------------

    def alert(self, alert: Alert) -> None:
        """Log ``alert`` as one line and keep it in ``status.json``."""
        self.log(alert.line())
        with self._lock:
            self._status["alerts"].append(alert.line())
            self._flush()

    def check_regressions(
        self, current: Mapping[str, Metric], baseline: Mapping[str, Metric], baseline_label: str
    ) -> list[Alert]:
        """Raise an alert for every rate of ``current`` that fell past the noise floor of
        ``baseline`` (:func:`regressions`); returns them."""
        found = regressions(self._status["name"], current, baseline, baseline_label)
        for alert in found:
            self.alert(alert)
        return found

    # -- following metrics.jsonl -----------------------------------------------------------

    def poll(self) -> int:
        """Read the points appended to ``metrics.jsonl`` since the last poll into the status
        (its trainer wrote their scalars already); returns how many."""
        path = self.directory / "metrics.jsonl"
        try:
            with open(path, "rb") as f:
                f.seek(self._metrics_offset)
                chunk = f.read()
        except FileNotFoundError:
            return 0
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
        self._metrics_offset += len(complete)
        points = 0
        for line in complete.decode("utf-8", errors="replace").splitlines():
            try:
                point = json.loads(line)
            except ValueError:
                continue
            if isinstance(point, dict) and isinstance(point.get("step"), int):
                metrics = {k: v for k, v in point.items() if k not in ("step", "time")}
                self.step(point["step"], metrics, scalars=False)
                points += 1
        return points

    def watch(self, interval: float = 2.0) -> None:
        """Poll ``metrics.jsonl`` every ``interval`` seconds in a daemon thread until
        :meth:`stop` (or :meth:`finish`)."""
        if self._watcher is not None:
            return

        def follow() -> None:
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except OSError as exc:  # a full disk must not stop the run being watched
                    self.log(f"status.json not updated: {exc}")

        self._watcher = threading.Thread(target=follow, name="llm-trainer-monitor", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Stop following ``metrics.jsonl``."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None

    # -- TensorBoard -----------------------------------------------------------------------

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One TensorBoard scalar (nothing when TensorBoard is off or not installed)."""
        writer = self._tensorboard_writer()
        if writer is not None:
            writer.add_scalar(tag, float(value), step)

    def _tensorboard_writer(self) -> Any:
        if not self._tensorboard:
            return None
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:  # torch or tensorboard: the train extra has both
                missing = getattr(exc, "name", None) or "tensorboard"
                self.log(
                    f"note: no TensorBoard scalars for {self._status['name']} ({missing} is not "
                    "installed: pip install 'llm-trainer[train]'); status.json is written"
                )
                self._tensorboard = False
                return None
            self._writer = SummaryWriter(log_dir=str(self.directory / "tensorboard" / "monitor"))
        return self._writer

    def close(self) -> None:
        """Stop watching and close the TensorBoard writer (its events flushed)."""
        self.stop()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
