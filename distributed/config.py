"""The ``ray:`` section of an experiment: where its parallel work runs.

Plain data (no ``ray`` import): an experiment config holds it whether or not the ``ray`` extra
is installed; it is only resolved into a cluster connection when work is submitted.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_trainer.core.errors import ConfigError


@dataclass(frozen=True)
class RayConfig:
    """Run an experiment's parallel work (evolution's fitness evaluations, ``search_distill``'s
    MCTS trees) as Ray tasks.

    The results do not depend on it: every unit of work carries its own seed, and results are
    keyed by the unit's index (see :mod:`llm_trainer.distributed`).
    """

    address: str | None = None
    """``None``: local processes (the default). ``local``: a Ray cluster started in this
    process (``ray.init()``). ``auto``: the cluster ``ray start`` started on this machine (or
    ``$RAY_ADDRESS``). ``HOST:PORT``: the cluster whose head listens there. ``ray://HOST:PORT``:
    through the Ray client. Needs the extra: ``pip install 'llm-trainer[ray]'``."""

    def __post_init__(self) -> None:
        if self.address is not None and not self.address.strip():
            raise ConfigError(
                "ray.address: must not be empty (local, auto, HOST:PORT or ray://HOST:PORT; "
                "null for local processes)"
            )
