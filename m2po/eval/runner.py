"""Generate -> grade -> records -> metrics, resumable at the granularity of one sample.

Layout of ``out_dir`` (everything derived is rebuilt on each run; only ``cache/`` accumulates):
- ``cache/<benchmark>/gen-<genkey>.jsonl``: one line per generated sample. ``genkey`` hashes the model
  fingerprint, backend and sampling settings, so another model or temperature never reuses it;
  ``k`` is *not* in the key, so raising k from 4 to 16 reuses the first 4 samples.
- ``cache/<benchmark>/grade-<genkey>-<gradekey>.jsonl``: one line per graded sample; ``gradekey``
  hashes the grader's provenance (math-verify version, extraction, timeouts), so regrading with other
  settings never regenerates.
- ``samples/<benchmark>.jsonl``: the per-sample records of contract 4 (written atomically at the end).
- ``summary.csv``, ``summary.md``, ``pass_at_k.csv``, ``run.json`` (settings, provenance, counts).

With ``memo_dir`` set (:mod:`m2po.eval.memo`), a sample whose answer is a string extraction is looked up
by (extracted answer, ground truth) first, and only unseen pairs go to the grading pool; a sample
without an extractable answer is ``no_answer`` without a worker. Its grade record says ``memo: true``.

A record is reused only if it matches the current problem (prompt hash for generations; ground truth
and response hash for grades). Work is done in batches of ``batch_problems`` prompts: generate, append
each sample, then grade every generated-but-ungraded sample and append each verdict; so a SIGKILL
loses at most the batch being generated or the grades in flight, and a rerun redoes only those.
The model is loaded only if something is left to generate.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import UserError, check_writable
from ..fileio import atomic_write_text
from ..grader import GRADER_NAME, STRING_EXTRACTION, GradeResult, grader_version
from .backends import Backend, GenParams, GenRequest, make_backend
from .eval_config import EvalConfig
from .memo import MEMO_STATUSES, VerdictMemo, known_verdict
from .pool import GradeTask, GradingPool, default_workers, soft_timeout_for
from .problems import Problem, find_benchmark_file, load_problems, slug
from .report import summaries_from_records, write_tables
from .store import JsonlShard, read_jsonl, write_jsonl_atomic
from .suites import SuiteSpec, load_suites

__all__ = ["EvalConfig", "Evaluation", "evaluate"]


def _sha(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=True).encode()).hexdigest()[:n]


def _derive_seed(seed: int, benchmark: str, problem_id: str, first_idx: int) -> int:
    return int(_sha([seed, benchmark, problem_id, first_idx], 8), 16)


class Evaluation:
    """One ``m2po eval`` invocation; ``run()`` returns the summary rows."""

    def __init__(self, cfg: EvalConfig, spec: SuiteSpec | None = None) -> None:
        if cfg.k is not None and cfg.k < 1:
            raise UserError(f"k must be >= 1, got {cfg.k}", "--k", "e.g. --k 4, or leave it out for the suite's k")
        self.cfg = cfg
        self.spec = spec or load_suites(cfg.suites_path)
        p = self.spec.protocol
        self.params = GenParams(
            temperature=p.temperature if cfg.temperature is None else cfg.temperature,
            top_p=p.top_p if cfg.top_p is None else cfg.top_p,
            max_new_tokens=p.max_new_tokens if cfg.max_new_tokens is None else cfg.max_new_tokens,
        )
        self.seed = p.seed if cfg.seed is None else cfg.seed
        self.run_id = uuid.uuid4().hex[:12]
        self.grader = {
            "grader": GRADER_NAME,
            "grader_version": grader_version(),
            "extraction": cfg.extraction,
            "timeout_s": float(cfg.timeout_s),
        }
        self._backend: Backend | None = None
        self._pool: GradingPool | None = None
        self.memo: VerdictMemo | None = None
        if cfg.memo_dir is not None and cfg.extraction in STRING_EXTRACTION:
            self.memo = VerdictMemo(cfg.memo_dir, {**self.grader, "soft_timeout_s": soft_timeout_for(cfg.timeout_s)})
        self.counts: dict[str, dict[str, int]] = {}
        #: after ``run()``: the graded sample records and the pass@k curves, by benchmark
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.curves: dict[str, dict[int, float]] = {}
        #: wall seconds per benchmark spent generating (model load included) and grading (pool start-up included)
        self.seconds: dict[str, dict[str, float]] = {}

    # -- lazily built resources --------------------------------------------------------------------------
    def backend(self) -> Backend:
        if self._backend is None:
            kwargs = dict(self.cfg.backend_kwargs)
            if self.cfg.backend == "hf":
                kwargs.setdefault("tokenizer_cache", self.cfg.out_dir / ".tokenizer_cache")
            self._backend = make_backend(self.cfg.backend, self.cfg.model, **kwargs)
        return self._backend

    def pool(self) -> GradingPool:
        if self._pool is None:
            self._pool = GradingPool(
                workers=self.cfg.workers or default_workers(),
                timeout_s=self.cfg.timeout_s,
                extraction=self.cfg.extraction,
            )
            self._pool.start()
        return self._pool

    def model_fingerprint(self) -> str:
        """Cheap fingerprint without loading the model (so a fully cached rerun never loads it)."""
        m = self.cfg.model
        if self.cfg.backend == "tiny" and m.startswith("tiny:"):
            from .backends.tiny import load_tiny_model

            return load_tiny_model(m)[1]
        from .backends.base import fingerprint
        from .backends.hf import resolve_model_path

        if self.cfg.backend == "hf":
            d, g = resolve_model_path(m, self.cfg.backend_kwargs.get("gguf_file"))
            return fingerprint(d / g if g else d)
        try:
            return fingerprint(m)
        except OSError:
            return slug(m)

    def benchmark_files(self) -> dict[str, Path]:
        """The parquet file of every requested benchmark; a :class:`UserError` for a name that has none."""
        files: dict[str, Path] = {}
        for name in self.spec.expand(self.cfg.benchmarks):
            try:
                files[name] = find_benchmark_file(self.cfg.data_dir, name, self.spec.resolve(name).aliases)
            except FileNotFoundError:
                data = Path(self.cfg.data_dir)
                present = sorted(d.name for d in data.iterdir() if d.is_dir()) if data.is_dir() else []
                known = [*self.spec.suites, *self.spec.benchmarks, *present]
                close = difflib.get_close_matches(name, known, n=1)
                if close:
                    fix = f"did you mean {close[0]!r}?"
                elif name in self.spec.benchmarks:
                    fix = f"build it with `m2po data build --datasets {name} --out {data}`"
                else:
                    fix = f"choose from {', '.join(known)}"
                raise UserError(f"no data for benchmark {name!r}", data / name / "test.parquet", fix) from None
        return files

    # -- the run -----------------------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        out = Path(cfg.out_dir)
        files = self.benchmark_files()  # everything that can be checked is, before out_dir exists
        check_writable(out, "make it writable or choose another --out")
        try:
            self.fp = self.model_fingerprint()
        except FileNotFoundError as e:
            raise UserError(
                "no such model", cfg.model, "give a model folder, a .gguf file, a checkpoint .pt or tiny:<size>"
            ) from e
        except ValueError as e:
            raise UserError(str(e), cfg.model, "check --model") from e
        out.mkdir(parents=True, exist_ok=True)
        self.model_id = cfg.model_id or (Path(cfg.model).name if not cfg.model.startswith("tiny:") else cfg.model)
        self.genkey = _sha([self.fp, cfg.backend, self.params.to_dict(), self.seed])
        self.gradekey = _sha(self.grader)
        records: dict[str, list[dict[str, Any]]] = {}
        ks: dict[str, int] = {}
        try:
            for name, path in files.items():
                ks[name] = self.spec.resolve(name).k if cfg.k is None else cfg.k
                problems = load_problems(path, name, cfg.limit)
                records[name] = self._run_benchmark(name, problems, ks[name], out)
                write_jsonl_atomic(out / "samples" / f"{slug(name)}.jsonl", records[name])
        finally:
            if self._pool is not None:
                self._pool.close()
            if self.memo is not None:
                self.memo.close()
        rows, curves = summaries_from_records(records, ks, self.spec, cfg.update, cfg.n_boot, self.seed)
        self.records, self.curves = records, curves  # what the pipeline's stage tabulates (m2po.eval.stage)
        write_tables(out, rows, curves, self.spec, title=f"{self.model_id} ({cfg.backend})")
        self._write_run_json(out, rows, ks)
        return rows

    def _run_benchmark(self, name: str, problems: list[Problem], k: int, out: Path) -> list[dict[str, Any]]:
        cache = out / "cache" / slug(name)
        gen_path = cache / f"gen-{self.genkey}.jsonl"
        grade_path = cache / f"grade-{self.genkey}-{self.gradekey}.jsonl"
        by_id = {p.problem_id: p for p in problems}
        prompt_sha = {p.problem_id: _sha(p.chat) for p in problems}
        gens: dict[tuple[str, int], dict[str, Any]] = {}
        for r in read_jsonl(gen_path):
            key = (str(r["problem_id"]), int(r["sample_idx"]))
            if key[0] in by_id and r.get("prompt_sha") == prompt_sha[key[0]]:
                gens[key] = r
        grades: dict[tuple[str, int], dict[str, Any]] = {}
        for r in read_jsonl(grade_path):
            key = (str(r["problem_id"]), int(r["sample_idx"]))
            g = gens.get(key)
            if (
                g
                and r.get("ground_truth") == by_id[key[0]].ground_truth
                and r.get("response_sha") == _sha(g["response"])
            ):
                grades[key] = r
        counts = {
            "cached_generations": len(gens),
            "cached_grades": len(grades),
            "generated": 0,
            "graded": 0,  # new verdicts: by the pool, from the memo, or no_answer
            "graded_by_pool": 0,
        }
        self.counts[name] = counts
        seconds = self.seconds.setdefault(name, {"generate": 0.0, "grade": 0.0})
        todo = [(p, [i for i in range(k) if (p.problem_id, i) not in gens]) for p in problems]
        todo = [(p, idx) for p, idx in todo if idx]
        n_gen = sum(len(idx) for _, idx in todo)
        with JsonlShard(gen_path) as gen_shard, JsonlShard(grade_path) as grade_shard:
            bar = tqdm(total=n_gen, desc=f"{name}: generate", unit="sample", disable=not self.cfg.progress)
            t = time.perf_counter()
            self._grade_pending(name, by_id, gens, grades, grade_shard, counts)
            seconds["grade"] += time.perf_counter() - t
            for lo in range(0, len(todo), max(1, self.cfg.batch_problems)):
                batch = todo[lo : lo + self.cfg.batch_problems]
                reqs = [
                    GenRequest(p.chat, len(idx), _derive_seed(self.seed, name, p.problem_id, idx[0]))
                    for p, idx in batch
                ]
                t = time.perf_counter()
                outs = self.backend().generate(reqs, self.params)
                seconds["generate"] += time.perf_counter() - t
                for (p, idx), texts, req in zip(batch, outs, reqs):
                    if len(texts) != len(idx):
                        raise RuntimeError(
                            f"backend returned {len(texts)} samples for {p.problem_id}, asked {len(idx)}"
                        )
                    for i, text in zip(idx, texts):
                        rec = {
                            "model": self.model_id,
                            "problem_id": p.problem_id,
                            "sample_idx": i,
                            "response": text,
                            "prompt_sha": prompt_sha[p.problem_id],
                            "seed": req.seed,
                            "run_id": self.run_id,
                            "t": time.time(),
                        }
                        gen_shard.append(rec)
                        gens[(p.problem_id, i)] = rec
                        counts["generated"] += 1
                bar.update(sum(len(idx) for _, idx in batch))
                t = time.perf_counter()
                self._grade_pending(name, by_id, gens, grades, grade_shard, counts)
                seconds["grade"] += time.perf_counter() - t
            bar.close()
        return [self._record(name, by_id[pid], gens[(pid, i)], grades[(pid, i)]) for pid in by_id for i in range(k)]

    def _grade_pending(
        self,
        name: str,
        by_id: dict[str, Problem],
        gens: dict[tuple[str, int], dict[str, Any]],
        grades: dict[tuple[str, int], dict[str, Any]],
        shard: JsonlShard,
        counts: dict[str, int],
    ) -> None:
        pending = [key for key in gens if key not in grades]
        if not pending:
            return
        tasks: list[GradeTask] = []
        twins: dict[Any, list[GradeTask]] = {}  # a memo miss graded once, its twins (same pair) reuse the verdict
        first_of: dict[tuple[str, str], GradeTask] = {}
        for key in pending:
            task = GradeTask(key, gens[key]["response"], by_id[key[0]].ground_truth)
            known, pair = (None, None) if self.memo is None else known_verdict(self.memo, task, self.cfg.extraction)
            if known is not None:
                self._keep_grade(task, known, shard, grades, counts, from_memo=True)
            elif pair is not None and pair in first_of:
                twins[first_of[pair].key].append(task)
            else:
                tasks.append(task)
                if pair is not None:
                    first_of[pair], twins[key] = task, []
        again: list[GradeTask] = []
        bar = tqdm(total=len(tasks), desc=f"{name}: grade", unit="sample", leave=False, disable=not self.cfg.progress)
        for task, res in self.pool().imap(tasks) if tasks else ():
            self._keep_grade(task, res, shard, grades, counts, from_memo=False)
            counts["graded_by_pool"] += 1
            if res.status in MEMO_STATUSES:
                if self.memo is not None and res.extracted is not None:
                    self.memo.put(res.extracted, task.ground_truth, res.status)
                for twin in twins.get(task.key, []):
                    self._keep_grade(twin, res, shard, grades, counts, from_memo=True)
            else:  # a timeout or an error says nothing about the pair: its twins are graded on their own
                again += twins.get(task.key, [])
            bar.update(1)
        for task, res in self.pool().imap(again) if again else ():
            self._keep_grade(task, res, shard, grades, counts, from_memo=False)
            counts["graded_by_pool"] += 1
        bar.close()

    def _keep_grade(
        self,
        task: GradeTask,
        res: GradeResult,
        shard: JsonlShard,
        grades: dict[tuple[str, int], dict[str, Any]],
        counts: dict[str, int],
        from_memo: bool,
    ) -> None:
        pid, i = task.key
        rec = {
            "problem_id": pid,
            "sample_idx": i,
            "status": res.status,
            "correct": res.correct,
            "extracted": res.extracted,
            "detail": res.detail,
            "ground_truth": task.ground_truth,
            "response_sha": _sha(task.response),
            **self.grader,
            "memo": from_memo,
            "run_id": self.run_id,
            "t": time.time(),
        }
        shard.append(rec)
        grades[task.key] = rec
        counts["graded"] += 1

    def _record(self, name: str, p: Problem, gen: dict[str, Any], grade: dict[str, Any]) -> dict[str, Any]:
        """The per-sample record of contract 4 (plus model, ground truth and provenance details)."""
        return {
            "benchmark": name,
            "problem_id": p.problem_id,
            "sample_idx": gen["sample_idx"],
            "response": gen["response"],
            "extracted": grade["extracted"],
            "status": grade["status"],
            "correct": bool(grade["correct"]),
            "grader": grade["grader"],
            "grader_version": grade["grader_version"],
            "timeout_s": grade["timeout_s"],
            "extraction": grade["extraction"],
            "detail": grade.get("detail", ""),
            "ground_truth": p.ground_truth,
            "model": self.model_id,
            "model_fingerprint": self.fp,
            "update": self.cfg.update,
            "generated_by_run": gen.get("run_id"),
            "graded_by_run": grade.get("run_id"),
        }

    def _write_run_json(self, out: Path, rows: list[dict[str, Any]], ks: dict[str, int]) -> None:
        cfg = asdict(self.cfg)
        cfg["data_dir"], cfg["out_dir"] = str(self.cfg.data_dir), str(self.cfg.out_dir)
        cfg["backend_kwargs"] = {k: str(v) for k, v in self.cfg.backend_kwargs.items()}
        info = {
            "run_id": self.run_id,
            "model": self.model_id,
            "model_fingerprint": self.fp,
            "config": cfg,
            "sampling": {**self.params.to_dict(), "seed": self.seed},
            "k": ks,
            "grading": {**self.grader, "soft_timeout_s": soft_timeout_for(self.cfg.timeout_s)},
            "counts": self.counts,
            "seconds": {b: {k: round(v, 3) for k, v in t.items()} for b, t in self.seconds.items()},
            "pool": {"killed": self._pool.n_killed, "crashed": self._pool.n_crashed} if self._pool else None,
            "memo": None if self.memo is None else {"path": str(self.memo.path), **self.memo.stats()},
            "summary": [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows],
            "cache_keys": {"generation": self.genkey, "grading": self.gradekey},
        }
        atomic_write_text(out / "run.json", json.dumps(info, indent=2, default=str) + "\n")


def evaluate(cfg: EvalConfig) -> list[dict[str, Any]]:
    """Run one evaluation (see the module docstring); returns the summary rows."""
    return Evaluation(cfg).run()
