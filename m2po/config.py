"""Typed configs: dataclasses with help text, loaded from YAML plus ``--set`` overrides.

Why not Hydra/OmegaConf: the project needs only nested dataclasses, overrides and errors that
say how to fix a value. In the spirit of TRL's ``GRPOConfig`` every field carries help (citing
the paper), and as in AReaL's ``cli_args`` a bad value is reported with its dotted key, where it
was set and what to write instead. Fields are declared with :func:`option`; a dataclass may
define ``validate(self)``, called after loading (children first), raising
``ConfigError("lr", "must be > 0")``, which is re-keyed to the full path (``train.lr``) and told
the value's source; a plain ``ValueError`` is keyed by the dataclass's own path.

Coercion is strict (an ``int`` field rejects ``2.5``, ``"2"`` and ``true``) with two conveniences:
a ``float`` accepts an int, and a numeric string such as ``1e-6``, which PyYAML reads as a
string (YAML 1.1 floats need a dot).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import enum
import os
import tempfile
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

__all__ = ["ConfigError", "config_help", "dump_yaml", "load_config", "option", "to_dict", "validate_config"]

T = TypeVar("T")
_MUTABLE = (list, dict, set)
_SCALAR_HINTS = {bool: "write true or false", int: None, str: "quote it to make it a string"}


def option(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:
    """A dataclass field with ``metadata["help"]``. A mutable default (list, dict, set, or a
    dataclass instance) becomes a ``default_factory`` returning a deep copy, so instances never
    share it; a dataclass *class* becomes its own factory. Leave ``default`` out for a
    required field (it needs ``kw_only`` or to come first)."""
    metadata = {**kw.pop("metadata", {}), "help": help}
    if "default_factory" in kw:
        return dataclasses.field(metadata=metadata, **kw)
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return dataclasses.field(default_factory=default, metadata=metadata, **kw)
    if isinstance(default, _MUTABLE) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata, **kw)
    return dataclasses.field(default=default, metadata=metadata, **kw)


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
        return ConfigError(_join(prefix, self.key), self.message, self.source or source, self.hint)


def _join(prefix: str, key: str) -> str:
    if not prefix:
        return key
    if not key:
        return prefix
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


# --------------------------------------------------------------------------------------------
# type names and coercion
# --------------------------------------------------------------------------------------------


def _fields(cls: type) -> list[dataclasses.Field]:
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


def _coerce(value: Any, tp: Any, key: str, source: str | None, prov: dict[str, str]) -> Any:
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
            return _coerce(value, arms[0], key, source, prov)
        for arm in arms:
            try:
                return _coerce(value, arm, key, source, prov)
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
        return _build(tp, value, key, source, prov)
    if origin in (list, tuple, set, frozenset, Sequence) or tp in (list, tuple, set, frozenset):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
            raise bad("write a YAML list, e.g. [1, 2]")
        items = list(value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise bad(f"give exactly {len(args)} items")
            return tuple(_coerce(v, a, f"{key}[{i}]", source, prov) for i, (v, a) in enumerate(zip(items, args)))
        elem = args[0] if args else Any
        out = [_coerce(v, elem, f"{key}[{i}]", source, prov) for i, v in enumerate(items)]
        container = origin or tp
        return out if container in (list, Sequence) else container(out)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise bad("write a YAML mapping, e.g. {a: 1}")
        kt, vt = args if args else (Any, Any)
        return {
            _coerce(k, kt, f"{key}.{k}", source, prov): _coerce(v, vt, f"{key}.{k}", source, prov)
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


def _build(cls: type[T], raw: Mapping[str, Any], prefix: str, source: str | None, prov: dict[str, str]) -> T:
    fields = _fields(cls)
    names = [f.name for f in fields]
    for k in raw:
        if k not in names:
            dotted = _join(prefix, str(k))
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f"did you mean {_join(prefix, close[0])!r}? " if close else ""
            where = f"under {prefix!r}" if prefix else "at the top level"
            hint += f"valid keys {where}: {', '.join(names)}"
            raise ConfigError(dotted, "unknown key", prov.get(dotted, source), hint)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields:
        dotted = _join(prefix, f.name)
        if f.name in raw:
            kwargs[f.name] = _coerce(raw[f.name], hints[f.name], dotted, prov.get(dotted, source), prov)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(dotted, "is required", source, f"set it in the file or with --set {dotted}=VALUE")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise e.with_prefix(prefix, source) from e
    except (TypeError, ValueError) as e:
        raise ConfigError(prefix, str(e), source) from e


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def _deep_merge(base: dict[str, Any], new: Mapping[str, Any], prefix: str, origin: str, prov: dict[str, str]) -> None:
    """Merge ``new`` into ``base`` in place; record ``origin`` for every leaf it sets."""
    for k, v in new.items():
        dotted = _join(prefix, str(k))
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v, dotted, origin, prov)
        else:
            base[k] = copy.deepcopy(dict(v)) if isinstance(v, Mapping) else v
            _mark(v, dotted, origin, prov)


def _mark(v: Any, dotted: str, origin: str, prov: dict[str, str]) -> None:
    prov[dotted] = origin
    if isinstance(v, Mapping):
        for k, sub in v.items():
            _mark(sub, _join(dotted, str(k)), origin, prov)


def _check_section_path(cls: type, parts: list[str], origin: str) -> None:
    """``name.x=1`` where ``name`` is a plain value: say so, rather than a confusing type error."""
    tp: Any = cls
    for i, part in enumerate(parts[:-1]):
        sub = _nested_dataclass(tp)
        if sub is None:
            return  # a dict-typed field takes any sub-key; a wrong type is reported by _build
        hint = typing.get_type_hints(sub).get(part)
        if hint is None:
            return  # unknown key: _build reports it with the valid keys
        if _nested_dataclass(hint) is None and typing.get_origin(hint) not in (dict, Mapping) and hint is not dict:
            parent = ".".join(parts[: i + 1])
            raise ConfigError(
                ".".join(parts),
                f"{parent!r} is a {type_name(hint)} value, not a section",
                origin,
                f"set it directly: --set {parent}=VALUE",
            )
        tp = hint


def dotted_keys(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every leaf key of ``cls`` as a dotted path, with its default (``MISSING`` when required)."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in _fields(cls):
        key = _join(prefix, f.name)
        sub = _nested_dataclass(hints[f.name])
        if sub is not None:
            out.update(dotted_keys(sub, key))
        else:
            out[key] = _default_of(f)
    return out


def _override_example(cls: type, key: str) -> str:
    """An override of a key that exists: ``key`` itself when it is one, else the closest one."""
    keys = dotted_keys(cls) if dataclasses.is_dataclass(cls) else {}
    if not keys:
        return "e.g. section.key=value"
    name = key if key in keys else (difflib.get_close_matches(key, list(keys), n=1) or [next(iter(keys))])[0]
    default = keys[name]
    value = "VALUE" if default is dataclasses.MISSING or default is None else _render(default)
    return f"e.g. --set {name}={value}" + (f" (did you mean {name!r}?)" if name != key and key else "")


def _apply_override(cls: type, raw: dict[str, Any], text: str, prov: dict[str, str]) -> None:
    origin = f"--set {text}"
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(key or text, "an override must look like KEY=VALUE", origin, _override_example(cls, key))
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(key, f"value is not valid YAML: {e}", origin) from e
    parts = key.split(".")
    _check_section_path(cls, parts, origin)
    node = raw
    for i, part in enumerate(parts[:-1]):
        prov.setdefault(".".join(parts[: i + 1]), origin)
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            parent = ".".join(parts[: i + 1])
            raise ConfigError(key, f"{parent!r} is not a section (it holds {child!r})", origin)
        node = child
    _deep_merge(node, {parts[-1]: value}, ".".join(parts[:-1]), origin, prov)


def load_config(
    cls: type[T],
    path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    data: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls`` from a YAML file, then ``data`` merged over it, then ``KEY=VALUE``
    overrides (values parsed as YAML); type-check every key and run the ``validate`` hooks."""
    raw: dict[str, Any] = {}
    prov: dict[str, str] = {}
    if path is not None:
        src = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as e:
            raise ConfigError("", f"{src}: not valid YAML: {e}") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, Mapping):
            raise ConfigError("", f"{src}: the top level must be a mapping of keys, got {type(loaded).__name__}")
        _deep_merge(raw, loaded, "", src, prov)
    if data is not None:
        _deep_merge(raw, data, "", "data", prov)
    for text in overrides:
        _apply_override(cls, raw, text, prov)
    cfg = _build(cls, raw, "", None, prov)
    validate_config(cfg, _prov=prov)
    return cfg


def validate_config(cfg: Any, prefix: str = "", _prov: dict[str, str] | None = None) -> None:
    """Run every ``validate()`` hook, children before parents, re-keying errors to dotted paths."""
    prov = _prov or {}
    if isinstance(cfg, list | tuple):
        for i, item in enumerate(cfg):
            validate_config(item, f"{prefix}[{i}]", prov)
        return
    if isinstance(cfg, dict):
        for k, item in cfg.items():
            validate_config(item, _join(prefix, str(k)), prov)
        return
    if not (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)):
        return
    for f in _fields(type(cfg)):
        validate_config(getattr(cfg, f.name), _join(prefix, f.name), prov)
    hook = getattr(cfg, "validate", None)
    if not callable(hook):
        return
    try:
        hook()
    except ConfigError as e:
        full = _join(prefix, e.key)
        raise ConfigError(full, e.message, e.source or prov.get(full), e.hint) from e
    except ValueError as e:
        raise ConfigError(prefix, str(e), prov.get(prefix)) from e


# --------------------------------------------------------------------------------------------
# dumping and help
# --------------------------------------------------------------------------------------------


def to_dict(cfg: Any) -> Any:
    """Plain YAML-safe data: dataclasses become dicts in field order, tuples and sets lists,
    paths strings, enums their values. ``load_config(cls, data=to_dict(cfg)) == cfg``."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in _fields(type(cfg))}
    if isinstance(cfg, Mapping):
        return {to_dict(k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, list | tuple | set | frozenset):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, enum.Enum):
        return to_dict(cfg.value)
    if isinstance(cfg, os.PathLike):
        return os.fspath(cfg)
    return cfg


def dump_yaml(cfg: Any, path: str | os.PathLike[str]) -> None:
    """Write the fully resolved config atomically (a run directory's ``config.yaml``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _nested_dataclass(tp: Any) -> type | None:
    """The dataclass behind ``X`` or ``X | None``, to render its keys as a section."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(arms) == 1 and dataclasses.is_dataclass(arms[0]):
            return arms[0]
    return None


def _render(value: Any) -> str:
    """A default as the user would write it in YAML (``1.0e-06``, ``[1, 2]``, ``null``)."""
    text = yaml.safe_dump(to_dict(value), default_flow_style=True, width=10**6).strip()
    return text.removesuffix("...").strip()


def config_help(cls: type, prefix: str = "", width: int = 100) -> str:
    """Every key of ``cls`` (nested sections as dotted keys) with its type, default and help."""
    lines: list[str] = []
    hints = typing.get_type_hints(cls)
    doc = (cls.__doc__ or "").strip()
    if not prefix and doc and not doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature
        lines += [doc.splitlines()[0], ""]
    for f in _fields(cls):
        key, tp = _join(prefix, f.name), hints[f.name]
        help_text = f.metadata.get("help", "")
        sub = _nested_dataclass(tp)
        if sub is not None:
            if lines and lines[-1]:
                lines.append("")
            lines.append(f"[{key}]" + (f"  {help_text}" if help_text else ""))
            lines.append(config_help(sub, key, width))
            continue
        default = _default_of(f)
        shown = "(required)" if default is dataclasses.MISSING else f"= {_render(default)}"
        lines.append(f"{key}: {type_name(tp)} {shown}")
        if help_text:
            lines.append(textwrap.fill(help_text, width, initial_indent="    ", subsequent_indent="    "))
    return "\n".join(lines)
