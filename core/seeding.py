"""Seeding without side effects on the process, and the one way seeds are derived.

:func:`derive_seed` turns a base seed and any number of parts (iteration numbers, slot ids,
names) into an independent seed through :class:`numpy.random.SeedSequence`: the same parts give
the same seed in every process and on every platform (unlike ``hash``), and different parts
give statistically independent streams.

Libraries such as ``transformers.Trainer`` seed the process-wide generators (``random``,
``numpy.random``, ``torch``) themselves. :func:`preserved_global_rngs` saves those states and
restores them afterwards, so a training run inside a larger program leaves its callers' random
streams exactly as they were.
"""

from __future__ import annotations

import random
import sys
import zlib
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


def _entropy(part: object) -> int:
    if isinstance(part, bool) or not isinstance(part, int):
        if isinstance(part, tuple):
            return _entropy(derive_seed(*part, bits=32))
        return zlib.crc32(str(part).encode())
    return part & 0xFFFF_FFFF_FFFF_FFFF if part >= 0 else (part & 0xFFFF_FFFF) | (1 << 64)


def derive_seed(*parts: object, bits: int = 31) -> int:
    """A ``bits``-bit seed from ``parts`` (ints, strings, tuples of those), via
    :class:`numpy.random.SeedSequence`.

    >>> derive_seed(0, 1) == derive_seed(0, 1) != derive_seed(0, 2)
    True
    >>> 0 <= derive_seed(7, "ppo", 3) < 2**31
    True
    """
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in [1, 64], got {bits}")
    words = np.random.SeedSequence([_entropy(p) for p in parts]).generate_state(
        2 if bits > 32 else 1, dtype=np.uint32
    )
    value = int(words[0]) if bits <= 32 else int(words[0]) | int(words[1]) << 32
    return value & ((1 << bits) - 1)
