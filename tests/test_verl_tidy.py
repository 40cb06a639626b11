"""verl's metrics.jsonl -> updates.csv / evals.csv / tokens.csv (m2po.verl_plugin.tidy)."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

pytest.importorskip("verl")  # m2po.verl_plugin's __init__ imports verl

from m2po.analysis import accuracy, load_runs  # noqa: E402
from m2po.analysis.synthetic import VERL_EVAL_COLUMNS  # noqa: E402
from m2po.engine.loop import TOKEN_COLUMNS, UPDATE_COLUMNS  # noqa: E402
from m2po.losses import METRIC_NAMES  # noqa: E402
from m2po.verl_plugin.tidy import EVAL_COLUMNS, MetricsFormatError, main, tidy_run  # noqa: E402

RUN_ID = "Qwen2.5-Math-7B-m2po-s8-seed0"
S, N = 8, 4  # staleness 8 updates, 4 updates per step -> k = 2 prefill steps


def _val(acc: float) -> dict[str, float]:
    """What verl's _val_metrics_update logs for our reward (var 'acc', val_kwargs.n = 4)."""
    return {
        "val-core/math500/acc/mean@4": acc,
        "val-core/math500/acc/maj@4/mean": acc + 0.01,
        "val-core/math500/acc/best@4/mean": acc + 0.2,
        "val-aux/math500/acc/mean@2": acc - 0.05,
        "val-aux/math500/acc/std@4": 0.1,
        "val-aux/math500/reward/mean@4": acc,
        "val-aux/math500/extractable/mean@4": 0.9,
        "val-core/aime2024/acc/mean@4": acc / 3,
    }


def _train(step: int, updates_done: int, version: int, smin: int, **extra: float) -> dict:
    data = {
        "m2po/prefill": 0.0,
        "m2po/queue_len": 2.0,
        "m2po/updates_done": float(updates_done),
        "m2po/behaviour_version": float(version),
        "m2po/staleness_min": float(smin),
        "m2po/staleness_max": float(smin + N - 1),
        "critic/score/mean": 0.40 + step / 100,
        "critic/score/max": 1.0,
        "critic/rewards/mean": 0.0,  # must not win over critic/score/mean
        "actor/loss": -0.01 * step,
        "actor/pg_loss": 99.0,
        "actor/grad_norm": 0.5 + step,
        "actor/lr": 1e-6,
        "actor/entropy": 0.3,
        "actor/pg_clipfrac": 0.0,
        "actor/ppo_kl": 0.002,
        "actor/pg_clipfrac_lower": 0.0,
        **{f"actor/m2po/{k}": 0.001 * (i + 1) + step for i, k in enumerate(METRIC_NAMES)},
        "perf/mfu/actor": 0.31,
        "timing_s/step": 12.5,
        "training/global_step": step,
        "training/epoch": 0,
        "response_length/mean": 812.0,
        "some/unknown_key": "text",
    }
    data.update(extra)
    return {"step": step, "data": data}


def _prefill(step: int, queue_len: int) -> dict:
    return {
        "step": step,
        "data": {"m2po/prefill": 1.0, "m2po/queue_len": float(queue_len), "m2po/updates_done": 0.0,
                 "critic/score/mean": 0.3, "training/global_step": step},
    }  # fmt: skip


def _lines() -> list[dict]:
    """s = 8, n = 4: steps 1-2 prefill, steps 3.. train (gpu_smoke.check's schedule), test_freq = 2."""
    return [
        {"step": 0, "data": _val(0.30)},  # val_before_train
        _prefill(1, 1),
        {"step": 2, "data": {**_prefill(2, 2)["data"], **_val(0.31)}},
        _train(3, updates_done=4, version=0, smin=0),
        {"step": 4, "data": {**_train(4, updates_done=8, version=0, smin=4)["data"], **_val(0.35)}},
        _train(5, updates_done=12, version=0, smin=8),
        {"step": 6, "data": {**_train(6, updates_done=16, version=4, smin=8)["data"], **_val(0.40)}},
    ]


def _write(run_dir: Path, lines: list) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "metrics.jsonl"
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_columns_are_the_contract(tmp_path: Path) -> None:
    run = tmp_path / "runs" / RUN_ID
    _write(run, _lines())
    tidy_run(run)
    cols, _ = _read(run / "updates.csv")
    assert cols == UPDATE_COLUMNS
    assert cols[:6] == ["update", "step", "staleness", "behaviour_version", "reward_mean", "loss"]
    assert cols[-3:] == ["entropy", "grad_norm", "lr"]
    cols, _ = _read(run / "evals.csv")
    assert cols == EVAL_COLUMNS == VERL_EVAL_COLUMNS
    cols, rows = _read(run / "tokens.csv")
    assert cols == TOKEN_COLUMNS and rows == []
    assert not list(run.glob(".*"))  # no temporary files left behind


def test_update_rows_map_verl_keys(tmp_path: Path) -> None:
    run = tmp_path / RUN_ID
    _write(run, _lines())
    tidy_run(run)
    _, rows = _read(run / "updates.csv")
    # one row per training step at its last update; prefill steps make none
    assert [int(r["update"]) for r in rows] == [3, 7, 11, 15]
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    assert [int(r["staleness"]) for r in rows] == [3, 7, 11, 11]
    assert [int(r["behaviour_version"]) for r in rows] == [0, 0, 0, 4]
    for r in rows:
        assert int(r["update"]) - int(r["behaviour_version"]) == int(r["staleness"])
    r = rows[1]  # global step 4
    assert float(r["reward_mean"]) == pytest.approx(0.44)
    assert float(r["loss"]) == pytest.approx(-0.04)
    assert float(r["grad_norm"]) == pytest.approx(4.5)
    assert float(r["lr"]) == 1e-6
    assert float(r["entropy"]) == 0.3
    for i, k in enumerate(METRIC_NAMES):
        if k == "n_tokens":
            assert r[k] == ""  # verl keeps a per-micro-batch mean, not the update's count
        else:
            assert float(r[k]) == pytest.approx(0.001 * (i + 1) + 4), k


def test_missing_metrics_are_empty_cells_and_fallbacks(tmp_path: Path) -> None:
    run = tmp_path / RUN_ID
    step = _train(3, updates_done=4, version=0, smin=0)
    for key in ("actor/lr", "actor/loss", "critic/score/mean", "actor/m2po/clipped_frac"):
        del step["data"][key]
    step["data"]["actor/grad_norm"] = None  # orjson writes NaN as null
    _write(run, [step])
    tidy_run(run)
    _, (r,) = _read(run / "updates.csv")
    assert r["lr"] == "" and r["grad_norm"] == ""
    assert float(r["loss"]) == 99.0  # actor/pg_loss when actor/loss is absent
    assert float(r["reward_mean"]) == 0.0  # critic/rewards/mean when critic/score/mean is absent
    assert float(r["clipped_frac"]) == 0.0  # verl's actor/pg_clipfrac
    _, evals = _read(run / "evals.csv")
    assert evals == []


def test_eval_rows(tmp_path: Path) -> None:
    run = tmp_path / RUN_ID
    _write(run, _lines())
    tidy_run(run)
    _, rows = _read(run / "evals.csv")
    math500 = [r for r in rows if r["benchmark"] == "math500"]
    assert [(int(r["update"]), float(r["avg_at_k"])) for r in math500] == [(0, 0.30), (0, 0.31), (8, 0.35), (16, 0.40)]
    assert all(r["k"] == "4" for r in rows)
    assert all(r[c] == "" for r in rows for c in ("ci_low", "ci_high", "n_problems", "n_timeouts"))
    assert sorted({r["benchmark"] for r in rows}) == ["aime2024", "math500"]


def test_load_runs_reads_the_result(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _write(runs / RUN_ID, _lines())
    tidy_run(runs / RUN_ID)
    tables = load_runs(runs, warn=False)
    upd, ev = tables.updates, tables.evals
    assert len(upd) == 4 and set(upd["run_id"]) == {RUN_ID}
    assert (upd["staleness"] == S).all() and upd["method"].eq("m2po").all()
    assert list(upd["staleness_logged"]) == [3, 7, 11, 11]
    assert math.isclose(upd["tau"].iloc[0], 0.04)
    acc = accuracy(ev)
    final = acc[acc["update"] == 16]
    assert len(final) == 1
    assert final["acc"].iloc[0] == pytest.approx((0.40 + 0.40 / 3) / 2)  # mean of the paper benchmarks present
    assert int(final["n_benchmarks"].iloc[0]) == 2


def test_duplicate_steps_and_resumed_validation(tmp_path: Path) -> None:
    run = tmp_path / RUN_ID
    lines = _lines()
    # a resumed run: step 5 logged again (the later line wins); a file truncated by verl's "wb" logger
    # starts with the validation at the resumed step 4, whose update count comes from step 5
    resumed = [{"step": 4, "data": _val(0.36)}, _train(5, updates_done=12, version=0, smin=8, **{"actor/lr": 2e-6})]
    _write(run, [*lines, *resumed])
    tidy_run(run)
    _, rows = _read(run / "updates.csv")
    assert [int(r["update"]) for r in rows] == [3, 7, 11, 15] and float(rows[2]["lr"]) == 2e-6
    only = tmp_path / "resumed" / RUN_ID
    _write(only, resumed)
    tidy_run(only)
    _, evals = _read(only / "evals.csv")
    assert {(int(r["update"]), r["benchmark"]) for r in evals} == {(8, "math500"), (8, "aime2024")}


def test_plain_verl_log_without_m2po_keys(tmp_path: Path) -> None:
    run = tmp_path / RUN_ID
    lines = []
    for step in (1, 2):
        d = _train(step, 0, 0, 0)["data"]
        lines.append({"step": step, "data": {k: v for k, v in d.items() if not k.startswith("m2po/")}})
    _write(run, lines)
    tidy_run(run, updates_per_step=4)
    _, rows = _read(run / "updates.csv")
    assert [(int(r["update"]), int(r["step"]), r["staleness"]) for r in rows] == [(3, 0, ""), (7, 1, "")]


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    run = tmp_path / RUN_ID
    path = _write(run, [_lines()[0], "", '{"step": 1, "data": {"a": 1', _lines()[1]])
    with pytest.raises(MetricsFormatError, match=re.escape(f"{path}:3: malformed JSON")):
        tidy_run(run)
    _write(run, [_lines()[0], json.dumps({"data": {}})])
    with pytest.raises(MetricsFormatError, match=r"metrics.jsonl:2: expected verl"):
        tidy_run(run)
    assert not (run / "updates.csv").exists()  # nothing written on error


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / RUN_ID
    assert main([str(run)]) == 1
    assert "metrics.jsonl does not exist" in capsys.readouterr().err
    _write(run, _lines())
    assert main([str(run)]) == 0
    assert all((run / f).exists() for f in ("updates.csv", "evals.csv", "tokens.csv"))


def test_sessions_of_a_relaunched_run_are_read_in_order(tmp_path: Path) -> None:
    """verl's logger truncates metrics.jsonl on a relaunch: the launcher rotates it, tidy reads all sessions."""
    from m2po.verl_plugin.tidy import metrics_files, read_run_metrics, rotate_metrics

    def line(step: int, **data) -> str:
        return json.dumps({"step": step, "data": data}) + "\n"

    assert rotate_metrics(tmp_path) is None  # nothing to keep yet
    (tmp_path / "metrics.jsonl").write_text(line(1, a=1.0) + line(2, a=2.0))
    assert rotate_metrics(tmp_path) == tmp_path / "metrics.session-1.jsonl"
    (tmp_path / "metrics.jsonl").write_text(line(2, a=20.0) + line(3, a=3.0))  # step 2 logged again
    assert rotate_metrics(tmp_path) == tmp_path / "metrics.session-2.jsonl"
    (tmp_path / "metrics.jsonl").write_text(line(4, a=4.0))
    names = [p.name for p in metrics_files(tmp_path)]
    assert names == ["metrics.session-1.jsonl", "metrics.session-2.jsonl", "metrics.jsonl"]
    assert {s: d["a"] for s, d in read_run_metrics(tmp_path).items()} == {1: 1.0, 2: 20.0, 3: 3.0, 4: 4.0}
