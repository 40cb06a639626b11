"""A full offline build of the offline data folder ``$M2PO_DATA_DIR`` (expected counts, manifests,
fallback flag, verl schema, determinism), the online path with a local stand-in for the hub, the tiny
task's datasets and contamination on a hand-made overlap."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from m2po.data.build import BuildOptions, build
from m2po.data.contamination import COLUMNS, find_overlap
from m2po.data.spec import DatasetSpec, FallbackSpec, FieldMap, LocalFile, SourcesFile, load_sources
from m2po.engine.task import ArithmeticTask, generate_problems, to_dataset_rows

DATA_DIR = Path(os.environ.get("M2PO_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_data = pytest.mark.skipif(
    not DATA_DIR.is_dir(), reason=f"offline data folder {DATA_DIR} not found (set M2PO_DATA_DIR: docs/data.md)"
)

EXPECTED = {
    "deepscaler": {"train": 8445},  # the fallback: 975 + 7474 - 4 empty answers
    "math500": {"test": 500},
    "aime2024": {"test": 30},
    "aime2025": {"test": 30},
    "amc23": {"test": 40},
    "amc24": {"test": 45},
    "minerva_math": {"test": 272},
    "olympiadbench": {"test": 675},
    "gaokao2023en": {"test": 385},
    "gsm8k": {"test": 1319},
    "tiny_arith": {"train": 8000, "test": 500},
}


def opts(out: Path, datasets=("all",), offline: Path | None = DATA_DIR, **kw) -> BuildOptions:
    return BuildOptions(out=out, datasets=tuple(datasets), offline_dir=offline, check_parse=False, progress=False, **kw)


def manifest(out: Path, name: str) -> dict:
    return json.loads((out / name / "manifest.json").read_text())


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Path:
    """One full offline build (parse check off: it is tested on its own in test_data_gtcheck)."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"offline data folder {DATA_DIR} not found")
    out = tmp_path_factory.mktemp("data_out")
    build(load_sources(), opts(out))
    return out


@needs_data
def test_full_offline_build_has_the_expected_counts(full):
    for name, splits in EXPECTED.items():
        m = manifest(full, name)
        assert m["counts"]["kept_by_split"] == splits, name
        assert m["counts"]["count_ok"], name
        for split, n in splits.items():
            assert pq.read_metadata(full / name / f"{split}.parquet").num_rows == n
    assert manifest(full, "gaokao2023en")["counts"]["answer_missing"] == 2
    assert manifest(full, "deepscaler")["counts"]["skipped_by_reason"] == {"empty_answer": 4}
    assert manifest(full, "deepscaler")["counts"]["skipped_unexpected"] == 0
    assert (full / "report.md").is_file() and (full / "contamination.csv").is_file()
    assert (full / "contamination.md").is_file()


@needs_data
def test_manifest_sha256_of_sources_and_outputs_match_hashlib(full):
    for name in EXPECTED:
        m = manifest(full, name)
        if m["mode"] == "offline":
            for f in m["source"]["files"]:
                assert f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest()
                assert f["sha256_ok"] is True and Path(f["path"]) == DATA_DIR.resolve() / f["relpath"]
        for info in m["splits"].values():
            assert info["sha256"] == hashlib.sha256((full / name / info["file"]).read_bytes()).hexdigest()


@needs_data
def test_fallback_flag_in_manifest_and_every_row(full):
    m = manifest(full, "deepscaler")
    assert m["is_fallback"] is True and "FALLBACK" in m["fallback_reason"]
    assert [f["relpath"] for f in m["source"]["files"]] == [
        "deepscaler_fallback/aime_1983_2023_train.json",
        "deepscaler_fallback/math_train.json",
    ]
    flags = pq.read_table(full / "deepscaler" / "train.parquet").column("extra_info").to_pylist()
    assert all(e["is_fallback"] for e in flags)
    for name in EXPECTED:
        if name != "deepscaler":
            assert manifest(full, name)["is_fallback"] is False
            for split in EXPECTED[name]:
                extra = pq.read_table(full / name / f"{split}.parquet").column("extra_info").to_pylist()
                assert not any(e["is_fallback"] for e in extra)
    assert "FALLBACK" in (full / "report.md").read_text()


def test_fallback_is_announced_loudly(tmp_path, caplog):
    """A spec whose real file is absent: the fallback is used, a banner logged, every row flagged."""
    (tmp_path / "fb").mkdir()
    (tmp_path / "fb" / "x.json").write_text(json.dumps([{"problem": "1+1?", "answer": "2"}]))
    fields = FieldMap(question="problem", answer="answer", id=None)
    spec = DatasetSpec(
        role="train",
        split="train",
        fields=fields,
        local=[LocalFile("real/train.json", "real")],
        fallback=FallbackSpec(reason="stand-in data", files=[LocalFile("fb/x.json", "fb")], expected_count=1),
        expected_count=40315,
    )
    sources = SourcesFile(prompt_template="{question}", datasets={"realset": spec})
    with caplog.at_level(logging.WARNING, logger="m2po.data"):
        [m] = build(sources, opts(tmp_path / "out", offline=tmp_path))
    assert "FALLBACK: 'realset' is NOT the real dataset. Missing: real/train.json" in caplog.text
    assert m["is_fallback"] is True and m["fallback_reason"] == "stand-in data" and m["counts"]["count_ok"]
    extra = pq.read_table(tmp_path / "out" / "realset" / "train.parquet").column("extra_info").to_pylist()
    assert [e["is_fallback"] for e in extra] == [True]


@needs_data
def test_training_set_is_shuffled_like_datasets_shuffle_seed_42(full):
    import datasets

    m = manifest(full, "deepscaler")
    skipped = {(s["file"], s["row"]) for s in m["skipped"]}
    ids = []
    for f in load_sources().datasets["deepscaler"].fallback.files:
        n = json.loads((DATA_DIR / f.path).read_text())
        ids += [f"{f.id_prefix}-row{i:05d}" for i in range(len(n)) if (f.path, i) not in skipped]
    expected = datasets.Dataset.from_list([{"id": i} for i in ids]).shuffle(seed=42)["id"]
    extra = pq.read_table(full / "deepscaler" / "train.parquet").column("extra_info").to_pylist()
    assert [e["id"] for e in extra] == list(expected)
    assert [e["index"] for e in extra] == list(range(len(extra)))


@needs_data
def test_verl_columns_present_and_readable_by_pandas_and_datasets(full):
    import datasets

    for name, splits in EXPECTED.items():
        for split in splits:
            path = full / name / f"{split}.parquet"
            df = pd.read_parquet(path)
            assert {"data_source", "prompt", "ability", "reward_model", "extra_info"} <= set(df.columns)
            row = df.iloc[0]
            assert row["data_source"] == name
            assert [m["role"] for m in row["prompt"]] == ["user"] and isinstance(row["prompt"][0]["content"], str)
            assert row["reward_model"]["style"] == "rule" and isinstance(row["reward_model"]["ground_truth"], str)
            assert {"index", "split", "id", "question"} <= set(row["extra_info"])
            assert row["extra_info"]["split"] == split
    ds = datasets.load_dataset("parquet", data_files=str(full / "math500" / "test.parquet"))["train"]
    first = ds[0]
    assert first["prompt"][0]["content"].startswith("Please solve the following math problem: ")
    assert first["ability"] == "math" and first["extra_info"]["id"] == "test/precalculus/807.json"


@needs_data
def test_rebuild_gives_the_same_bytes(tmp_path):
    names = ["aime2024", "gaokao2023en"]
    a, b = tmp_path / "a", tmp_path / "b"
    build(load_sources(), opts(a, names))
    build(load_sources(), opts(b, names))
    build(load_sources(), opts(b, names))  # overwrite in place
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert not list(b.rglob("*.tmp"))


def _stand_in_hub(calls: list):
    """A ``datasets.load_dataset`` stand-in serving the local files as hub splits."""
    import datasets

    files = {"HuggingFaceH4/MATH-500": "math500/test.jsonl", "openai/gsm8k": "gsm8k/test.jsonl"}

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split, kwargs))
        text = (DATA_DIR / files[path]).read_text(encoding="utf-8")
        return datasets.Dataset.from_list([json.loads(line) for line in text.splitlines() if line.strip()])

    return load_dataset


@needs_data
def test_online_path_feeds_the_same_normaliser(tmp_path):
    calls: list = []
    names = ["math500", "gsm8k"]
    build(load_sources(), opts(tmp_path / "on", names, offline=None, hub_loader=_stand_in_hub(calls)))
    build(load_sources(), opts(tmp_path / "off", names))
    assert ("openai/gsm8k", "main", "test", {}) in calls
    for name in names:
        on = (tmp_path / "on" / name / "test.parquet").read_bytes()
        assert on == (tmp_path / "off" / name / "test.parquet").read_bytes(), name
        src = manifest(tmp_path / "on", name)["source"]
        assert src["mode"] == "online" and src["hub"]["records"] == EXPECTED[name]["test"]
    assert manifest(tmp_path / "on", "math500")["source"]["hub"]["hub_id"] == "HuggingFaceH4/MATH-500"


def test_tiny_arith_through_the_same_schema_and_manifest(tmp_path):
    build(load_sources(), opts(tmp_path, ["tiny_arith"], offline=None))
    m = manifest(tmp_path, "tiny_arith")
    assert m["is_fallback"] is False and m["mode"] == "generated"
    assert m["source"]["generator"] == "m2po.engine.task.generate_problems" and m["source"]["seed"] == 0
    assert m["source"]["task"]["n_train"] == 8000 and m["counts"]["kept_by_split"] == {"train": 8000, "test": 500}
    train, test = generate_problems(ArithmeticTask(seed=0, n_train=8000, n_test=500))
    for split, problems in (("train", train), ("test", test)):
        got = pd.read_parquet(tmp_path / "tiny_arith" / f"{split}.parquet")
        want = to_dataset_rows(problems, split)
        assert len(got) == len(want)
        for i in (0, len(want) - 1):
            g, w = got.iloc[i], want[i]
            assert g["data_source"] == w["data_source"] and g["ability"] == w["ability"]
            assert list(g["prompt"]) == w["prompt"] and dict(g["reward_model"]) == w["reward_model"]
            assert {k: g["extra_info"][k] for k in w["extra_info"]} == w["extra_info"]
    rows = list(csvrows(tmp_path))
    assert rows == [["tiny_arith", "tiny_arith/test", "500", "0", "", "False"]]


def csvrows(out: Path):
    import csv

    with open(out / "contamination.csv", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == list(COLUMNS)
        yield from reader


def _tiny_sources(tmp_path: Path) -> SourcesFile:
    train = [
        {"problem": "Find $x$ if $2x = 4$.", "answer": "2"},
        {"problem": "Compute $\\dfrac{1}{2}+\\frac{1}{3}$.", "answer": "\\frac{5}{6}"},
        {"problem": "What is 7 times 8?", "answer": "56"},
    ]
    bench = [
        {"id": "b0", "problem": "compute  \\(\\frac12 + \\frac13\\)", "answer": "5/6"},  # the same question
        {"id": "b1", "problem": "What is 7 times 9?", "answer": "63"},
        {"id": "b2", "problem": "Find $y$ if $3y=9$.", "answer": "3"},
    ]
    for name, rows in (("t", train), ("b", bench)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.json").write_text(json.dumps(rows))
    fields = FieldMap(question="problem", answer="answer", id="id")
    return SourcesFile(
        prompt_template="Q: {question}",
        datasets={
            "mytrain": DatasetSpec(role="train", split="train", fields=fields, local=[LocalFile("t/x.json", "t")]),
            "mybench": DatasetSpec(role="eval", fields=fields, local=[LocalFile("b/x.json", "b")], expected_count=3),
        },
    )


def test_contamination_finds_a_hand_made_overlap(tmp_path):
    build(_tiny_sources(tmp_path), opts(tmp_path / "out", offline=tmp_path))
    rows = list(csvrows(tmp_path / "out"))
    assert rows == [["mytrain", "mybench", "3", "1", "b0", "False"]]
    md = (tmp_path / "out" / "contamination.md").read_text()
    assert "| mytrain | mybench | 3 | 1 | 33.3 | `b0` |" in md
    assert "`b0`" in (tmp_path / "out" / "report.md").read_text()
    assert find_overlap(["A  b $c$"], [("x", "a b c."), ("y", "a b d")]) == ["x"]


@needs_data
def test_real_contamination_table_covers_every_benchmark(full):
    rows = [r for r in csvrows(full) if r[0] == "deepscaler"]
    assert sorted(r[1] for r in rows) == sorted(n for n in EXPECTED if n not in ("deepscaler", "tiny_arith"))
    by = {r[1]: r for r in rows}
    assert all(r[5] == "True" for r in rows)  # trained on the fallback
    assert int(by["math500"][3]) == len(by["math500"][4].split(";"))


@needs_data
@pytest.mark.slow
def test_verl_rlhf_dataset_reads_the_file_unchanged(full, tmp_path):
    """verl 0.9.1's RLHFDataset on one output file, with a tiny local word-level tokenizer."""
    rl_dataset = pytest.importorskip("verl.utils.dataset.rl_dataset", reason="verl not installed")
    from omegaconf import OmegaConf
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]")
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    cfg = OmegaConf.create(
        {"max_prompt_length": 4096, "filter_overlong_prompts_workers": 1, "cache_dir": str(tmp_path / "cache")}
    )
    ds = rl_dataset.RLHFDataset(str(full / "aime2024" / "test.parquet"), tok, cfg)
    assert len(ds) == 30
    item = ds[0]
    assert item["data_source"] == "aime2024" and item["reward_model"] == {"style": "rule", "ground_truth": "204"}
    assert item["raw_prompt"][0]["role"] == "user" and item["index"] == 0
    assert item["extra_info"]["id"] == "60" and item["extra_info"]["is_fallback"] is False
