"""Evaluation: generate k samples per problem, grade them in isolated workers, report avg@k / pass@k.

Grading itself is :mod:`m2po.grader` (in-process extraction + math-verify, shared with training). Modules:
``pool`` (worker processes with a parent-enforced wall-clock timeout), ``problems`` (benchmark
parquet), ``suites`` (``eval/suites.yaml``), ``backends`` (hf, vllm, tiny), ``store`` (append-only
JSONL), ``runner`` (the resumable pipeline), ``metrics`` and ``report`` (tables), ``cli_eval`` /
``cli_grade`` (``m2po eval`` / ``m2po grade``). See docs/eval.md.
"""
