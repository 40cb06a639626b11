"""The spec files are package data: the repository's visible copies are links to them, a wheel built from
the repository carries them, and an installed package finds them without the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import m2po
from m2po.specs import SPECS, spec_path

ROOT = Path(__file__).resolve().parents[1]
#: where a reader of the repository finds each spec
VISIBLE = {
    "suites.yaml": "eval/suites.yaml",
    "sources.yaml": "data/sources.yaml",
    "paper_values.yaml": "figures/paper_values.yaml",
}


def test_the_visible_specs_are_the_packaged_files():
    package = Path(m2po.__file__).resolve().parent
    assert set(VISIBLE) == set(SPECS)
    for name, visible in VISIBLE.items():
        assert spec_path(name).resolve().parent == package / "specs"
        assert os.path.samefile(ROOT / visible, spec_path(name)), visible
    with pytest.raises(ValueError, match="no spec file"):
        spec_path("nope.yaml")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the repository's package (setuptools' own build backend, offline)."""
    src = tmp_path_factory.mktemp("src")
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "m2po", src / "m2po", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    code = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    res = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return out / res.stdout.strip().splitlines()[-1]


def test_the_wheel_carries_the_specs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"m2po/specs/{name}" for name in SPECS} <= names


def test_an_installed_package_finds_its_specs_without_the_repository(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = """
import json, m2po
from m2po.specs import spec_path
from m2po.eval.suites import load_suites
from m2po.data.spec import load_sources
from m2po.analysis.paper import paper_values
print(json.dumps({
    "package": m2po.__file__,
    "specs": [str(spec_path(n)) for n in ("suites.yaml", "sources.yaml", "paper_values.yaml")],
    "paper_suite": load_suites().expand(["paper"]),
    "datasets": sorted(load_sources().datasets),
    "tau": paper_values()["tau"],
}))
"""
    env = {**os.environ, "PYTHONPATH": str(site)}
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert Path(got["package"]).is_relative_to(site)  # the unpacked wheel, not the repository's package
    assert all(Path(p).is_relative_to(site) and Path(p).is_file() for p in got["specs"])
    # the paper's eight benchmarks (paper §6) and its tau (Algorithm 1), written out here as the oracle
    assert got["paper_suite"] == [
        "aime2024", "aime2025", "amc23", "amc24", "math500", "minerva_math", "gaokao2023en", "olympiadbench",
    ]  # fmt: skip
    assert {"math500", "aime2024"} <= set(got["datasets"]) and got["tau"] == 0.04
