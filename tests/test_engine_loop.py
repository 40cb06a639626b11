"""The RL loop: exact staleness (paper §3.2), on-policy ratio 1 at s = 0, bit-exact resume after
SIGKILL, and config errors that name the key before any training starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

FAST = [
    "warm_start.steps=400",
    "rollout.prompts_per_batch=8",
    "rollout.group_size=4",
    "rollout.max_new_tokens=4",
    "run.eval_problems=32",
    "run.progress=false",
    "run.queue_in_memory=2",
]


@pytest.fixture(scope="module", autouse=True)
def shared_warm_start(tmp_path_factory):
    """One short warm start (400 SFT steps) shared by every run of this module, like the grid does."""
    global _CACHE
    _CACHE = str(tmp_path_factory.mktemp("warm"))
    res = train(
        tmp_path_factory.mktemp("init") / "run", ["run.total_updates=4", "run.eval_every=4", "run.checkpoint_every=4"]
    )
    assert res.returncode == 0, res.stderr


_CACHE = ""


def train(
    out: Path, overrides: list[str], resume: bool = False, **popen
) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [sys.executable, "-m", "m2po.cli", "train", "--out", str(out)]
    for o in [*FAST, f"warm_start.cache_dir={_CACHE}", *overrides]:
        cmd += ["--set", o]
    if resume:
        cmd.append("--resume")
    if popen:
        return subprocess.Popen(cmd, **popen)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_on_policy_first_minibatch_has_ratio_exactly_one(tmp_path):
    res = train(
        tmp_path / "s0",
        [
            "algo.loss=grpo",
            "algo.staleness=0",
            "run.total_updates=24",
            "run.eval_every=24",
            "run.checkpoint_every=24",
            "optim.lr=3e-3",
        ],
    )
    assert res.returncode == 0, res.stderr
    log = pd.read_csv(tmp_path / "s0" / "updates.csv")
    first = log[log["update"] % 4 == 0]
    assert len(first) == 6
    assert (first.ratio_min == 1.0).all() and (first.ratio_max == 1.0).all() and (first.m2_all == 0.0).all()
    assert (log.staleness == log["update"] % 4).all()
    later = log[log["update"] % 4 != 0]
    assert (later.grad_norm > 0).any(), "the policy must move within a rollout batch"
    assert (later.ratio_max > 1.0).any()


def test_staleness_32_logs_32_to_35_after_warmup(tmp_path):
    res = train(
        tmp_path / "s32",
        ["algo.loss=m2po", "algo.staleness=32", "run.total_updates=64", "run.eval_every=64", "run.checkpoint_every=64"],
    )
    assert res.returncode == 0, res.stderr
    log = pd.read_csv(tmp_path / "s32" / "updates.csv")
    warm = log[log["update"] < 32]
    assert (warm.staleness == warm["update"]).all() and (warm.behaviour_version == 0).all()
    after = log[log["update"] >= 32]
    assert after.staleness.tolist() == [32, 33, 34, 35] * 8
    assert (after.behaviour_version == after["update"] - after.staleness).all()


def _run_dir_contents(run: Path) -> tuple[bytes, bytes, dict[str, torch.Tensor]]:
    return (
        (run / "updates.csv").read_bytes(),
        (run / "evals.csv").read_bytes(),
        torch.load(run / "final_model.pt", weights_only=True),
    )


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    opts = [
        "algo.loss=m2po",
        "algo.staleness=8",
        "run.total_updates=96",
        "run.eval_every=16",
        "run.checkpoint_every=8",
        "optim.lr=3e-3",
    ]
    ref = train(tmp_path / "ref", opts)
    assert ref.returncode == 0, ref.stderr

    killed = tmp_path / "killed"
    proc = train(killed, opts, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        ckpt = killed / "checkpoints" / "last.pt"
        log = killed / "updates.csv"
        if ckpt.exists() and log.exists() and log.read_text().count("\n") - 1 >= 48:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    rows_at_kill = (killed / "updates.csv").read_text().count("\n") - 1
    assert 0 < rows_at_kill < 96, "the kill must land mid-run"

    res = train(killed, opts, resume=True)
    assert res.returncode == 0, res.stderr
    ref_u, ref_e, ref_w = _run_dir_contents(tmp_path / "ref")
    got_u, got_e, got_w = _run_dir_contents(killed)
    assert got_u == ref_u
    assert got_e == ref_e
    assert ref_w.keys() == got_w.keys()
    for k in ref_w:
        assert torch.equal(ref_w[k], got_w[k]), k


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("algo.staleness=-4", "algo.staleness"),
        ("algo.staleness=30", "algo.staleness"),
        ("algo.loss=ppo_typo", "algo.loss"),
        ("algo.stalenes=32", "algo.stalenes"),
        ("algo.loss_params={tau_typo: 1}", "algo.loss_params.tau_typo"),
        ("optim.lr=-1", "optim.lr"),
        ("run.total_updates=30", "run.total_updates"),
    ],
)
def test_bad_config_fails_before_training_and_names_the_key(tmp_path, override, key):
    out = tmp_path / "bad"
    res = train(out, [override])
    assert res.returncode == 2
    assert key in res.stderr
    assert not (out / "updates.csv").exists()


def test_refuses_to_overwrite_an_existing_run(tmp_path):
    opts = ["run.total_updates=4", "run.eval_every=4", "run.checkpoint_every=4"]
    assert train(tmp_path / "r", opts).returncode == 0
    again = train(tmp_path / "r", opts)
    assert again.returncode == 2 and "--resume" in again.stderr
