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
string (YAML 1.1 floats need a dot). Type names and coercion live in :mod:`m2po.config_types`.

A command-line tool declares its settings the same way and derives its flags from the fields with
:func:`add_config_arguments`, as TRL's ``HfArgumentParser`` does (``m2po eval``: :mod:`m2po.eval.eval_config`).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import enum
import os
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .config_types import (
    ConfigError,
    build_dataclass,
    coerce_kwargs,
    field_default,
    init_fields,
    join_key,
    nested_dataclass,
    type_name,
)
from .fileio import atomic_write_text

__all__ = [
    "ConfigError",
    "add_config_arguments",
    "coerce_kwargs",
    "config_flag",
    "config_from_args",
    "config_help",
    "dump_yaml",
    "load_config",
    "option",
    "to_dict",
    "type_name",
    "validate_config",
]

T = TypeVar("T")
_MUTABLE = (list, dict, set)


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


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def _deep_merge(base: dict[str, Any], new: Mapping[str, Any], prefix: str, origin: str, prov: dict[str, str]) -> None:
    """Merge ``new`` into ``base`` in place; record ``origin`` for every leaf it sets."""
    for k, v in new.items():
        dotted = join_key(prefix, str(k))
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v, dotted, origin, prov)
        else:
            base[k] = copy.deepcopy(dict(v)) if isinstance(v, Mapping) else v
            _mark(v, dotted, origin, prov)


def _mark(v: Any, dotted: str, origin: str, prov: dict[str, str]) -> None:
    prov[dotted] = origin
    if isinstance(v, Mapping):
        for k, sub in v.items():
            _mark(sub, join_key(dotted, str(k)), origin, prov)


def _check_section_path(cls: type, parts: list[str], origin: str) -> None:
    """``name.x=1`` where ``name`` is a plain value: say so, rather than a confusing type error."""
    tp: Any = cls
    for i, part in enumerate(parts[:-1]):
        sub = nested_dataclass(tp)
        if sub is None:
            return  # a dict-typed field takes any sub-key; a wrong type is reported by build_dataclass
        hint = typing.get_type_hints(sub).get(part)
        if hint is None:
            return  # unknown key: build_dataclass reports it with the valid keys
        if nested_dataclass(hint) is None and typing.get_origin(hint) not in (dict, Mapping) and hint is not dict:
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
    for f in init_fields(cls):
        key = join_key(prefix, f.name)
        sub = nested_dataclass(hints[f.name])
        if sub is not None:
            out.update(dotted_keys(sub, key))
        else:
            out[key] = field_default(f)
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
    cfg = build_dataclass(cls, raw, "", None, prov)
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
            validate_config(item, join_key(prefix, str(k)), prov)
        return
    if not (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)):
        return
    for f in init_fields(type(cfg)):
        validate_config(getattr(cfg, f.name), join_key(prefix, f.name), prov)
    hook = getattr(cfg, "validate", None)
    if not callable(hook):
        return
    try:
        hook()
    except ConfigError as e:
        full = join_key(prefix, e.key)
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
        return {f.name: to_dict(getattr(cfg, f.name)) for f in init_fields(type(cfg))}
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
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))


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
    for f in init_fields(cls):
        key, tp = join_key(prefix, f.name), hints[f.name]
        help_text = f.metadata.get("help", "")
        sub = nested_dataclass(tp)
        if sub is not None:
            if lines and lines[-1]:
                lines.append("")
            lines.append(f"[{key}]" + (f"  {help_text}" if help_text else ""))
            lines.append(config_help(sub, key, width))
            continue
        default = field_default(f)
        shown = "(required)" if default is dataclasses.MISSING else f"= {_render(default)}"
        lines.append(f"{key}: {type_name(tp)} {shown}")
        if help_text:
            lines.append(textwrap.fill(help_text, width, initial_indent="    ", subsequent_indent="    "))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# command-line flags derived from the fields (as TRL's HfArgumentParser does)
# --------------------------------------------------------------------------------------------


def config_flag(f: dataclasses.Field) -> str:
    """The flag of field ``f``: ``metadata["flag"]``, else ``--`` and its name with dashes
    (``--no-name`` for a ``bool`` that defaults to true)."""
    if "flag" in f.metadata:
        return f.metadata["flag"]
    prefix = "--no-" if f.default is True else "--"
    return prefix + f.name.replace("_", "-")


def add_config_arguments(
    parser: argparse.ArgumentParser, cls: type, names: Sequence[str], **changes: dict[str, Any]
) -> None:
    """Add the flags of fields ``names`` of ``cls`` to ``parser``, derived from each field: the flag
    (:func:`config_flag`), the ``option`` help, the type and choices from the annotation (``X | None``
    -> X, ``Literal`` -> its choices, ``list[X]`` -> one or more X) and the default (none: required);
    a ``bool`` defaulting to true becomes ``--no-name``. The value lands under the field's name.
    ``changes[name]`` replaces argparse keywords of one flag (another default, ``required=False``)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in init_fields(cls)}
    for name in names:
        f = fields[name]
        tp, default = hints[name], field_default(f)
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        kw: dict[str, Any] = {"dest": name, "help": f.metadata.get("help", "")}
        if tp is bool:
            kw["action"] = "store_false" if default is True else "store_true"
        elif typing.get_origin(tp) is typing.Literal:
            kw.update(choices=typing.get_args(tp), default=default)
        elif typing.get_origin(tp) is list:
            kw.update(nargs="+", type=typing.get_args(tp)[0], default=default)
        elif tp in (int, float, str, Path):
            kw.update(type=tp, default=default)
        else:
            raise TypeError(f"{cls.__name__}.{name}: no command-line flag for a {type_name(tp)} field")
        if kw.get("default") is dataclasses.MISSING:
            kw.update(required=True, default=None)
        kw.update(changes.get(name, {}))
        parser.add_argument(config_flag(f), **kw)


def config_from_args(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """``cls`` from the flags :func:`add_config_arguments` added (``values`` set the others or replace them)."""
    parsed = {f.name: getattr(args, f.name) for f in init_fields(cls) if hasattr(args, f.name)}
    return cls(**{**parsed, **values})
