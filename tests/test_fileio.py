"""One atomic write (``m2po.fileio.atomic_write``): the config and the staleness queue go through it, so
their files get the permissions ``open`` would give (umask-respecting, not ``mkstemp``'s 0600) and are
fsynced; and no other code in ``m2po`` renames a temporary file into place."""

from __future__ import annotations

import ast
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

import m2po
from m2po.config import dump_yaml, option
from m2po.staleness import StaleQueue

PACKAGE = Path(m2po.__file__).resolve().parent

#: the calls that write a temporary file or move one under its final name (an append-only log's ``fsync``
#: is no atomic write, so it is not one of them)
WRITE_PRIMITIVES = {
    ("os", "replace"),
    ("os", "rename"),
    ("shutil", "move"),
    ("tempfile", "mkstemp"),
    ("tempfile", "NamedTemporaryFile"),
}
#: (module, function) allowed to use them: the atomic write itself, the data build's commit, which moves
#: whole staged dataset *folders* into place (each file in them was written by atomic_write), and the verl
#: launcher's rotation of a finished metrics log to a free name (a move of a complete file, nothing written)
ALLOWED = {
    ("m2po/fileio.py", "atomic_write"),
    ("m2po/data/build.py", "_commit"),
    ("m2po/verl_plugin/launch_common.py", "rotate_metrics"),
}
#: ``Path.rename(target)`` / ``Path.replace(target)``: told apart from ``str.replace(a, b)``, ``DataFrame.rename(
#: columns=...)`` and ``dataclasses.replace(obj, **changes)`` by their one positional argument and no keyword
PATH_MOVES = {"rename", "replace"}


@dataclass
class _Cfg:
    lr: float = option(1e-6, "learning rate")
    name: str = option("x", "a name")


@pytest.fixture
def umask():
    """Set a umask for one test, and put the previous one back."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


@pytest.fixture
def fsynced(monkeypatch):
    """The inodes ``os.fsync`` was called on (the real fsync still runs)."""
    seen: list[int] = []
    real = os.fsync

    def spy(fd: int) -> None:
        seen.append(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_config_file_gets_umask_permissions_and_is_fsynced(tmp_path, umask, fsynced, mask, mode):
    umask(mask)
    path = tmp_path / "run" / "config.yaml"
    dump_yaml(_Cfg(lr=0.5), path)
    assert stat.S_IMODE(path.stat().st_mode) == mode  # what open(path, "w") would give under this umask
    assert path.stat().st_ino in fsynced  # the file now under the final name was fsynced
    assert yaml.safe_load(path.read_text()) == {"lr": 0.5, "name": "x"}
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary file left


def test_staleness_queue_file_gets_umask_permissions_and_is_fsynced(tmp_path, umask, fsynced):
    umask(0o022)
    q = StaleQueue()
    for v in range(3):
        q.push({"x": torch.full((2,), float(v))}, policy_version=v)
    path = tmp_path / "queue.pt"
    q.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.stat().st_ino in fsynced
    back = StaleQueue()
    back.load(path)
    assert [back.pop()[1] for _ in range(3)] == [0, 1, 2]


def _primitive_calls(tree: ast.Module) -> list[tuple[str, str, int]]:
    """(enclosing function, primitive, line) of every call of a WRITE_PRIMITIVES function, however imported."""
    aliases = {}  # a name bound by ``from os import replace`` -> ("os", "replace")
    modules = {m: m for m, _ in WRITE_PRIMITIVES} | {"dataclasses": "dataclasses"}  # the name a module is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in {m for m, _ in WRITE_PRIMITIVES}:
            for a in node.names:
                if (node.module, a.name) in WRITE_PRIMITIVES:
                    aliases[a.asname or a.name] = (node.module, a.name)
        elif isinstance(node, ast.Import):  # ``import os as _os``
            modules |= {a.asname: a.name for a in node.names if a.asname and a.name in modules}
    found: list[tuple[str, str, int]] = []

    def visit(node: ast.AST, func: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else func
            if isinstance(child, ast.Call):
                f = child.func
                key = None
                if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in modules:
                    module = modules[f.value.id]
                    key = (module, f.attr) if (module, f.attr) in WRITE_PRIMITIVES else None
                elif isinstance(f, ast.Attribute) and f.attr in PATH_MOVES:
                    one_target = len(child.args) == 1 and not child.keywords
                    key = ("pathlib", f.attr) if one_target else None
                elif isinstance(f, ast.Name):
                    key = aliases.get(f.id)
                if key:
                    found.append((func, ".".join(key), child.lineno))
            visit(child, name)

    visit(tree, "<module>")
    return found


def test_atomic_write_is_the_only_code_that_moves_a_file_into_place():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        for func, call, line in _primitive_calls(ast.parse(path.read_text(), str(path))):
            if (rel, func) not in ALLOWED:
                offenders.append(f"{rel}:{line} {func}() calls {call}")
    assert not offenders, "write through m2po.fileio.atomic_write instead:\n" + "\n".join(offenders)


def test_the_scan_finds_what_it_looks_for():
    """The scanner's own oracle: hand-written code with each way of calling a primitive."""
    code = (
        "import os, tempfile\nfrom os import replace as mv\n"
        "def a():\n    os.replace('x', 'y')\n"
        "def b():\n    mv('x', 'y')\n"
        "class C:\n    def c(self):\n        tempfile.mkstemp()\n"
        "def d():\n    'x'.replace('a', 'b')\n    df.rename(columns={})\n    dataclasses.replace(c, lr=1)\n"
        "def e(p):\n    p.rename(p.with_suffix('.old'))\n    Path('t').replace('x')\n"
        "import os as _os\ndef f():\n    _os.rename('a', 'b')\n"
    )
    assert _primitive_calls(ast.parse(code)) == [
        ("a", "os.replace", 4),
        ("b", "os.replace", 6),
        ("c", "tempfile.mkstemp", 9),
        ("e", "pathlib.rename", 15),
        ("e", "pathlib.replace", 16),
        ("f", "os.rename", 19),
    ]
