"""Content digests of files and directory trees: what identifies a model or an agent on disk.

:func:`tree_digest` hashes a whole directory (a model's weights, configs and tokenizer; a saved
agent): the benchmark runner uses it to tell a retrained agent from the one it already scored,
and the knowledge graph to name a model node by its weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


def tree_digest(root: Path, _seen: frozenset[Path] = frozenset()) -> str:
    """SHA-256 prefix over the files of the tree ``root``: each file's relative path, size and
    bytes, in sorted order, streamed (a model of any size is read in 1 MiB chunks).

    Symbolic links are followed (a Hugging Face snapshot links its blobs). Hidden files and
    folders (``.cache/`` of Hugging Face downloads, ``.git/``, lock and editor files) are left
    out: they do not define the agent. A peft adapter's base model, when it is a local
    directory (``adapter_config.json``), is part of the agent and hashed too.
    """
    files: list[tuple[str, Path]] = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith("."):
                path = Path(folder, name)
                files.append((path.relative_to(root).as_posix(), path))
    digest = hashlib.sha256()
    bases: set[Path] = set()
    for relative, path in sorted(files):
        digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
        for chunk in _chunks(path):
            digest.update(chunk)
        if path.name == "adapter_config.json":
            bases |= _adapter_base(path)
    seen = _seen | {root.resolve()}
    for base in sorted(bases - seen):
        digest.update(f"base model\0{tree_digest(base, seen)}\0".encode())
    return digest.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """SHA-256 prefix of a file's bytes."""
    digest = hashlib.sha256()
    for chunk in _chunks(path):
        digest.update(chunk)
    return digest.hexdigest()[:16]


def _chunks(path: Path) -> Iterator[bytes]:
    """A file's bytes, 1 MiB at a time."""
    with path.open("rb") as f:
        yield from iter(lambda: f.read(1 << 20), b"")


def _adapter_base(adapter_config: Path) -> set[Path]:
    """The base model directory a peft adapter names, when it is a local directory."""
    try:
        base = json.loads(adapter_config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return set()
    return {Path(base).resolve()} if isinstance(base, str) and Path(base).is_dir() else set()
