"""Nothing is lost silently: a deliberately corrupted COPY of a real file (in tmp_path) is skipped
row by row and named in the manifest and report by default, and is an error under --strict."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from m2po.data.build import BuildOptions, build
from m2po.data.readers import DataError
from m2po.data.spec import load_sources

DATA_DIR = Path(os.environ.get("M2PO_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
pytestmark = pytest.mark.skipif(
    not DATA_DIR.is_dir(), reason=f"offline data folder {DATA_DIR} not found (set M2PO_DATA_DIR: docs/data.md)"
)
REL = "aime2024/test.jsonl"


@pytest.fixture
def corrupted(tmp_path) -> Path:
    """A copy of aime2024 with an empty question (row 3), a duplicate id (row 5 takes row 4's),
    an answer of the wrong type (row 7), a question of the wrong type (row 9), a line that is not
    JSON (row 11) -> 25 of 30 rows usable."""
    lines = (DATA_DIR / REL).read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    rows[3]["problem"] = "   "
    rows[5]["id"] = rows[4]["id"]
    rows[7]["answer"] = {"value": 7}
    rows[9]["problem"] = 42
    text = [json.dumps(r) for r in rows]
    text[11] = text[11][:40]  # truncated line
    root = tmp_path / "data"
    (root / "aime2024").mkdir(parents=True)
    (root / REL).write_text("\n".join(text) + "\n", encoding="utf-8")
    return root


def run_build(root: Path, out: Path, strict: bool = False):
    opts = BuildOptions(out=out, datasets=("aime2024",), offline_dir=root, strict=strict, check_parse=False)
    return build(load_sources(), opts)


def test_default_skips_counts_and_names_every_bad_row(corrupted, tmp_path):
    out = tmp_path / "out"
    [m] = run_build(corrupted, out)
    got = {(s["file"], s["row"], s["reason"]) for s in m["skipped"]}
    assert got == {
        (REL, 3, "empty_question"),
        (REL, 5, "duplicate_id"),
        (REL, 7, "wrong_type"),
        (REL, 9, "wrong_type"),
        (REL, 11, "invalid_json"),
    }
    dup = next(s for s in m["skipped"] if s["reason"] == "duplicate_id")
    assert f"{REL} row 4" in dup["detail"]
    c = m["counts"]
    assert (c["read"], c["kept"], c["skipped"], c["skipped_unexpected"]) == (30, 25, 5, 5)
    assert c["skipped_by_reason"] == {"duplicate_id": 1, "empty_question": 1, "invalid_json": 1, "wrong_type": 2}
    assert c["count_ok"] is False  # 25 kept, 30 expected: a loud warning
    reasons = {w["reason"] for w in m["warnings"]}
    assert {"sha256_mismatch", "count_mismatch"} <= reasons
    report = (out / "report.md").read_text()
    assert "COUNT MISMATCH" in report and "SHA256 MISMATCH" in report
    assert f"| aime2024 | `{REL}` | 3 | empty_question |" in report
    on_disk = json.loads((out / "aime2024" / "manifest.json").read_text())
    assert on_disk["skipped"] == m["skipped"]


def test_strict_fails_naming_file_and_row_and_writes_nothing(corrupted, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DataError) as e:
        run_build(corrupted, out, strict=True)
    msg = str(e.value)
    for where in (f"{REL} row 3: empty_question", f"{REL} row 5: duplicate_id", f"{REL} row 7: wrong_type"):
        assert where in msg
    assert "kept 25 rows, expected 30" in msg
    assert not out.exists()


def main(argv: list[str]) -> int:
    """``m2po data ...`` through the entry point, which turns an error into one line and exit 2."""
    from m2po.cli import main as m2po_main

    return m2po_main(["data", *argv])


def test_cli_strict_exit_status_and_message(corrupted, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["build", "--datasets", "aime2024", "--offline", str(corrupted), "--out", str(out)]
    assert main([*args, "--strict", "--no-progress", "--no-parse-check"]) == 2
    err = capsys.readouterr().err
    assert "--strict" in err and f"{REL} row 9: wrong_type" in err
    assert main([*args, "--no-progress", "--no-parse-check"]) == 0
    assert json.loads((out / "aime2024" / "manifest.json").read_text())["counts"]["kept"] == 25


def test_strict_accepts_the_documented_quirks_of_the_real_files(tmp_path):
    """The 4 empty MATH-train answers are listed in sources.yaml: skipped and reported, not an error."""
    opts = BuildOptions(
        out=tmp_path, datasets=("deepscaler", "gaokao2023en"), offline_dir=DATA_DIR, strict=True, check_parse=False
    )
    ms = {m["dataset"]: m for m in build(load_sources(), opts)}
    assert ms["deepscaler"]["counts"]["skipped"] == 4 and all(s["expected"] for s in ms["deepscaler"]["skipped"])
    assert ms["gaokao2023en"]["counts"]["kept"] == 385


def test_missing_source_and_no_fallback_are_errors(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(DATA_DIR / "aime2024", root / "aime2024")
    with pytest.raises(DataError, match="math500/test.jsonl"):
        build(load_sources(), BuildOptions(out=tmp_path / "o", datasets=("math500",), offline_dir=root))
    opts = BuildOptions(out=tmp_path / "o", datasets=("deepscaler",), offline_dir=DATA_DIR, allow_fallback=False)
    with pytest.raises(DataError, match="--no-fallback"):
        build(load_sources(), opts)
    with pytest.raises(DataError, match="did you mean 'math500'"):
        build(load_sources(), BuildOptions(out=tmp_path / "o", datasets=("math50",), offline_dir=DATA_DIR))
