"""m2po.analysis: run-id parsing, loading (skips, partial runs), accuracy, selection, smoothing, seed bands."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest

from m2po.analysis import (
    DEFAULT_TAU,
    accuracy,
    cell_stat,
    load_runs,
    order_models,
    parse_run_id,
    per_run_accuracy,
    scan_runs,
    seed_band,
    select,
    smooth,
    steady_mean,
)
from m2po.analysis.synthetic import UPDATE_COLUMNS, SynthCell, write_synthetic_runs


@pytest.mark.parametrize(
    ("run_id", "expected"),
    [
        ("0.1M-m2po-s32-seed0", ("0.1M", "m2po", 32, 0, None)),
        ("0.1M-m2po-s32-seed2-tau0.08", ("0.1M", "m2po", 32, 2, 0.08)),
        ("1M-grpo-s0-seed1", ("1M", "grpo", 0, 1, None)),
        ("1M-grpo_notr-s32-seed0", ("1M", "grpo_notr", 32, 0, None)),
        ("Qwen2.5-Math-7B-m2po_released-s256-seed1-tau0.08", ("Qwen2.5-Math-7B", "m2po_released", 256, 1, 0.08)),
        ("Llama-3.2-3B-Instruct-decoupled_ppo-s256-seed0", ("Llama-3.2-3B-Instruct", "decoupled_ppo", 256, 0, None)),
        ("Qwen3-1.7B-Base-grpo-s256-seed0-tau1e-3", ("Qwen3-1.7B-Base", "grpo", 256, 0, 0.001)),
    ],
)
def test_parse_run_id(run_id: str, expected: tuple) -> None:
    m = parse_run_id(run_id)
    assert (m.model, m.method, m.staleness, m.seed, m.tau) == expected
    assert m.run_id == run_id


@pytest.mark.parametrize("bad", ["0.1M-ppo-s32-seed0", "0.1M-m2po-s32", "m2po-s32-seed0", "0.1M-m2po-sX-seed0"])
def test_parse_run_id_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="is not <model>-<method>"):
        parse_run_id(bad)


def test_update_columns_match_engine() -> None:
    from m2po.engine.loop import UPDATE_COLUMNS as ENGINE

    assert UPDATE_COLUMNS == ENGINE


def _tree(tmp_path, **kw):
    cells = {
        ("0.1M", "grpo", 0, None): SynthCell([0.5, 0.6, 0.7, 0.8]),
        ("0.1M", "m2po", 8, None): SynthCell([0.5, 0.55, 0.6, 0.65], seeds=(0, 1, 2), noise=0.03),
        ("0.1M", "m2po", 8, 0.16): SynthCell([0.4, 0.4, 0.4, 0.4], seeds=(0,), tau_in_id=True),
    }
    write_synthetic_runs(tmp_path / "runs", cells, **kw)
    return tmp_path / "runs"


def test_load_runs_skips_and_flags(tmp_path, caplog) -> None:
    runs = _tree(tmp_path)
    (runs / "not-a-run").mkdir()
    empty = runs / "0.1M-grpo-s8-seed0"
    empty.mkdir()
    (empty / "updates.csv").write_text("update,loss\n")
    partial = runs / "0.1M-gspo-s8-seed0"
    partial.mkdir()
    (partial / "config.yaml").write_text("run: {total_updates: 100}\n")
    (partial / "updates.csv").write_text("update,clipped_frac\n0,0.1\n1,0.2\n2,0.")  # last row cut mid-write
    with caplog.at_level(logging.WARNING, logger="m2po.analysis"):
        tables = load_runs(runs)
    text = caplog.text
    assert "not-a-run" in text and "0.1M-grpo-s8-seed0" in text and "partial" in text
    assert set(tables.updates["run_id"]) == {
        "0.1M-grpo-s0-seed0", "0.1M-grpo-s0-seed1", "0.1M-m2po-s8-seed0", "0.1M-m2po-s8-seed1",
        "0.1M-m2po-s8-seed2", "0.1M-m2po-s8-seed0-tau0.16", "0.1M-gspo-s8-seed0",
    }  # fmt: skip
    inv = scan_runs(runs, warn=False).set_index("run_id")
    assert inv.loc["0.1M-gspo-s8-seed0", "complete"] == False  # noqa: E712
    assert inv.loc["0.1M-grpo-s0-seed0", "complete"] == True  # noqa: E712
    assert inv.loc["0.1M-grpo-s0-seed0", "wall_s"] == 60.0
    assert not load_runs(runs, include_partial=False, warn=False).updates["run_id"].eq("0.1M-gspo-s8-seed0").any()
    # the per-update staleness of updates.csv is kept beside the nominal one
    u = tables.updates[tables.updates["run_id"] == "0.1M-m2po-s8-seed0"]
    assert (u["staleness"] == 8).all() and u["staleness_logged"].max() == 8 and u["staleness_logged"].min() == 0


def test_tau_resolution_and_select(tmp_path) -> None:
    tables = load_runs(_tree(tmp_path), warn=False)
    u = tables.updates
    assert u[u["method"] == "grpo"]["tau"].isna().all()
    taus = u[u["method"] == "m2po"].groupby("run_id")["tau"].first()
    assert taus["0.1M-m2po-s8-seed0"] == DEFAULT_TAU and taus["0.1M-m2po-s8-seed0-tau0.16"] == 0.16
    assert select(u, method="m2po")["run_id"].nunique() == 3  # the default τ only
    assert select(u, method="m2po", tau="any")["run_id"].nunique() == 4
    assert select(u, method="m2po", tau=0.16)["run_id"].nunique() == 1
    assert select(u, method="m2po", seeds=[0, 2])["run_id"].nunique() == 2


def test_accuracy_tiny_and_verl_agree(tmp_path) -> None:
    tiny = accuracy(load_runs(_tree(tmp_path / "a"), warn=False).evals)
    verl = accuracy(load_runs(_tree(tmp_path / "b", eval_format="verl"), warn=False).evals)
    assert len(tiny) == len(verl) == 6 * 4
    np.testing.assert_allclose(tiny["acc"], verl["acc"], atol=1e-12)
    np.testing.assert_allclose(verl["acc_se"], 0.01, rtol=1e-9)
    assert (verl["n_benchmarks"] == 8).all()


def test_per_run_and_cell_stat(tmp_path) -> None:
    per_run = per_run_accuracy(accuracy(load_runs(_tree(tmp_path), warn=False).evals))
    cell = select(per_run, method="m2po", staleness=8)
    assert sorted(cell["peak"].round(6)) == [0.62, 0.65, 0.68]
    st = cell_stat(cell, "peak", "peak_se")
    assert st.n == 3 and math.isclose(st.mean, 0.65)
    assert math.isclose(st.se, 0.03 / math.sqrt(3))  # seed s.e. > eval s.e./√3
    assert (cell["peak_update"] == 24).all() and (cell["acc0"] < cell["peak"]).all()
    one = cell_stat(select(per_run, method="m2po", tau=0.16), "final", "final_se")
    assert one.n == 1 and math.isclose(one.se, 0.01)  # one seed: the evaluation's own s.e.
    assert "± 0.010 (n=1)" in one.fmt(3)


def test_seed_band_smooth_and_steady_mean() -> None:
    df = pd.DataFrame(
        {
            "run_id": ["a"] * 4 + ["b"] * 4,
            "update": [0, 1, 2, 3] * 2,
            "staleness": [2] * 8,
            "v": [1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    for c in ("model", "method", "seed", "tau"):
        df[c] = 0
    band = seed_band(df, "v")
    assert list(band["mean"]) == [2.0, 3.0, 4.0, 5.0]
    np.testing.assert_allclose(band["se"], 1.0)
    np.testing.assert_allclose(band["hi"] - band["lo"], 2.0)
    sm = smooth(df, "v", 3)
    assert list(sm[sm["run_id"] == "a"]["v"]) == [1.5, 2.0, 3.0, 3.5]
    assert smooth(df, "v", 1) is df
    st = steady_mean(df, "v").set_index("run_id")
    assert st.loc["a", "mean"] == 3.5 and st.loc["b", "count"] == 2  # updates >= s = 2 only


def test_order_models() -> None:
    names = ["Qwen2.5-32B", "1M", "Qwen3-1.7B-Base", "0.1M", "Llama-3.2-3B-Instruct", "Qwen2.5-Math-7B", "custom"]
    assert order_models(names) == [
        "0.1M", "1M", "Qwen3-1.7B-Base", "Llama-3.2-3B-Instruct", "Qwen2.5-Math-7B", "Qwen2.5-32B", "custom",
    ]  # fmt: skip
