"""Type names and coercion behind :mod:`m2po.config` (a leaf module: the standard library only).

:func:`coerce_value` checks a value against an annotation and converts it where the conversion is
lossless; :func:`build_dataclass` builds a (nested) dataclass from a mapping; :func:`coerce_kwargs`
does the same for the keyword parameters of a function (a loss's ``loss_params``). Every failure
is a :class:`ConfigError` naming the dotted key, where the value was set and how to fix it.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import inspect
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, Union

__all__ = [
    "ConfigError",
    "build_dataclass",
    "coerce_kwargs",
    "coerce_value",
    "field_default",
    "init_fields",
    "join_key",
    "nested_dataclass",
    "type_name",
]

T = TypeVar("T")
_SCALAR_HINTS = {bool: "write true or false", int: None, str: "quote it to make it a string"}


class ConfigError(ValueError):
    """A bad config value: ``key`` is its dotted path, ``source`` where it was set (a file, a
    ``--set`` override), ``hint`` how to fix it. ``str()`` reads ``key: problem (from source); hint``."""

    def __init__(self, key: str, message: str, source: str | None = None, hint: str | None = None) -> None:
        self.key, self.message, self.source, self.hint = key, message, source, hint
        text = f"{key}: {message}" if key else message
        if source:
            text += f" (from {source})"
        if hint:
            text += f"; {hint}"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return ConfigError, (self.key, self.message, self.source, self.hint)

    def with_prefix(self, prefix: str, source: str | None = None) -> ConfigError:
        """The same error one level up: ``lr`` under ``train`` becomes ``train.lr``."""
        return ConfigError(join_key(prefix, self.key), self.message, self.source or source, self.hint)


def join_key(prefix: str, key: str) -> str:
    if not prefix:
        return key
    if not key:
        return prefix
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


def init_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def type_name(tp: Any) -> str:
    """A short, readable rendering of an annotation: ``int | None``, ``'a' | 'b'``, ``list[int]``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "None"
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join('...' if a is Ellipsis else type_name(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))


def coerce_value(value: Any, tp: Any, key: str, source: str | None, prov: dict[str, str]) -> Any:
    """Check ``value`` against annotation ``tp`` and convert where the conversion is lossless."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    def bad(hint: str | None = None) -> ConfigError:
        return ConfigError(key, f"expected {type_name(tp)}, got {value!r}", source, hint)

    if tp is Any or tp is object:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise bad()
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:  # X | None: X's own error (a nested key, a Literal choice) is the useful one
            return coerce_value(value, arms[0], key, source, prov)
        for arm in arms:
            try:
                return coerce_value(value, arm, key, source, prov)
            except ConfigError:
                continue
        raise bad()
    if origin is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        choices = ", ".join(repr(a) for a in args)
        hint = f"did you mean {close[0]!r}?" if close else None
        raise ConfigError(key, f"expected one of {choices}, got {value!r}", source, hint)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a mapping of {tp.__name__} fields, got {value!r}", source)
        return build_dataclass(tp, value, key, source, prov)
    if origin in (list, tuple, set, frozenset, Sequence) or tp in (list, tuple, set, frozenset):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
            raise bad("write a YAML list, e.g. [1, 2]")
        items = list(value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise bad(f"give exactly {len(args)} items")
            return tuple(coerce_value(v, a, f"{key}[{i}]", source, prov) for i, (v, a) in enumerate(zip(items, args)))
        elem = args[0] if args else Any
        out = [coerce_value(v, elem, f"{key}[{i}]", source, prov) for i, v in enumerate(items)]
        container = origin or tp
        return out if container in (list, Sequence) else container(out)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise bad("write a YAML mapping, e.g. {a: 1}")
        kt, vt = args if args else (Any, Any)
        return {
            coerce_value(k, kt, f"{key}.{k}", source, prov): coerce_value(v, vt, f"{key}.{k}", source, prov)
            for k, v in value.items()
        }
    if tp in (bool, int, str):  # strict: no bool for int, no number for str
        if isinstance(value, tp) and (tp is bool or not isinstance(value, bool)):
            return value
        raise bad(_SCALAR_HINTS[tp] if tp is not str or isinstance(value, int | float) else None)
    if tp is float:
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            try:
                return float(value)  # a str too: PyYAML reads '1e-6' (no dot) as a string
            except ValueError:
                pass
        raise bad()
    if isinstance(tp, type) and issubclass(tp, os.PathLike) and isinstance(value, str | os.PathLike):
        return tp(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if value == member.value or value == member.name or value is member:
                return member
        raise ConfigError(key, f"expected one of {', '.join(repr(m.value) for m in tp)}, got {value!r}", source)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise bad()
    return value  # an annotation we do not understand (TypeVar, Callable, ...): accept as is


def build_dataclass(cls: type[T], raw: Mapping[str, Any], prefix: str, source: str | None, prov: dict[str, str]) -> T:
    fields = init_fields(cls)
    names = [f.name for f in fields]
    for k in raw:
        if k not in names:
            dotted = join_key(prefix, str(k))
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f"did you mean {join_key(prefix, close[0])!r}? " if close else ""
            where = f"under {prefix!r}" if prefix else "at the top level"
            hint += f"valid keys {where}: {', '.join(names)}"
            raise ConfigError(dotted, "unknown key", prov.get(dotted, source), hint)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields:
        dotted = join_key(prefix, f.name)
        if f.name in raw:
            kwargs[f.name] = coerce_value(raw[f.name], hints[f.name], dotted, prov.get(dotted, source), prov)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(dotted, "is required", source, f"set it in the file or with --set {dotted}=VALUE")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise e.with_prefix(prefix, source) from e
    except (TypeError, ValueError) as e:
        raise ConfigError(prefix, str(e), source) from e


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def nested_dataclass(tp: Any) -> type | None:
    """The dataclass behind ``X`` or ``X | None``, to render its keys as a section."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(arms) == 1 and dataclasses.is_dataclass(arms[0]):
            return arms[0]
    return None


def coerce_kwargs(
    fn: Callable[..., Any], params: Mapping[str, Any], key: str, source: str | None = None
) -> dict[str, Any]:
    """``params`` checked and converted through the signature of ``fn`` (a loss's token objective): each
    value through its parameter's annotation, or the type of its default where it has none, so
    ``loss_params.tau: abc`` fails at config time, naming ``key.tau`` and its default, not mid-run."""
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):  # an annotation that does not resolve: fall back on the defaults' types
        hints = {}
    out: dict[str, Any] = {}
    for name, value in params.items():
        dotted = join_key(key, str(name))
        param = sig.parameters.get(str(name))
        if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            accepted = [p.name for p in sig.parameters.values() if p.default is not p.empty]
            raise ConfigError(dotted, "unknown parameter", source, f"{fn.__name__} accepts {', '.join(accepted)}")
        default = param.default
        tp = hints.get(param.name)
        if tp is None:
            tp = Any if default is param.empty or default is None else type(default)
        try:
            out[param.name] = coerce_value(value, tp, dotted, source, {})
        except ConfigError as e:
            example = "null" if default is None else repr(default)  # as written in YAML
            shown = "" if default is param.empty else f", e.g. {dotted}: {example} (its default)"
            hint = e.hint or f"write {_kind(tp)}{shown}"
            raise ConfigError(e.key, e.message, e.source, hint) from None
    return out


def _kind(tp: Any) -> str:
    """What to write for ``tp``, in words: ``a number``, ``a number or null``, ``a value of type X``."""
    arms = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    words = {float: "a number", int: "a whole number", bool: "true or false", str: "a string", type(None): "null"}
    return " or ".join(words.get(a, f"a value of type {type_name(a)}") for a in arms)
