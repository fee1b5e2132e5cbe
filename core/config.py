"""One loader for typed configs: YAML files and ``--set key=value`` overrides -> dataclasses.

A config is a tree of frozen dataclasses whose fields carry a docstring each (the one place its
help lives). :func:`load_config` builds it from a mapping, strictly: unknown keys (with a "did
you mean"), wrong types and values outside a ``Literal`` are :class:`ConfigError`\\ s that name
the full field path and the allowed values. Each dataclass may validate further in
``__post_init__``.

>>> from dataclasses import dataclass
>>> from typing import Literal
>>> @dataclass(frozen=True)
... class Opt:
...     lr: float = 1e-3
...     schedule: Literal["cosine", "constant"] = "cosine"
>>> build(Opt, {"lr": 0.01}).lr
0.01
>>> build(Opt, {"schedule": "linear"})
Traceback (most recent call last):
...
llm_trainer.core.errors.ConfigError: schedule: 'linear' is not one of ['cosine', 'constant']
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from llm_trainer.core.errors import ConfigError, suggest

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Range:
    """A bound on a numeric config field, declared in its type::

        learning_rate: Annotated[float, Range(gt=0)] = 1e-3

    :func:`check_ranges` (called by each config's ``__post_init__``) enforces it, so configs
    built in Python are checked like those loaded from YAML. Floats must also be finite.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def describe(self) -> str:
        parts = [
            f"{op} {value:g}"
            for op, value in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if value is not None
        ]
        return " and ".join(parts)

    def holds(self, value: float) -> bool:
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )


#: Common bounds.
POSITIVE = Range(gt=0)
NON_NEGATIVE = Range(ge=0)
PROBABILITY = Range(ge=0, le=1)


def _bounds(hint: Any) -> list[Range]:
    """The :class:`Range` markers of a type, also inside ``X | None``."""
    if get_origin(hint) is typing.Annotated:
        return [m for m in hint.__metadata__ if isinstance(m, Range)]
    if get_origin(hint) in (typing.Union, types.UnionType):
        return [r for arg in get_args(hint) for r in _bounds(arg)]
    return []


@functools.cache
def _ranges(cls: Any) -> tuple[tuple[str, Range], ...]:
    hints = get_type_hints(cls, include_extras=True)
    return tuple(
        (f.name, bound) for f in dataclasses.fields(cls) for bound in _bounds(hints.get(f.name))
    )


def check_ranges(config: Any, section: str = "") -> None:
    """Raise :class:`ConfigError` for a field outside its declared :class:`Range` or a float
    that is not finite, naming ``section.field``, the bound and the value.

    >>> Range(gt=0).holds(0.0), Range(gt=0, le=1).describe()
    (False, '> 0 and <= 1')
    """
    where = f"{section}." if section else ""
    kind: Any = type(config)
    for name, bound in _ranges(kind):
        value = getattr(config, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}{name} must be a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}{name} must be a finite number, got {value!r}")
        if not bound.holds(value):
            raise ConfigError(f"{where}{name} must be {bound.describe()}, got {value!r}")
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}{f.name} must be a finite number, got {value!r}")


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects duplicate keys instead of keeping the last one."""


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice (YAML would silently keep the last one)."""


def _no_duplicate_keys(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise DuplicateKeyError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                "(YAML would silently keep only the last one)"
            )
        seen[key] = loader.construct_object(value_node, deep=True)
    return seen


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def strict_yaml(text: str, source: str, error: type[Exception] = ConfigError) -> Any:
    r"""Safe-load YAML, rejecting duplicate keys; problems raise ``error`` naming ``source``.

    >>> strict_yaml("a: 1\na: 2\n", "x.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    llm_trainer.core.errors.ConfigError: x.yaml: duplicate key 'a' at line 2 (YAML would ...)
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except DuplicateKeyError as exc:
        raise error(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise error(f"{source}: invalid YAML: {detail}") from None


@functools.cache
def _type_hints(cls: Any) -> dict[str, Any]:
    """``get_type_hints(cls)``, once per class (it evaluates every annotation: slow enough to
    dominate :func:`build` for small records, e.g. the knowledge graph's)."""
    return get_type_hints(cls)


def build(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; missing fields take their defaults."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {data!r}")
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            where = f"{path}." if path else ""
            raise ConfigError(
                f"{where}{key}: unknown field{suggest(str(key), fields)}; "
                f"allowed: {', '.join(fields)}"
            )
    values = {}
    for name in fields:
        if name in data:
            values[name] = _coerce(hints[name], data[name], f"{path}.{name}" if path else name)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path or cls.__name__}: {exc}") from None


def _fits_shape(tp: Any, value: Any) -> bool:
    """Whether ``value`` has the shape of ``tp``: a list for a sequence, a mapping for a
    mapping or a dataclass, anything else for the rest."""
    origin = get_origin(tp)
    sequence = origin in (tuple, Sequence, list) or tp in (tuple, list)
    mapping = origin in (dict, Mapping) or tp is dict or dataclasses.is_dataclass(tp)
    if isinstance(value, list | tuple):
        return sequence
    if isinstance(value, Mapping):
        return mapping
    return not (sequence or mapping)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        shaped = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
                if _fits_shape(arg, value):
                    shaped.append(str(exc))
        if len(shaped) == 1:  # the one member of the value's shape says what is wrong with it
            errors = shaped
        raise ConfigError(
            errors[0]
            if len(errors) == 1
            else f"{path}: {value!r} matches none "
            f"of {[getattr(a, '__name__', str(a)) for a in args]}"
        )
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return build(tp, value, path)
    if origin in (tuple, Sequence, list) or tp in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{path}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested dict (a copy)."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: cannot parse {raw!r}: {exc}") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (duplicate keys rejected); an empty file is
    ``{}``.

    Raises:
        ConfigError: for a missing file, invalid YAML or another top level, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    loaded = strict_yaml(path.read_text(encoding="utf-8"), str(path))
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return loaded or {}


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Load ``cls`` from a YAML file (or defaults) with ``--set`` overrides applied (a class
    with a ``from_dict`` classmethod builds itself from the data)."""
    data = read_yaml_mapping(path) if path is not None else {}
    try:
        data = apply_overrides(data, overrides)
        from_dict = getattr(cls, "from_dict", None)
        if callable(from_dict):
            built: T = from_dict(data)
            return built
        return build(cls, data)
    except ConfigError as exc:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{exc}") from None


def to_dict(config: Any) -> Any:
    """A config as plain YAML/JSON-ready data (tuples become lists); an object with its own
    ``to_dict()`` method is converted by it."""
    own = getattr(config, "to_dict", None)
    if callable(own) and not isinstance(config, type):
        return own()
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, tuple | list):
        return [to_dict(v) for v in config]
    if isinstance(config, Mapping):
        return {k: to_dict(v) for k, v in config.items()}
    return config


@functools.cache
def field_docs(cls: Any) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls`` (the one place its help lives), read
    from the source; ``{}`` when the source is not available.

    >>> from llm_trainer.core.config import Range
    >>> field_docs(Range)
    {}
    """
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or not isinstance(klass, type):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, following in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs
