"""``--target`` strings -> adapters (:mod:`.adapters` defines them; the forms are listed there).

Apart from :mod:`.adapters` because ``verl:NAME`` resolves to :class:`~.verl_adapter.VerlAdapter`, which
subclasses :class:`~.adapters.Adapter`: the protocol module cannot import its verl subclass without an
import cycle.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path

from .adapters import Adapter, RegistryAdapter, SignatureAdapter


def _load_object(spec: str):
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise ValueError(f"--target {spec!r}: expected MODULE:OBJECT, FILE.py:OBJECT, m2po:NAME or verl:NAME")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise ValueError(f"--target {spec!r}: no such file {path}")
        mod_spec = importlib.util.spec_from_file_location(f"conformance_target_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        assert mod_spec.loader is not None
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"--target {spec!r}: {module_name} has no attribute {attr!r}") from None


def resolve_target(target: str) -> Adapter:
    """Turn a ``--target`` string into an adapter."""
    kind, _, rest = target.partition(":")
    if kind == "m2po" and rest:
        return RegistryAdapter(rest)
    if kind == "verl" and rest:
        from .verl_adapter import VerlAdapter

        return VerlAdapter(rest)
    obj = _load_object(target)
    if inspect.isclass(obj) and issubclass(obj, Adapter):
        obj = obj()
    if isinstance(obj, Adapter):
        return obj
    if callable(obj):
        return SignatureAdapter(obj, name=target)
    raise ValueError(f"--target {target!r}: {type(obj).__name__} is neither an Adapter nor a function")
