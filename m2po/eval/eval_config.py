"""The settings of one evaluation (:class:`EvalConfig`) and of its generation engine (:class:`BackendOptions`).

Declared once with :func:`m2po.config.option`; the flags of ``m2po eval`` and ``m2po eval-run`` are
derived from these fields (:func:`m2po.config.add_config_arguments`), so a field, its flag, its type
and its help cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import option

__all__ = ["BackendOptions", "EvalConfig"]

Backend = Literal["hf", "vllm", "tiny"]
Extraction = Literal["boxed", "math_verify", "raw", "tiny"]


@dataclass(kw_only=True)
class EvalConfig:
    """One ``m2po eval`` run: which model, which benchmarks, how to sample and how to grade."""

    model: str = option(help="model dir / .gguf (hf, vllm), checkpoint .pt or tiny:<size>[:<seed>]")
    backend: Backend = option(help="generation engine")
    benchmarks: list[str] = option(["paper"], "benchmark or suite names (paper, all, smoke)")
    data_dir: Path = option(
        help="directory with <benchmark>/test.parquet (`m2po data build`)", metadata={"flag": "--data"}
    )
    out_dir: Path = option(help="output directory (also the resumable cache)", metadata={"flag": "--out"})
    k: int | None = option(None, "samples per problem for every benchmark (default: suite's)")
    limit: int | None = option(None, "first N problems of each benchmark")
    temperature: float | None = option(None, "default: suite protocol (1.0)")
    top_p: float | None = option(None, "default: suite protocol (1.0; released code: 0.7)")
    max_new_tokens: int | None = option(None, "default: suite protocol (2560)")
    seed: int | None = option(None, "default: suite protocol (0)")
    extraction: Extraction = option(
        "boxed",
        "answer extraction: last \\boxed{} (default), math-verify's own, raw (the whole response), "
        "tiny (the tiny task's final answer; the tiny backend's default)",
    )
    workers: int = option(0, "grading worker processes (default: one per core)")
    timeout_s: float = option(
        10.0, "hard wall-clock grading timeout per sample, seconds", metadata={"flag": "--timeout"}
    )
    batch_problems: int = option(8, "prompts per generation batch (resume granularity)")
    model_id: str = option("", "name recorded in the records (default: the model's file name)")
    update: int | None = option(None, "optimizer update of this checkpoint (summary column)")
    suites_path: str | None = option(
        None, "suite spec YAML (default: the packaged eval/suites.yaml)", metadata={"flag": "--suites"}
    )
    n_boot: int = option(2000, "bootstrap resamples of the summary's confidence intervals")
    backend_kwargs: dict[str, Any] = option({}, "keyword arguments of the backend (from BackendOptions)")
    memo_dir: Path | None = option(
        None,
        "folder of the verdict memo shared across evaluations (default: OUT/cache/verdicts; docs/eval.md)",
        metadata={"flag": "--memo"},
    )
    progress: bool = option(True, "tqdm progress bars (--no-progress: none)")


@dataclass(kw_only=True)
class BackendOptions:
    """Options of one generation engine; :meth:`kwargs` keeps those of the chosen backend."""

    batch_size: int = option(8, "hf: sequences per model.generate call")
    device: str = option("cpu", "hf: torch device")
    threads: int = option(1, "hf on CPU: torch threads while generating (0: torch's)")
    dtype: str = option("float32", "hf: torch dtype; vllm: dtype (default bfloat16 there)")
    tensor_parallel_size: int = option(1, "vllm: GPUs per model")
    max_model_len: int | None = option(None, "vllm: context length (default: the model's)")

    def kwargs(self, backend: str) -> dict[str, Any]:
        """The keyword arguments of ``make_backend(backend, ...)``: vllm gets ``max_model_len`` only when
        set and ``dtype`` only when not the hf default (vllm's own default is bfloat16)."""
        if backend == "hf":
            return {"batch_size": self.batch_size, "device": self.device, "dtype": self.dtype, "threads": self.threads}
        if backend == "vllm":
            out: dict[str, Any] = {"tensor_parallel_size": self.tensor_parallel_size}
            if self.max_model_len:
                out["max_model_len"] = self.max_model_len
            if self.dtype != "float32":
                out["dtype"] = self.dtype
            return out
        return {}
