"""Does every ground truth parse with math-verify? Checked at build time, reported, never fatal.

Decision (docs/data.md): a ground truth ``gt`` is parsed exactly as verl 0.9.1's
``verl.utils.reward_score.math_verify.compute_score`` parses the gold answer, i.e.
``parse("\\boxed{" + gt + "}", extraction_config=[LatexExtractionConfig()])``. math-verify
returns ``[sympy value, extracted string]`` when it understands the answer and only
``[extracted string]`` (or ``[]``) when it does not; such a ground truth can only be matched as a
literal string (``145solution:``, ``b >`` from ``b > a > c``), so it counts as *unparseable* and
is listed in the report. Not an error: the grader decides what to do with it.

Why worker processes: math-verify bounds its work with SIGALRM (main thread only) and can be
slow (a few ms per answer), so unique answers are parsed in a spawn pool (docs/architecture.md: never
threads). Identical answers are parsed once, and results are cached in ``OUT/.cache`` keyed by
the math-verify version, so a rebuild does not parse again (outputs do not depend on the cache).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from .io import write_json

__all__ = ["GT_WRAPPER", "check_ground_truths", "parses"]

#: How a ground truth is wrapped before parsing (the verl reward's own wrapping).
GT_WRAPPER = "\\boxed{...} with LatexExtractionConfig (as verl.utils.reward_score.math_verify)"

_SERIAL_BELOW = 64  # fewer unique answers than this: parse in-process (no pool start-up)
_CACHE_FORMAT = 2  # bump when what "parses" means changes


def _cache_key() -> str:
    try:
        version = metadata.version("math-verify")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"format{_CACHE_FORMAT}-math-verify-{version}"


def _load_cache(path: Path | None) -> dict[str, bool]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("key") != _cache_key() or not isinstance(data.get("results"), dict):
        return {}
    return {str(k): bool(v) for k, v in data["results"].items()}


def parses(gt: str) -> bool:
    """True when math-verify turns ``\\boxed{gt}`` into a math value, not just a string
    (any exception: False)."""
    from math_verify.parser import LatexExtractionConfig, parse

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    try:
        out = parse("\\boxed{" + gt + "}", extraction_config=[LatexExtractionConfig()])
    except Exception:  # a timeout or a parser bug is an unparseable answer, not a crash
        return False
    return any(not isinstance(x, str) for x in out)


def _parse_chunk(chunk: list[str]) -> list[bool]:
    return [parses(gt) for gt in chunk]


def check_ground_truths(
    gts: Iterable[str], workers: int | None = None, progress: bool = True, cache: Path | None = None
) -> dict[str, bool]:
    """``{ground_truth: parses}`` for every distinct non-empty ground truth (``cache``: a JSON file
    of earlier results, read and updated)."""
    wanted = {g for g in gts if g}
    known = _load_cache(cache)
    results = {g: known[g] for g in wanted if g in known}
    todo = sorted(wanted - set(results))
    if todo:
        results.update(_parse_all(todo, workers, progress))
        if cache is not None:
            write_json(cache, {"key": _cache_key(), "results": dict(sorted({**known, **results}.items()))})
    return results


def _parse_all(unique: list[str], workers: int | None, progress: bool) -> dict[str, bool]:
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    bar = tqdm(total=len(unique), desc="math-verify parse check", unit="gt", disable=not progress, leave=False)
    results: dict[str, bool] = {}
    try:
        if workers <= 1 or len(unique) < _SERIAL_BELOW:
            for gt in unique:
                results[gt] = parses(gt)
                bar.update()
            return results
        size = 8
        chunks = [unique[i : i + size] for i in range(0, len(unique), size)]
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for chunk, oks in zip(chunks, pool.map(_parse_chunk, chunks)):
                results.update(zip(chunk, oks))
                bar.update(len(chunk))
        return results
    finally:
        bar.close()
