"""Where algorithms are found: entry points, ``module:Class`` references, and registration.

An experiment names its algorithm (``algorithm:`` in the YAML) in one of three ways:

* a **registered name** (``sft``, ``ppo``, ``my_method``): every installed distribution's
  ``llm_trainer.algorithms`` entry points, the built-ins included — llm-trainer's own
  ``pyproject.toml`` declares them exactly as an outside package would::

      [project.entry-points."llm_trainer.algorithms"]
      my_method = "my_package.methods:MyMethod"

  and classes registered in this process with :func:`register_algorithm`;
* ``package.module:Class``: imported (the working directory is importable, as with
  ``python -m``);
* ``path/to/file.py:Class``: a file loaded by path (a script next to your config).

>>> get_algorithm("sft").name
'sft'
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import typing
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from llm_trainer.algorithms.base import Algorithm, check_algorithm_class
from llm_trainer.core.errors import ConfigError, suggest

ENTRY_POINT_GROUP = "llm_trainer.algorithms"

A = TypeVar("A", bound=type[Algorithm])

_registered: dict[str, type[Algorithm]] = {}


@dataclass(frozen=True, slots=True)
class AlgorithmEntry:
    """A registered algorithm: its name and where it comes from (``module:Class``)."""

    name: str
    reference: str
    source: str
    """``entry point (<distribution>)`` or ``registered in this process``."""


def register_algorithm(cls: A) -> A:
    """Register ``cls`` under ``cls.name`` in this process (a decorator).

    Raises:
        ConfigError: for a class that is not an algorithm, or a name that another class
            already has.
    """
    check_algorithm_class(cls, f"register_algorithm({cls!r})")
    existing = _registered.get(cls.name)
    if existing is not None and existing is not cls:
        raise ConfigError(
            f"algorithm name {cls.name!r} is already registered by "
            f"{existing.__module__}.{existing.__qualname__}"
        )
    _registered[cls.name] = cls
    return cls


def unregister_algorithm(name: str) -> None:
    """Forget an algorithm registered in this process with :func:`register_algorithm`
    (entry points stay: they belong to installed distributions).

    Raises:
        ConfigError: when ``name`` was not registered in this process.
    """
    if name not in _registered:
        raise ConfigError(
            f"algorithm {name!r} was not registered in this process{suggest(name, _registered)}"
        )
    del _registered[name]


def algorithm_entries() -> dict[str, AlgorithmEntry]:
    """Every registered algorithm by name (entry points and this process's registrations),
    without importing any of them."""
    entries: dict[str, AlgorithmEntry] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        entry = AlgorithmEntry(ep.name, ep.value, f"entry point ({dist})")
        known = entries.get(ep.name)
        if known is not None and known.reference != entry.reference:
            raise ConfigError(
                f"algorithm {ep.name!r} is declared twice: {known.reference} "
                f"[{known.source}] and {entry.reference} [{entry.source}]"
            )
        entries[ep.name] = entry
    for name, cls in _registered.items():
        entries[name] = AlgorithmEntry(
            name, f"{cls.__module__}:{cls.__qualname__}", "registered in this process"
        )
    if not entries:
        raise ConfigError(
            "no algorithm is registered: llm-trainer's entry points are missing (install the "
            "package: pip install -e . or pip install llm-trainer)"
        )
    return entries


def get_algorithm(reference: str) -> type[Algorithm]:
    """The algorithm class a config names (see the module docstring).

    Raises:
        ConfigError: for an unknown name (with a "did you mean"), a reference that cannot be
            imported, or a class that is not an algorithm.
    """
    if not isinstance(reference, str) or not reference.strip():
        raise ConfigError(f"algorithm: expected a name or module:Class, got {reference!r}")
    reference = reference.strip()
    if reference in _registered:
        return _registered[reference]
    if ":" not in reference:
        entries = algorithm_entries()
        entry = entries.get(reference)
        if entry is None:
            raise ConfigError(
                f"algorithm: unknown algorithm {reference!r}{suggest(reference, entries)}; "
                f"registered: {', '.join(sorted(entries))} (or give package.module:Class, "
                "or path/to/file.py:Class)"
            )
        cls = load_reference(entry.reference, f"algorithm {reference!r}")
        if cls.name != reference:
            raise ConfigError(
                f"algorithm {reference!r} points to {entry.reference}, whose name is "
                f"{cls.name!r}: the entry point and the class must agree"
            )
        return cls
    return load_reference(reference, f"algorithm {reference!r}")


def load_reference(reference: str, where: str) -> type[Algorithm]:
    """Import ``package.module:Class`` or load ``path/file.py:Class``."""
    target, _, attr = reference.rpartition(":")
    if not target or not attr:
        raise ConfigError(f"{where}: expected package.module:Class or path/file.py:Class")
    if target.endswith(".py"):
        module = _load_file(Path(target), where)
    else:
        cwd = str(Path.cwd())
        try:
            if cwd not in sys.path:  # ``python -m`` semantics: the working dir is importable
                sys.path.append(cwd)
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(f"{where}: cannot import module {target!r} ({exc})") from exc
    cls = getattr(module, attr, None)
    if cls is None:
        public = [n for n in vars(module) if not n.startswith("_")]
        raise ConfigError(f"{where}: {target} has no {attr!r}{suggest(attr, public)}")
    return check_algorithm_class(cls, where)


def _load_file(path: Path, where: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{where}: no such file {path}")
    name = f"llm_trainer_user_algorithm_{zlib.crc32(str(path.resolve()).encode()):08x}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{where}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise
    return module


def type_name(hint: Any) -> str:
    """A readable name of a field's type (``float``, ``float | None``, ``'a' | 'b'``).

    >>> from typing import Literal, Optional
    >>> type_name(Optional[int]), type_name(Literal["a", "b"]), type_name(tuple[str, ...])
    ('int | None', "'a' | 'b'", 'tuple[str, ...]')
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if hint is type(None):
        return "None"
    if isinstance(hint, type) and not args:
        return hint.__name__
    return str(hint).replace("typing.", "")


def describe_algorithms() -> list[Mapping[str, Any]]:
    """Every registered algorithm with its description and settings (for ``llm-trainer
    algorithms``): name, reference, source, description, produces_policy, multi_process,
    sections, and the fields of its config class (name, type, default, help)."""
    import dataclasses

    from llm_trainer.core.config import field_docs, to_dict

    out: list[Mapping[str, Any]] = []
    for name, entry in sorted(algorithm_entries().items()):
        cls = get_algorithm(name)
        settings: Any = cls.config_class
        docs = field_docs(settings)
        hints = typing.get_type_hints(settings)
        defaults = to_dict(cls.config_class())
        out.append(
            {
                "name": name,
                "reference": entry.reference,
                "source": entry.source,
                "description": cls.describe(),
                "produces_policy": cls.produces_policy,
                "multi_process": getattr(cls, "multi_process", False),
                "sections": ["model", "train", "eval", *cls.sections],
                "fields": [
                    {
                        "name": f.name,
                        "type": type_name(hints[f.name]),
                        "default": defaults.get(f.name),
                        "help": docs.get(f.name, ""),
                    }
                    for f in dataclasses.fields(cls.config_class)
                ],
            }
        )
    return out
