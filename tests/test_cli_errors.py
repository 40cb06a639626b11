"""Bad input to ``m2po grade / eval / report / data`` is one line naming what, where and the fix, exit 2,
and loses nothing: no output file appears, nothing is silently dropped or replaced by a default."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from m2po.cli import main

ERROR_LINE = r"^m2po (\w+): error: .+, .+"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str, command: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"m2po {command}: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


# -- m2po grade -------------------------------------------------------------------------------------------


def test_grade_missing_input_is_an_error_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    rc, _, err = run_cli(capsys, "grade", "--input", str(tmp_path / "nonexist.jsonl"), "--output", str(out))
    assert rc == 2
    line = one_error_line(err, "grade")
    assert "nonexist.jsonl" in line and "no such file" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("bad_line", "what"),
    [
        ('{"response": "\\\\boxed{3}", "answ', "not valid JSON"),
        ("[1, 2]", "a list"),
        ('"bare"', "a string"),
    ],
)
def test_grade_refuses_lines_it_cannot_parse_naming_the_file_line(tmp_path, capsys, bad_line, what):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    good = json.dumps({"response": "\\boxed{2}", "answer": "2"})
    inp.write_text(f"{good}\n\n{bad_line}\n{good}\n")  # the bad record is on file line 3
    rc, _, err = run_cli(capsys, "grade", "--input", str(inp), "--output", str(out), "--no-progress")
    assert rc == 2
    line = one_error_line(err, "grade")
    assert "line 3" in line and what in line and str(inp) in line
    assert not out.exists()


def test_grade_refuses_a_binary_file(tmp_path, capsys):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes(bytes(range(256)) * 4)
    rc, _, err = run_cli(capsys, "grade", "--input", str(inp), "--output", str(out), "--no-progress")
    assert rc == 2
    line = one_error_line(err, "grade")
    assert str(inp) in line and "UTF-8" in line
    assert not out.exists()


def test_grade_missing_fields_and_null_answers_name_file_lines(tmp_path, capsys):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = [
        "",  # line 1 blank
        json.dumps({"response": "\\boxed{2}", "answer": "2"}),  # line 2
        json.dumps({"response": "\\boxed{2}"}),  # line 3: no answer field
        json.dumps({"response": "\\boxed{2}", "answer": None}),  # line 4: null answer
        json.dumps({"answer": "2"}),  # line 5: no response
    ]
    inp.write_text("\n".join(rows) + "\n")
    rc, _, err = run_cli(capsys, "grade", "--input", str(inp), "--output", str(out), "--no-progress")
    assert rc == 2
    line = one_error_line(err, "grade")
    assert "lines 3, 4, 5" in line, line
    assert not out.exists()


# -- m2po eval --------------------------------------------------------------------------------------------


def _tiny_data(root: Path) -> Path:
    from m2po.engine.task import ArithmeticTask, generate_problems, to_dataset_rows
    from m2po.eval.problems import write_parquet

    _, test = generate_problems(ArithmeticTask(seed=1, n_train=0, n_test=4))
    write_parquet(to_dataset_rows(test, "test", "tiny_arith"), root / "tiny_arith" / "test.parquet")
    return root


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--k", "0"], "--k"),
        (["--k", "-3"], "--k"),
        (["--limit", "0"], "--limit"),
        (["--batch-problems", "0"], "--batch-problems"),
        (["--timeout", "0"], "--timeout"),
        (["--temperature", "-1"], "--temperature"),
    ],
)
def test_eval_rejects_out_of_range_numbers(tmp_path, capsys, extra, needle):
    data = _tiny_data(tmp_path / "data")
    out = tmp_path / "ev"
    argv = ["eval", "--model", "tiny:0.1M:0", "--backend", "tiny", "--benchmarks", "tiny_arith"]
    rc, _, err = run_cli(capsys, *argv, "--data", str(data), "--out", str(out), "--no-progress", *extra)
    assert rc == 2
    assert needle in one_error_line(err, "eval")
    assert not out.exists()


def test_eval_missing_model_and_benchmark_typo_are_one_line(tmp_path, capsys):
    data = _tiny_data(tmp_path / "data")
    out = tmp_path / "ev"
    base = ["eval", "--data", str(data), "--out", str(out), "--no-progress", "--k", "1"]
    rc, _, err = run_cli(capsys, *base, "--model", str(tmp_path / "no_model"), "--benchmarks", "tiny_arith")
    assert rc == 2
    assert "no_model" in one_error_line(err, "eval")
    rc, _, err = run_cli(capsys, *base, "--model", "tiny:0.1M:0", "--backend", "tiny", "--benchmarks", "tiny_arih")
    assert rc == 2
    line = one_error_line(err, "eval")
    assert "tiny_arih" in line and "did you mean 'tiny_arith'" in line
    assert not out.exists()


# -- m2po report ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_results(tmp_path_factory):
    from m2po.analysis.synthetic import scenario, write_synthetic_runs

    root = tmp_path_factory.mktemp("res") / "tiny"
    write_synthetic_runs(root / "runs", scenario("paper", stale=16))
    return root


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--models", "10M"], "10M"),
        (["--stale", "48"], "48"),
        (["--seeds", "7"], "7"),
    ],
)
def test_report_refuses_selections_with_no_runs(small_results, capsys, extra, needle):
    rc, _, err = run_cli(capsys, "report", "--results", str(small_results), "--no-figures", *extra)
    assert rc == 2
    line = one_error_line(err, "report")
    assert needle in line
    assert not (small_results / "report.md").exists()


def test_report_refuses_a_results_folder_without_runs(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "report", "--results", str(tmp_path / "typo"), "--no-figures")
    assert rc == 2
    assert "typo" in one_error_line(err, "report")
    assert not (tmp_path / "typo").exists()


# -- m2po data build --------------------------------------------------------------------------------------


def test_data_build_on_a_binary_jsonl_names_the_file(tmp_path, capsys):
    offline = tmp_path / "offline"
    bad = offline / "aime2024" / "test.jsonl"  # the offline layout of data/sources.yaml
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\xff\xfe\x00binary\n" * 100)
    out = tmp_path / "out"
    argv = ["data", "build", "--datasets", "aime2024", "--offline", str(offline), "--out", str(out)]
    rc, _, err = run_cli(capsys, *argv, "--no-progress", "--no-parse-check")
    assert rc == 2
    line = one_error_line(err, "data")
    assert str(bad) in line and "UTF-8" in line
    assert not (out / "aime2024").exists()


# -- the entry point --------------------------------------------------------------------------------------


def test_version_flag():
    from m2po import __version__

    res = subprocess.run([sys.executable, "-m", "m2po.cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == f"m2po {__version__}"


def test_make_help_lists_the_targets():
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run(["make", "-s", "help"], cwd=root, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for target in ("help", "venv", "test", "reproduce", "clean"):
        assert f"make {target}" in res.stdout
