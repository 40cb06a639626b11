"""The math-verify parse check of ground truths: listed in manifest and report, never fatal, cached."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import m2po.data.gtcheck as gtcheck
from m2po.data.build import BuildOptions, build
from m2po.data.normalize import normalise_answer
from m2po.data.spec import DatasetSpec, FieldMap, LocalFile, SourcesFile

DATA_DIR = Path(os.environ.get("M2PO_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")


def test_parses_needs_a_math_value_not_just_the_string():
    assert gtcheck.parses("25")
    assert gtcheck.parses("\\frac{1}{2}")
    assert gtcheck.parses("\\left( 3, \\frac{\\pi}{2} \\right)")
    assert not gtcheck.parses("145solution:")  # math-verify keeps only the string
    assert not gtcheck.parses("b > a > c")


@pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"offline data folder {DATA_DIR} not found")
def test_known_unparseable_gaokao_answers_on_the_real_file():
    lines = (DATA_DIR / "gaokao2023en/gaokao-2023en-test.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    by_id = {r["id"]: r for r in rows if "id" in r}
    gt, _ = normalise_answer("gaokao_dollar", by_id["PurpleMeet2023_16"]["answer"])
    assert gt == "145solution:" and not gtcheck.parses(gt)
    gt, _ = normalise_answer("gaokao_dollar", rows[3]["answer"])
    assert gtcheck.parses(gt)


def _mini_sources(root: Path) -> SourcesFile:
    """One tiny eval dataset in ``root/d/x.jsonl`` (written if absent) with an unparseable and an
    empty answer."""
    path = root / "d" / "x.jsonl"
    if not path.exists():
        rows = [
            {"q": "one", "a": "7"},
            {"q": "two", "a": "145solution:"},
            {"q": "three", "a": "\\frac{3}{4}"},
            {"q": "four", "a": ""},
        ]
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = DatasetSpec(
        role="eval",
        fields=FieldMap(question="q", answer="a", id=None),
        local=[LocalFile("d/x.jsonl", "d")],
        on_empty_answer="keep_flagged",
    )
    return SourcesFile(prompt_template="{question}", datasets={"mini": spec})


def test_unparseable_ground_truths_are_listed_not_dropped_and_cached(tmp_path, monkeypatch):
    out = tmp_path / "out"
    opts = BuildOptions(out=out, offline_dir=tmp_path, progress=False)
    [m] = build(_mini_sources(tmp_path), opts)
    gp = m["ground_truth_parse"]
    assert m["counts"]["kept"] == 4 and m["counts"]["answer_missing"] == 1
    assert gp["checked"] and gp["n_ground_truths"] == 3
    assert gp["unparseable"] == [{"split": "test", "id": "d-row00001", "ground_truth": "145solution:"}]
    report = (out / "report.md").read_text()
    assert "`d-row00001` → `145solution:`" in report and "| mini | 1 / 3 |" in report
    cache = json.loads((out / ".cache" / "gt_parse.json").read_text())
    assert cache["results"] == {"145solution:": False, "7": True, "\\frac{3}{4}": True}

    def boom(gt: str) -> bool:
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(gtcheck, "parses", boom)
    [again] = build(_mini_sources(tmp_path), opts)
    assert again["ground_truth_parse"] == gp
