"""Fixtures shared across test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def verl_smoke_run(tmp_path_factory) -> Path:
    """Where the CPU mode's fit -> kill -> resume test (test_verl_cpu_mode.py) leaves its run: verl's FSDP
    checkpoints ``checkpoints/global_step_N/actor``. A later test (test_verl_eval.py) evaluates them instead
    of paying for another fit; run alone, it makes the smoke run itself. Not created here."""
    return tmp_path_factory.mktemp("verl_smoke") / "run"
