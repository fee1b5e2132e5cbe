"""Text spaces that accept any Unicode string up to a documented length.

Gymnasium's :class:`~gymnasium.spaces.Text` only accepts characters from its ``charset``; its
default (alphanumerics) rejects spaces and punctuation, which every prompt and completion has.
:class:`UnicodeText` keeps ``Text``'s interface (so ``check_env`` and wrappers work) but its
membership test is "a ``str`` of at most ``max_length`` characters", any code points allowed.

The multi-agent envs return :class:`TextObservation`\\ s: PettingZoo's checkers read an
observation's ``dtype``, which a plain ``str`` lacks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.spaces import Text

#: Maximum length, in characters, of observations and actions of the text envs.
MAX_TEXT_LENGTH = 8192

# What ``sample()`` draws from: printable ASCII, whitespace, and a few multi-byte code points
# (accents, Greek, CJK, an emoji) so that consumers are exercised on more than ASCII.
_SAMPLE_CHARSET = "".join(chr(c) for c in range(32, 127)) + "\n\t" + "éüßñçøΩλπ中文字😀→×÷−"


class UnicodeText(Text):
    """A :class:`~gymnasium.spaces.Text` space holding any ``str`` of length <= ``max_length``.

    >>> space = UnicodeText(max_length=16)
    >>> space.contains("2 + 3 = 5 ✓"), space.contains("x" * 17), space.contains(b"bytes")
    (True, False, False)
    """

    def __init__(
        self,
        max_length: int = MAX_TEXT_LENGTH,
        *,
        min_length: int = 0,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(
            max_length=max_length, min_length=min_length, charset=_SAMPLE_CHARSET, seed=seed
        )

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, UnicodeText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )

    def __hash__(self) -> int:
        return hash((UnicodeText, self.min_length, self.max_length))


_UNICODE = np.dtype(str)


class TextObservation(np.str_):
    """A text observation of a multi-agent (PettingZoo) env: a ``str`` (and a ``numpy.str_``)
    whose ``dtype`` is the variable-length Unicode dtype of :class:`UnicodeText` spaces.

    PettingZoo's ``api_test`` checks ``observation.dtype == observation_space.dtype``. A plain
    ``str`` has no ``dtype``, and a ``numpy.str_`` has a fixed-width one (``<U11`` for 11
    characters) that never equals the space's ``<U``; a text space holds strings of any length
    up to its bound, so ``<U`` is the honest dtype of every one of its elements.

    >>> text = TextObservation("2 + 3 = 5 ✓")
    >>> text == "2 + 3 = 5 ✓", isinstance(text, str), text.dtype == UnicodeText().dtype
    (True, True, True)
    """

    __slots__ = ()

    @property
    def dtype(self) -> np.dtype[np.str_]:  # type: ignore[override]
        """The variable-length Unicode dtype (``<U``), as every :class:`UnicodeText` has."""
        return _UNICODE
