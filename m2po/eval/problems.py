"""Benchmark problems: read the data stage's parquet (contract 1), or build a small one.

The data stage writes ``DATA/<benchmark>/test.parquet`` in verl's RL schema (``data_source``,
``prompt`` chat list, ``ability``, ``reward_model`` {style, ground_truth}, ``extra_info`` {index,
split, id, question}). The evaluation only needs the chat prompt, the ground truth and a stable
problem id, so that is all ``Problem`` keeps.

``rows_from_raw`` / ``write_parquet`` exist for tests and for evaluating before the data stage has
run (e.g. the SmolLM2 sanity run on GSM8K/MATH500 from the offline data folder, ``$M2PO_DATA_DIR``): they apply the
paper's prompt (paper App. B) the way the data stage does, but do none of its filtering.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The paper's prompt (App. B), one user message; ``{question}`` is the problem text.
PAPER_PROMPT = (
    "Please solve the following math problem: {question}. The assistant first thinks about the reasoning "
    "process step by step and then provides the user with the answer. Return the final answer in \\boxed{{}} "
    "tags, for example \\boxed{{1}}. Let's solve this step by step."
)


@dataclass(frozen=True)
class Problem:
    benchmark: str
    problem_id: str
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs: hashable, order kept
    ground_truth: str
    question: str = ""

    @property
    def chat(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


def _plain(x: Any) -> Any:
    """numpy arrays / pyarrow structs from parquet -> plain lists / dicts."""
    if hasattr(x, "tolist"):
        x = x.tolist()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def normalize_ground_truth(gt: Any) -> str:
    """A ground truth as one string: a one-element list is unwrapped, whitespace and ``$..$`` stripped."""
    gt = _plain(gt)
    if isinstance(gt, list):
        gt = gt[0] if len(gt) == 1 else ", ".join(str(g) for g in gt)
    s = "" if gt is None else str(gt)
    if isinstance(gt, float) and gt.is_integer():
        s = str(int(gt))  # AMC23 stores 27.0
    s = s.strip()
    if len(s) >= 2 and s.startswith("$") and s.endswith("$"):
        s = s.strip("$").strip()
    return s


def find_benchmark_file(data_dir: str | os.PathLike[str], name: str, aliases: Iterable[str] = ()) -> Path:
    """``DATA/<name or alias>/test.parquet`` (or ``DATA/<name>.parquet``); error lists what was tried."""
    d = Path(data_dir)
    tried = []
    for n in (name, *aliases):
        for cand in (d / n / "test.parquet", d / f"{n}.parquet"):
            tried.append(cand)
            if cand.exists():
                return cand
    raise FileNotFoundError(
        f"no parquet for benchmark {name!r}; tried {[str(t) for t in tried]}. Build it with `m2po data build`."
    )


def load_problems(path: str | os.PathLike[str], benchmark: str, limit: int | None = None) -> list[Problem]:
    """Problems of one benchmark parquet, in file order; the first ``limit`` only when given."""
    import pandas as pd

    df = pd.read_parquet(path)
    missing = {"prompt", "reward_model"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)} (expected verl's RL schema, contract 1)")
    out: list[Problem] = []
    seen: set[str] = set()
    for i, row in enumerate(df.itertuples(index=False)):
        if limit is not None and len(out) >= limit:
            break
        prompt = _plain(row.prompt)
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        rm = _plain(row.reward_model) or {}
        extra = _plain(getattr(row, "extra_info", None)) or {}
        pid = str(extra.get("id") if extra.get("id") not in (None, "") else extra.get("index", i))
        if pid in seen:  # ids must key the cache: make repeats (e.g. aime2024x4 copies) distinct
            pid = f"{pid}#{i}"
        seen.add(pid)
        out.append(
            Problem(
                benchmark=benchmark,
                problem_id=pid,
                messages=tuple((str(m["role"]), str(m["content"])) for m in prompt),
                ground_truth=normalize_ground_truth(rm.get("ground_truth")),
                question=str(extra.get("question", "")),
            )
        )
    return out


def make_row(
    benchmark: str, index: int, question: str, answer: str, pid: str | None = None, template: str = PAPER_PROMPT
) -> dict[str, Any]:
    """One row of verl's RL schema with the paper's prompt."""
    return {
        "data_source": benchmark,
        "prompt": [{"role": "user", "content": template.format(question=question)}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"index": index, "split": "test", "id": pid or f"{benchmark}-{index}", "question": question},
    }


def _gsm8k_answer(ans: str) -> str:
    return ans.split("####")[-1].strip().replace(",", "")


def rows_from_raw(path: str | os.PathLike[str], benchmark: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Schema rows from a raw benchmark JSONL (question/problem -> answer; GSM8K's "#### N" handled)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            q = d.get("problem") or d.get("question")
            a = d.get("answer", d.get("final_answer"))
            if benchmark == "gsm8k":
                a = _gsm8k_answer(str(a))
            rows.append(make_row(benchmark, len(rows), str(q), normalize_ground_truth(a), pid=d.get("unique_id")))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def write_parquet(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    import pandas as pd

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(p, index=False)
    return p


def slug(text: str) -> str:
    """A filesystem-safe name (model ids, benchmark names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"
