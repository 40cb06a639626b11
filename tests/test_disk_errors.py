"""A full disk and a read-only output folder in ``m2po data build / eval / grade / report``: one line
naming the file and the fix, exit 2, and nothing lost: the previous build stays whole, the input stays.
(``m2po train`` is covered with its resume in test_train_resume.py.) Real ENOSPC / EROFS from a
small or read-only tmpfs in a private mount namespace (tests/sandbox.py)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from sandbox import bind_read_only, last_error_line, m2po, mount_tmpfs, require_namespaces, run_script

DATA_DIR = Path(os.environ.get("M2PO_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
THREE = ("aime2024", "aime2025", "amc23")


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(autouse=True)
def _namespaces():
    require_namespaces()


# -- m2po data build ----------------------------------------------------------------------------------------


def test_data_build_on_a_full_disk_keeps_the_previous_build_whole(tmp_path):
    """A build of three datasets, then the disk filled and the same build again: it fails with one line
    and every file of the first build is as it was (no half of the new one, no staging left)."""
    mnt, keep = tmp_path / "mnt", tmp_path / "keep"
    build = m2po("data", "build", "--datasets", *THREE, "--offline", DATA_DIR, "--out", mnt / "out")
    script = (
        mount_tmpfs(mnt, size_kb=2048)
        + f"{build} --no-progress --no-parse-check > /dev/null 2>&1 || exit 10\n"
        + f"cp -r {mnt / 'out'} {keep}\n"
        + f"dd if=/dev/zero of={mnt / 'filler'} bs=1k count=4096 2>/dev/null; "  # fill what is left
        + f"rm -f {mnt / 'filler'}; dd if=/dev/zero of={mnt / 'filler'} bs=1k count=$(( $(df -k {mnt} | "
        + "tail -1 | awk '{print $4}') - 60 )) 2>/dev/null\n"
        + f"{build} --no-progress --no-parse-check\n"
        + "echo rc=$?\n"
        + f"cp -r {mnt / 'out'} {tmp_path / 'after'}\n"
    )
    res = run_script(script)
    assert "rc=2" in res.stdout, res.stdout + res.stderr
    line = last_error_line(res.stderr, "data")
    assert line.startswith(f"m2po data: error: no space left on device, {mnt / 'out'}, nothing in it was changed")
    assert digest(tmp_path / "after") == digest(keep)
    assert not any(p.name.startswith(".build-") for p in (tmp_path / "after").iterdir())


def test_data_build_on_a_fresh_full_disk_writes_no_dataset(tmp_path):
    mnt = tmp_path / "mnt"
    build = m2po("data", "build", "--datasets", *THREE, "--offline", DATA_DIR, "--out", mnt / "out")
    script = mount_tmpfs(mnt, size_kb=48) + f"{build} --no-progress --no-parse-check\necho rc=$?\n"
    script += f"ls -a {mnt / 'out'}\n"
    res = run_script(script)
    assert "rc=2" in res.stdout, res.stdout + res.stderr
    assert "no space left on device" in last_error_line(res.stderr, "data")
    listed = set(res.stdout.split()) - {".", "..", "rc=2"}
    assert not listed & set(THREE) and not any(n.startswith(".build-") for n in listed), listed


def test_data_build_into_a_read_only_folder(tmp_path):
    mnt = tmp_path / "mnt"
    build = m2po("data", "build", "--datasets", "aime2024", "--offline", DATA_DIR, "--out", mnt / "out")
    res = run_script(mount_tmpfs(mnt, read_only=True) + f"{build} --no-progress --no-parse-check\necho rc=$?\n")
    assert "rc=2" in res.stdout
    line = last_error_line(res.stderr, "data")
    assert "read-only file system" in line and str(mnt / "out") in line


# -- m2po grade ---------------------------------------------------------------------------------------------


def _grade_input(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"response": f"\\boxed{{{i}}}", "answer": str(i)}) + "\n" for i in range(n)))
    return path


def test_grade_on_a_full_disk_and_into_a_read_only_folder(tmp_path):
    inp = _grade_input(tmp_path / "in.jsonl", 300)
    before = inp.read_bytes()
    mnt = tmp_path / "mnt"
    grade = m2po("grade", "--input", inp, "--output", mnt / "out.jsonl", "--workers", "1", "--no-progress")
    res = run_script(mount_tmpfs(mnt, size_kb=16) + f"{grade}\necho rc=$?\n")
    assert "rc=2" in res.stdout, res.stdout + res.stderr
    line = last_error_line(res.stderr, "grade")
    assert "no space left on device" in line and str(mnt) in line and "it continues from out.jsonl.partial" in line
    assert inp.read_bytes() == before
    res = run_script(mount_tmpfs(mnt, read_only=True) + f"{grade}\necho rc=$?\n")
    assert "rc=2" in res.stdout
    assert "read-only file system" in last_error_line(res.stderr, "grade")


# -- m2po eval ----------------------------------------------------------------------------------------------


def _tiny_benchmark(root: Path) -> Path:
    from m2po.engine.task import ArithmeticTask, generate_problems, to_dataset_rows
    from m2po.eval.problems import write_parquet

    _, test = generate_problems(ArithmeticTask(seed=1, n_train=0, n_test=64))
    write_parquet(to_dataset_rows(test, "test", "tiny_arith"), root / "tiny_arith" / "test.parquet")
    return root


def test_eval_on_a_full_disk_and_into_a_read_only_folder(tmp_path):
    data = _tiny_benchmark(tmp_path / "data")
    mnt = tmp_path / "mnt"
    ev = m2po(
        "eval", "--model", "tiny:0.1M:0", "--backend", "tiny", "--benchmarks", "tiny_arith", "--data", data,
        "--out", mnt / "ev", "--k", "4", "--max-new-tokens", "4", "--workers", "1", "--no-progress",
    )  # fmt: skip
    res = run_script(mount_tmpfs(mnt, size_kb=24) + f"{ev}\necho rc=$?\n")
    assert "rc=2" in res.stdout, res.stdout + res.stderr
    line = last_error_line(res.stderr, "eval")
    assert "no space left on device" in line and str(mnt / "ev") in line and "continues from its cache" in line
    res = run_script(mount_tmpfs(mnt, read_only=True) + f"{ev}\necho rc=$?\n")
    assert "rc=2" in res.stdout
    assert "read-only file system" in last_error_line(res.stderr, "eval")


# -- m2po report --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    from m2po.analysis.synthetic import scenario, write_synthetic_runs

    root = tmp_path_factory.mktemp("res") / "tiny"
    write_synthetic_runs(root / "runs", scenario("paper", stale=16))
    return root


def test_report_on_a_full_disk_and_a_read_only_results_tree(results, tmp_path):
    size_kb = sum(p.stat().st_size for p in results.rglob("*") if p.is_file()) // 1024 + 64
    mnt = tmp_path / "mnt"
    report = m2po("report", "--results", mnt / "tiny")
    script = mount_tmpfs(mnt, size_kb=size_kb) + f"cp -r {results} {mnt / 'tiny'}\n{report}\necho rc=$?\n"
    res = run_script(script)
    assert "rc=2" in res.stdout, res.stdout + res.stderr
    line = last_error_line(res.stderr, "report")
    assert "no space left on device" in line and str(mnt / "tiny") in line
    res = run_script(bind_read_only(results) + f"{m2po('report', '--results', results)}\necho rc=$?\n")
    assert "rc=2" in res.stdout
    assert "read-only file system" in last_error_line(res.stderr, "report")
