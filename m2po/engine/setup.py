"""Build what a run trains on from its config: the policy, the problems, the reward."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .model import MODEL_SIZES, TinyTransformer
from .policy import Policy, TinyPolicy
from .sft import load_checkpoint, load_warm_start, sft_preset, warm_start
from .task import ArithmeticTask, generate_problems, reward_function
from .train_config import TrainConfig


@dataclass
class RunSetup:
    policy: Policy
    train_problems: list[dict[str, str]]
    eval_problems: list[dict[str, str]]
    reward: Callable[[str, str], float]
    benchmark: str
    manifest: dict[str, Any] = field(default_factory=dict)


def tiny_task(cfg: TrainConfig) -> ArithmeticTask:
    return cfg.task.arithmetic_task()


def build_run(cfg: TrainConfig) -> RunSetup:
    if cfg.model.kind == "hf":
        from .hf_policy import build_hf_run

        return build_hf_run(cfg)
    task = tiny_task(cfg)
    train, test = generate_problems(task)
    manifest: dict[str, Any] = {
        "engine": "tiny",
        "task": dataclasses.asdict(task),
        "data": {"source": "tiny_arith", "is_fallback": False},
        "device": "cpu",
    }
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
    return RunSetup(TinyPolicy(model), train, test, reward_function(task), "tiny_arith", manifest)
