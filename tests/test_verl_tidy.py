"""A verl run's updates.jsonl + metrics.jsonl -> updates.csv / evals.csv / tokens.csv (m2po.verl_plugin.tidy),
and the per-update records (m2po.verl_plugin.update_log), from hand-made log lines."""

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
from m2po.staleness import StalenessSchedule  # noqa: E402
from m2po.verl_plugin.tidy import EVAL_COLUMNS, MetricsFormatError, main, tidy_run  # noqa: E402
from m2po.verl_plugin.update_log import UpdateLog, read_update_log, update_records  # noqa: E402

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


def _write(run_dir: Path, lines: list, name: str = "metrics.jsonl") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / name
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


def _record(update: int, version: int, global_step: int, **extra) -> dict:
    """What M2POTrainer appends for one update (s = 8, n = 4: training step i = global step - 3)."""
    rec = {
        "update": update,
        "step": global_step - 3,
        "global_step": global_step,
        "minibatch": update % N,
        "staleness": update - version,
        "behaviour_version": version,
        "reward_mean": 0.40 + global_step / 100,
        "entropy": 0.3,
        "loss": -0.01 * update,
        **{k: 0.001 * (i + 1) + update for i, k in enumerate(METRIC_NAMES)},
        "grad_norm": 0.5 + update,
        "lr": 1e-6,
    }
    rec.update(extra)
    return rec


def _records() -> list[dict]:
    """The updates of _lines()'s training steps 3-6, with StalenessSchedule's behaviour versions."""
    schedule = StalenessSchedule(S, N)
    return [_record(u, schedule.behaviour_version(u), 3 + u // N) for u in range(4 * N)]


def _run(run_dir: Path, lines: list | None = None, records: list | None = None) -> Path:
    _write(run_dir, _lines() if lines is None else lines)
    _write(run_dir, [{"session": {"updates_done": 0, "global_step": 0}}, *(records or _records())], "updates.jsonl")
    return run_dir


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_columns_are_the_contract(tmp_path: Path) -> None:
    run = _run(tmp_path / "runs" / RUN_ID)
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


def test_one_row_per_optimizer_update(tmp_path: Path) -> None:
    run = _run(tmp_path / RUN_ID)
    tidy_run(run)
    _, rows = _read(run / "updates.csv")
    schedule = StalenessSchedule(S, N)
    # one row per update of the 4 training steps; prefill steps make none
    assert [int(r["update"]) for r in rows] == list(range(16))
    assert [int(r["step"]) for r in rows] == [u // N for u in range(16)]
    assert [int(r["staleness"]) for r in rows] == [schedule.expected_staleness(u) for u in range(16)]
    assert [int(r["staleness"]) for r in rows] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 8, 9, 10, 11]
    for r in rows:
        assert int(r["update"]) - int(r["behaviour_version"]) == int(r["staleness"])
    r = rows[6]  # update 6: global step 4
    assert float(r["reward_mean"]) == pytest.approx(0.44)  # the step's value, on each of its rows
    assert [r["reward_mean"] for r in rows[4:8]] == [rows[4]["reward_mean"]] * 4
    assert float(r["loss"]) == pytest.approx(-0.06)
    assert float(r["grad_norm"]) == pytest.approx(6.5)
    assert float(r["lr"]) == 1e-6 and float(r["entropy"]) == 0.3
    for i, k in enumerate(METRIC_NAMES):
        assert float(r[k]) == pytest.approx(0.001 * (i + 1) + 6), k


def test_missing_values_are_empty_cells(tmp_path: Path) -> None:
    rec = _record(0, 0, 3, lr=None, grad_norm=None, reward_mean=None)
    del rec["clipped_frac"]
    run = _run(tmp_path / RUN_ID, records=[rec])
    tidy_run(run)
    _, (r,) = _read(run / "updates.csv")
    assert r["lr"] == r["grad_norm"] == r["reward_mean"] == r["clipped_frac"] == ""
    assert float(r["loss"]) == 0.0


def test_a_resumed_session_replaces_the_updates_it_redoes(tmp_path: Path) -> None:
    """Session 1 logged steps 3-6 and was killed; its latest checkpoint was after step 4 (8 updates done).
    Session 2 redoes steps 5-6, and stops after step 5: session 1's update records 8-15 are discarded, the
    redone 8-11 kept, 12-15 (a timeline that was abandoned) gone."""
    run = tmp_path / RUN_ID
    redone = [_record(u, 0, 5, loss=100.0 + u) for u in range(8, 12)]
    session_2 = [{"session": {"updates_done": 8, "global_step": 4}}, *redone]
    path = _write(run, [{"session": {"updates_done": 0, "global_step": 0}}, *_records(), *session_2], "updates.jsonl")
    _write(run, _lines())
    tidy_run(run)
    _, rows = _read(run / "updates.csv")
    assert [int(r["update"]) for r in rows] == list(range(12))
    assert [float(r["loss"]) for r in rows[8:]] == [108.0, 109.0, 110.0, 111.0]
    # a record written twice within a session (not possible from the trainer, but a log may be merged): later wins
    with path.open("a") as f:
        f.write(json.dumps(_record(11, 0, 5, loss=-1.0)) + "\n")
    assert read_update_log(path)[-1]["loss"] == -1.0


def test_torn_lines_from_a_killed_write(tmp_path: Path) -> None:
    """A kill in the middle of a write leaves an unterminated last line: reading ignores it, and the next
    session's writer cuts it off before its marker, so the file stays one JSON object per line."""
    run = tmp_path / RUN_ID
    run.mkdir()
    log = UpdateLog(run / "updates.jsonl")
    log.start_session(0, 0)
    log.append(_records()[:4])
    with (run / "updates.jsonl").open("a") as f:
        f.write(json.dumps(_records()[4])[:37])  # update 4's record, cut short
    assert [r["update"] for r in read_update_log(run / "updates.jsonl")] == [0, 1, 2, 3]
    log.start_session(4, 3)  # resumed from the step-3 checkpoint (4 updates done)
    log.append(_records()[4:8])
    lines = (run / "updates.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines) and len(lines) == 1 + 4 + 1 + 4
    assert [r["update"] for r in read_update_log(run / "updates.jsonl")] == list(range(8))


def test_update_records_from_the_actor_metrics() -> None:
    """What M2POTrainer turns verl's _update_actor metrics (one value per mini-batch) into: a mini-batch whose
    optimizer step verl skipped (non-finite grad norm) is no update; the step's values repeat on every row."""
    n = 4
    metrics = {
        "actor/grad_norm": [1.0, math.nan, 3.0, 4.0],
        "actor/loss": [0.1, 0.2, 0.3, 0.4],
        "actor/update_lr": [1e-3, 1e-3, 1e-3, 1e-3],
        "actor/lr": [5e-4],  # verl's: after the scheduler's step, once per step (not per update)
        **{f"actor/m2po/{k}": [float(j) + i / 100 for j in range(n)] for i, k in enumerate(METRIC_NAMES)},
        "actor/pg_clipfrac": [9.0] * n,  # verl's name loses to ours
    }
    recs = update_records(
        metrics, first_update=20, behaviour_version=13, step=5, global_step=7, updates_per_step=n,
        step_values={"reward_mean": 0.5, "entropy": 1.5},
    )  # fmt: skip
    assert [(r["update"], r["minibatch"], r["staleness"]) for r in recs] == [(20, 0, 7), (21, 2, 8), (22, 3, 9)]
    assert [r["grad_norm"] for r in recs] == [1.0, 3.0, 4.0] and [r["loss"] for r in recs] == [0.1, 0.3, 0.4]
    assert all(r["lr"] == 1e-3 and r["reward_mean"] == 0.5 and r["entropy"] == 1.5 for r in recs)
    assert all(r["step"] == 5 and r["global_step"] == 7 and r["behaviour_version"] == 13 for r in recs)
    assert [r["m2"] for r in recs] == [0.0, 2.0, 3.0] and recs[1]["clipped_frac"] == 2.03
    # verl's own loss names, for a run with one of verl's losses
    plain = update_records(
        {"actor/grad_norm": [1.0], "actor/pg_clipfrac": [0.25], "actor/ppo_kl": [0.01]},
        first_update=0, behaviour_version=0, step=0, global_step=1, updates_per_step=1,
    )  # fmt: skip
    assert plain[0]["clipped_frac"] == 0.25 and plain[0]["kl_k1"] == 0.01 and plain[0]["m2"] is None
    with pytest.raises(ValueError, match="grad_norm"):
        update_records({"actor/loss": [0.1]}, first_update=0, behaviour_version=0, step=0, global_step=1,
                       updates_per_step=1)  # fmt: skip


def test_eval_rows(tmp_path: Path) -> None:
    run = _run(tmp_path / RUN_ID)
    tidy_run(run)
    _, rows = _read(run / "evals.csv")
    math500 = [r for r in rows if r["benchmark"] == "math500"]
    assert [(int(r["update"]), float(r["avg_at_k"])) for r in math500] == [(0, 0.30), (0, 0.31), (8, 0.35), (16, 0.40)]
    assert all(r["k"] == "4" for r in rows)
    assert all(r[c] == "" for r in rows for c in ("ci_low", "ci_high", "n_problems", "n_timeouts"))
    assert sorted({r["benchmark"] for r in rows}) == ["aime2024", "math500"]


def test_load_runs_reads_the_result(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _run(runs / RUN_ID)
    tidy_run(runs / RUN_ID)
    tables = load_runs(runs, warn=False)
    upd, ev = tables.updates, tables.evals
    assert len(upd) == 16 and set(upd["run_id"]) == {RUN_ID}
    assert (upd["staleness"] == S).all() and upd["method"].eq("m2po").all()
    assert list(upd["staleness_logged"]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 8, 9, 10, 11]
    assert math.isclose(upd["tau"].iloc[0], 0.04)
    acc = accuracy(ev)
    final = acc[acc["update"] == 16]
    assert len(final) == 1
    assert final["acc"].iloc[0] == pytest.approx((0.40 + 0.40 / 3) / 2)  # mean of the paper benchmarks present
    assert int(final["n_benchmarks"].iloc[0]) == 2


def test_duplicate_steps_and_resumed_validation(tmp_path: Path) -> None:
    run = tmp_path / RUN_ID
    # a resumed run: step 5 logged again (the later line wins); a file truncated by verl's "wb" logger
    # starts with the validation at the resumed step 4, whose update count comes from step 5
    resumed = [{"step": 4, "data": _val(0.36)}, _train(5, updates_done=12, version=0, smin=8)]
    only = _run(tmp_path / "resumed" / RUN_ID, lines=resumed)
    tidy_run(only)
    _, evals = _read(only / "evals.csv")
    assert {(int(r["update"]), r["benchmark"]) for r in evals} == {(8, "math500"), (8, "aime2024")}
    _run(run, lines=[*_lines(), *resumed])
    tidy_run(run)
    _, evals = _read(run / "evals.csv")
    math500 = [(int(r["update"]), float(r["avg_at_k"])) for r in evals if r["benchmark"] == "math500"]
    assert math500 == [(0, 0.30), (0, 0.31), (8, 0.36), (16, 0.40)]  # step 4 logged twice: the later line


def test_a_log_without_update_records_is_refused(tmp_path: Path) -> None:
    """Step averages cannot be split into updates: a run without updates.jsonl (an older m2po, or verl's own
    trainer) fails with a message saying so; one that never trained gets a header-only updates.csv."""
    run = tmp_path / RUN_ID
    _write(run, _lines())
    with pytest.raises(MetricsFormatError, match=r"updates.jsonl does not exist.*training steps \(3\.\.6\)"):
        tidy_run(run)
    assert not (run / "updates.csv").exists()
    only_validation = tmp_path / "val" / RUN_ID
    _write(only_validation, [_lines()[0]])
    tidy_run(only_validation)
    assert _read(only_validation / "updates.csv") == (UPDATE_COLUMNS, [])
    assert len(_read(only_validation / "evals.csv")[1]) == 2


def test_malformed_lines_name_file_and_line(tmp_path: Path) -> None:
    run = tmp_path / RUN_ID
    _run(run)
    path = _write(run, [_lines()[0], "", '{"step": 1, "data": {"a": 1', _lines()[1]])
    with pytest.raises(MetricsFormatError, match=re.escape(f"{path}:3: malformed JSON")):
        tidy_run(run)
    _write(run, [_lines()[0], json.dumps({"data": {}})])
    with pytest.raises(MetricsFormatError, match=r"metrics.jsonl:2: expected verl"):
        tidy_run(run)
    assert not (run / "updates.csv").exists()  # nothing written on error
    _write(run, _lines())
    log = _write(run, [_records()[0], '{"update": 1, "loss"', _records()[2]], "updates.jsonl")
    with pytest.raises(MetricsFormatError, match=re.escape(f"{log}:2: malformed JSON")):
        tidy_run(run)
    _write(run, [_records()[0], {"step": 3}], "updates.jsonl")
    with pytest.raises(MetricsFormatError, match=r"updates.jsonl:2: expected an update record"):
        tidy_run(run)
    assert not (run / "updates.csv").exists()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / RUN_ID
    assert main([str(run)]) == 1
    assert "holds neither updates.jsonl nor metrics.jsonl" in capsys.readouterr().err
    _run(run)
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
