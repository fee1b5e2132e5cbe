"""Seeding without side effects on the process.

Libraries such as ``transformers.Trainer`` seed the process-wide generators (``random``,
``numpy.random``, ``torch``) themselves. :func:`preserved_global_rngs` saves those states and
restores them afterwards, so a training run inside a larger program leaves its callers' random
streams exactly as they were.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


@contextmanager
def preserved_global_rngs() -> Iterator[None]:
    """Restore ``random``, ``numpy.random`` and (if imported) torch's global RNG states on exit.

    >>> state = random.getstate()
    >>> with preserved_global_rngs():
    ...     random.seed(123); _ = random.random()
    >>> random.getstate() == state
    True
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch: Any = sys.modules.get("torch")
    torch_state = torch.random.get_rng_state() if torch is not None else None
    cuda_states = (
        torch.cuda.get_rng_state_all()
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
        else None
    )
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch = sys.modules.get("torch")
        if torch is not None:
            if torch_state is not None:
                torch.random.set_rng_state(torch_state)
            if cuda_states is not None:
                torch.cuda.set_rng_state_all(cuda_states)
