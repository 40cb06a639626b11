"""Build what a run trains on from its config: the policy, the problems, the reward (a :class:`RunSetup`).

One builder per model kind (``model.kind``), looked up in :data:`RUN_BUILDERS`: the tiny transformer
on the arithmetic task here, a Hugging Face model in ``hf_run.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from .hf_run import build_hf_run
from .model import MODEL_SIZES, TinyTransformer
from .policy import TinyPolicy
from .run_setup import RunSetup
from .sft import load_checkpoint, load_warm_start, sft_preset, warm_start
from .task import arithmetic_run_data
from .train_config import TrainConfig


def build_tiny_run(cfg: TrainConfig) -> RunSetup:
    """The tiny transformer (warm-started or seeded random init) on the arithmetic task of ``cfg.task``."""
    task = cfg.task.arithmetic_task()
    train, test, reward, entries = arithmetic_run_data(task)
    manifest: dict[str, Any] = {"engine": "tiny", **entries, "device": "cpu"}
    if cfg.warm_start.enabled:
        sft = sft_preset(cfg.model.size, task)
        overrides = {
            k: v
            for k, v in (("steps", cfg.warm_start.steps), ("corrupt_frac", cfg.warm_start.corrupt_frac))
            if v is not None
        }
        sft = dataclasses.replace(sft, **overrides)
        path = warm_start(sft, task, cfg.warm_start.resolved_cache_dir(), progress=cfg.run.progress)
        model = load_warm_start(path)
        manifest["warm_start"] = {"path": str(path), "metrics": load_checkpoint(path)["metrics"]}
    else:
        torch.manual_seed(cfg.run.seed)
        model = TinyTransformer(MODEL_SIZES[cfg.model.size])
    model.train()
    manifest["model"] = {"kind": "tiny", "size": cfg.model.size, "parameters": model.num_parameters()}
    return RunSetup(TinyPolicy(model), train, test, reward, "tiny_arith", manifest)


#: ``model.kind`` -> the builder of its run.
RUN_BUILDERS: dict[str, Callable[[TrainConfig], RunSetup]] = {"tiny": build_tiny_run, "hf": build_hf_run}


def build_run(cfg: TrainConfig) -> RunSetup:
    """The :class:`RunSetup` of ``cfg``, from the builder of its ``model.kind``."""
    return RUN_BUILDERS[cfg.model.kind](cfg)
