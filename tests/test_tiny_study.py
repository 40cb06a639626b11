"""The tiny study's design: the grid meets the pre-registered seed floors, the stress profile is the
same grid without gradient clipping, shards cover the grid exactly once, and the regime targets and
the power table compute what the protocol says (hand-computed on synthetic runs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from m2po.analysis.cells import Cells
from m2po.analysis.claims import judge_claims
from m2po.analysis.power import power_frame
from m2po.analysis.regime import regime_table
from m2po.analysis.runs import load_runs
from m2po.analysis.synthetic import SynthCell, scenario, write_synthetic_runs
from m2po.pipeline import RunSpec, expand_grid, plan_shards, run_cost, train_overrides, warm_start_overrides

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "workflow/config/tiny.yaml").read_text())
STRESS = yaml.safe_load((ROOT / "workflow/config/tiny-stress.yaml").read_text())


def _seeds(runs: list[RunSpec], model: str, method: str, s: int) -> set[int]:
    return {r.seed for r in runs if (r.model, r.method, r.staleness, r.tau) == (model, method, s, None)}


def test_claim_cells_meet_the_seed_floors() -> None:
    runs = expand_grid(TINY)
    small, large = TINY["models"]
    stale = TINY["stale"]
    sweep = {r.staleness for r in runs if r.model == small and r.method == "grpo"}
    assert {0, stale} < sweep  # an intermediate staleness for claim 2's "steadily"
    for model, floor in ((small, 8), (large, 4)):
        cells = [("grpo", 0), ("grpo", stale), ("grpo_notr", stale), ("m2po", stale)]
        if model == small:
            cells += [("grpo", s) for s in sweep]
        for method, s in cells:
            assert len(_seeds(runs, model, method, s)) >= floor, (model, method, s)


def test_stress_profile_is_the_same_grid_without_gradient_clipping() -> None:
    differ = {k for k in TINY.keys() | STRESS.keys() if TINY.get(k) != STRESS.get(k)}
    assert differ == {"profile", "results", "train_overrides"}
    assert STRESS["profile"] == "tiny-stress" and STRESS["results"] == "results/tiny-stress"
    extra = {k: v for k, v in STRESS["train_overrides"].items() if TINY["train_overrides"].get(k) != v}
    assert extra == {"optim.grad_clip": "null"}
    assert expand_grid(TINY) == expand_grid(STRESS)
    profile = yaml.safe_load((ROOT / "workflow/profiles/tiny-stress/config.yaml").read_text())
    assert profile["configfile"] == "workflow/config/tiny-stress.yaml"


def test_block_seeds_override_the_top_level_seeds() -> None:
    config = {
        "seeds": [0, 1, 2],
        "models": ["a"],
        "grid": {
            "x": {"methods": ["grpo"], "staleness": [0]},
            "y": {"methods": ["m2po"], "staleness": [4], "seeds": [7]},
        },
    }
    assert expand_grid(config) == [RunSpec("a", "grpo", 0, s) for s in (0, 1, 2)] + [RunSpec("a", "m2po", 4, 7)]


def test_shards_cover_the_grid_once_per_model_longest_first() -> None:
    runs = expand_grid(TINY)
    shards = plan_shards(TINY, runs)
    planned = [r for sh in shards for r in sh.runs]
    assert sorted(planned, key=str) == sorted(runs, key=str) and len(planned) == len(set(planned))
    assert all({r.model for r in sh.runs} == {sh.model} for sh in shards)
    assert all(sh.cost == pytest.approx(sum(run_cost(r, TINY) for r in sh.runs)) for sh in shards)
    costs = [sh.cost for sh in shards]
    assert costs[0] == max(costs) and min(len(sh.runs) for sh in shards[-2:]) == 1  # large first, small last
    assert len({sh.name for sh in shards}) == len(shards)
    # the cost model: per-update x updates + the stale warm-up's batches + a fixed part
    c = TINY["cost"]
    spec = RunSpec("0.1M", "grpo", 64, 0)
    expected = c["per_update"]["0.1M"] * 400 + c["per_prefill_batch"]["0.1M"] * 64 / 4 + c["per_run"]
    assert run_cost(spec, TINY) == pytest.approx(expected)


def test_warm_start_job_uses_the_runs_task_keys() -> None:
    ws = warm_start_overrides("0.3M", TINY)
    run = train_overrides(RunSpec("0.3M", "m2po", 64, 3), TINY)
    keys = ("model.size", "task.", "warm_start.", "rollout.max_new_tokens")
    assert [o for o in ws if o.startswith(keys)] == [o for o in run if o.startswith(keys)]
    assert "task.format=worked" in ws


def _regime_results(tmp_path: Path, converged: bool) -> Path:
    acc = [0.5, 0.6, 0.7, 0.8] if converged else [0.5, 0.8, 0.7, 0.6]
    cells = {
        ("0.1M", "grpo", 0, None): SynthCell(acc, clip=0.002, noise=0.0, eval_se=0.01),
        ("0.1M", "grpo", 8, None): SynthCell(acc, clip=0.03, noise=0.0, eval_se=0.01),
    }
    write_synthetic_runs(tmp_path / "runs", cells, n_updates=24, eval_every=8)
    (tmp_path / "regime").mkdir()
    stats = {"share_below_low": 0.81, "share_above_high": 0.12, "n_tokens": 1000, "k": 4, "mean": 0.09}
    (tmp_path / "regime" / "warm_start-0.1M.json").write_text(json.dumps(stats))
    return tmp_path


def test_regime_table_against_hand_computed_targets(tmp_path) -> None:
    root = _regime_results(tmp_path, converged=True)
    table = regime_table(Cells(load_runs(root / "runs", warn=False)), root, stale=8).set_index("target")
    assert table.loc["warm start: share of tokens < 0.1 nats", "measured"] == 0.81
    assert table.loc["warm start: share of tokens < 0.1 nats", "met"] == "met"
    assert table.loc["warm start: share of tokens > 0.5 nats", "measured"] == 0.12
    on = table.loc["GRPO clipped fraction, s = 0"]
    assert on["measured"] == pytest.approx(0.002) and on["met"] == "met"
    ratio = table.loc["GRPO clipped fraction, s = 8 / s = 0"]
    assert ratio["measured"] == pytest.approx(15.0) and ratio["met"] == "met"
    conv = table.loc["GRPO s = 0 converges: last-quarter mean − peak"]
    assert conv["measured"] == pytest.approx(0.0) and conv["met"] == "met"
    assert conv["se"] == pytest.approx(0.01 / math.sqrt(2))  # seeds agree: the evaluation s.e. / sqrt(2 seeds)


def test_regime_table_flags_a_run_that_did_not_converge(tmp_path) -> None:
    root = _regime_results(tmp_path, converged=False)
    table = regime_table(Cells(load_runs(root / "runs", warn=False)), root, stale=8).set_index("target")
    conv = table.loc["GRPO s = 0 converges: last-quarter mean − peak"]
    assert conv["measured"] == pytest.approx(0.6 - 0.8) and conv["met"] == "not met"


def test_power_frame_intervals_and_ruled_out_effects(tmp_path) -> None:
    write_synthetic_runs(tmp_path / "runs", scenario("paper", models=("0.1M",), stale=16), n_updates=24)
    cells = Cells(load_runs(tmp_path / "runs", warn=False))
    verdicts = judge_claims(cells, 16)
    frame = power_frame(verdicts, cells, 16).set_index("part")
    assert set(frame.index) == {v.part for v in verdicts if v.part != "all"}
    # by hand from the scenario: peaks GRPO s=0 0.8, s=16 0.68, no-TR 0.8 (final 0.2), M2PO s=16 0.8; two seeds at
    # +-0.01 give each cell a seed s.e. of 0.01 (> the evaluation s.e. 0.01 / sqrt 2), a difference sqrt(2) * 0.01
    hand = {"1a prosperity": 0.0, "1b collapse": 0.6, "2a accuracy degrades": 0.12, "3a matches on-policy": 0.0,
            "3b beats stale GRPO": 0.12}  # fmt: skip
    for part, value in hand.items():
        row = frame.loc[part]
        assert row["value"] == pytest.approx(value) and row["se"] == pytest.approx(0.01 * math.sqrt(2))
        assert row["mde"] == pytest.approx(2 * row["se"])
        assert (row["lo"], row["hi"]) == pytest.approx((row["value"] - 2 * row["se"], row["value"] + 2 * row["se"]))
    # claim 4: M2PO clip 0.003 vs GRPO 0.05; each cell's s.e. is the steady s.e. of one run / sqrt(2 seeds)
    # (updates >= 16 of 24 alternate +-10 %: per-run s.e. 0.1 c / sqrt(7), the seeds agree)
    row = frame.loc["4 clip order of magnitude"]
    a, b = 0.003, 0.05
    se_a, se_b = 0.1 * a / math.sqrt(14), 0.1 * b / math.sqrt(14)
    assert row["value"] == pytest.approx(a / b)
    assert row["lo"] == pytest.approx((a - 2 * se_a) / (b + 2 * se_b))
    assert row["hi"] == pytest.approx((a + 2 * se_a) / (b - 2 * se_b))
    assert row["se"] == pytest.approx(a / b * math.hypot(se_a / a, se_b / b))
    inconclusive = frame[frame["verdict"] == "inconclusive at this scale"]
    assert all(text.startswith("the data rule out") for text in inconclusive["ruled_out"])


def test_power_frame_says_what_an_inconclusive_part_rules_out(tmp_path) -> None:
    cells = scenario("paper", models=("0.1M",), stale=16)
    # M2PO s=16 peaks 0.01 above GRPO s=16 (0.68) with seeds +-0.05 apart: 3b can neither hold nor fail
    cells[("0.1M", "m2po", 16, None)] = SynthCell([0.5, 0.55, 0.62, 0.69], clip=0.003, noise=0.05)
    write_synthetic_runs(tmp_path / "runs", cells, n_updates=24)
    study = Cells(load_runs(tmp_path / "runs", warn=False))
    row = power_frame(judge_claims(study, 16), study, 16).set_index("part").loc["3b beats stale GRPO"]
    se = math.hypot(0.05, 0.01)  # the seed s.e. of each cell (> the evaluation s.e. 0.01 / sqrt 2)
    assert row["verdict"] == "inconclusive at this scale"
    assert (row["value"], row["se"]) == pytest.approx((0.01, se))
    assert (row["lo"], row["hi"]) == pytest.approx((0.01 - 2 * se, 0.01 + 2 * se))
    assert row["ruled_out"].startswith("the data rule out")
