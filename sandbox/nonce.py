"""Per-run nonces: how a harness inside the sandbox passes results out.

Never trust a program's exit code or its own claims (``os._exit(0)`` before the asserts is a
known reward hack, SANDBOX.md). A harness prints its verdict on a line that starts with a
random nonce the untrusted code never saw; every other line (stray prints, a forged "PASSED")
counts for nothing.
"""

from __future__ import annotations

import secrets


def new_nonce() -> str:
    """32 hex characters from :mod:`secrets` (the global ``random`` state is never touched).

    Example:
        >>> len(new_nonce())
        32
    """
    return secrets.token_hex(16)


def tagged_lines(stdout: str, nonce: str) -> list[str]:
    """The payloads of the lines ``"<nonce> payload"`` in ``stdout``, in order.

    Args:
        stdout: The program's standard output.
        nonce: The run's nonce (from :func:`new_nonce`); an empty nonce is refused, since
            every line would then match.

    Example:
        >>> tagged_lines("PASSED\\nab12 passed 3/3\\nab12x forged\\n", "ab12")
        ['passed 3/3']
    """
    if not nonce or any(c.isspace() for c in nonce):
        raise ValueError(f"tagged_lines: nonce {nonce!r} must be non-empty, without whitespace")
    prefix = nonce + " "
    return [line[len(prefix) :] for line in stdout.splitlines() if line.startswith(prefix)]
