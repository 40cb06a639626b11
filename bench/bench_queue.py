"""The stale queue on disk over a paper run: before (the whole queue saved into every checkpoint) and after
(each batch written once, checkpoints hold references; ``m2po.staleness_store``).

Paper shape: Qwen2.5-Math-7B at s = 256 (k = s / n = 64 waiting batches, n = 4 updates per step), 1000
training steps + 64 prefill steps, a checkpoint every 50 global steps (and at the last), all kept for
evaluation (``max_actor_ckpt_to_keep`` unset). A rollout batch as the trainer pushes it is 2048 sequences
(256 prompts × 8) of 1536 prompt + 2560 response tokens: int64 ``prompts``, ``responses``,
``response_mask``, ``input_ids``, ``attention_mask``, ``position_ids`` and float32 ``rm_scores``,
``rollout_log_probs``, ``old_log_probs``, ``entropys``, i.e. B_7B = 2048 × 192,512 bytes ≈ 394 MB.

Scaled: each synthetic batch has those tensors for ONE sequence (same dtypes and lengths), so the run
moves 1/2048 of the bytes. The 7B figures are measured bytes / measured bytes per batch × B_7B (the
number of batch-sized units, times the real batch size); the small per-file overhead of ``torch.save``
is counted as batch bytes, so they are slightly high. Before = ``StaleQueue.save`` of every waiting batch
per checkpoint plus its spill files (what ``StaleRolloutBuffer.save`` did); after = ``DurableStaleQueue``
as ``M2POTrainer`` drives it (batches of the last k steps, never trained on, are not stored).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

from m2po.staleness import StaleQueue
from m2po.staleness_store import DurableStaleQueue, write_manifest

from .timing import print_table

PROMPT, RESPONSE, SEQUENCES_7B = 1536, 2560, 2048
STALENESS, UPDATES_PER_STEP, TRAIN_STEPS, SAVE_EVERY = 256, 4, 1000, 50
K = STALENESS // UPDATES_PER_STEP
TOTAL = TRAIN_STEPS + K  # global steps, prefill included


def synthetic_batch(step: int, sequences: int = 1) -> dict[str, torch.Tensor]:
    total = PROMPT + RESPONSE
    g = torch.Generator().manual_seed(step)
    ints = {"prompts": PROMPT, "responses": RESPONSE, "response_mask": RESPONSE, "input_ids": total,
            "attention_mask": total, "position_ids": total}  # fmt: skip
    batch = {k: torch.randint(0, 50_000, (sequences, n), generator=g) for k, n in ints.items()}
    for k in ("rm_scores", "rollout_log_probs", "old_log_probs", "entropys"):
        batch[k] = torch.randn(sequences, RESPONSE, generator=g)
    return batch


def batch_bytes(sequences: int) -> int:
    return sum(t.numel() * t.element_size() for t in synthetic_batch(0, sequences).values())


def _disk(root: Path, suffix: str = ".pt") -> int:
    """Bytes of the files under ``root`` ending in ``suffix`` (batch files and old-style queue files)."""
    return sum(
        os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files if f.endswith(suffix)
    )


def run_before(root: Path, save_every: int) -> dict[str, float]:
    """The old buffer: 4 batches in RAM, the rest spilled; every checkpoint streams the whole queue."""
    q = StaleQueue(max_in_memory=4, spill_dir=root / "spill")
    peak, saved = 0, []
    for g in range(1, TOTAL + 1):
        q.push(synthetic_batch(g), policy_version=0)
        peak = max(peak, _disk(root))
        if g > K:
            q.pop()
        if g % save_every == 0 or g == TOTAL:
            path = root / f"global_step_{g}" / "m2po_stale_queue.pt"
            q.save(path)
            saved.append(path.stat().st_size)
        peak = max(peak, _disk(root))
    q.close()
    spilled = (TOTAL - 4) * batch_file_bytes()  # every batch beyond the 4 newest is spilled once
    return {"per_checkpoint": max(saved), "peak": peak, "checkpoints": len(saved), "written": sum(saved) + spilled,
            "manifests": 0}  # fmt: skip


def run_after(root: Path, save_every: int) -> dict[str, float]:
    """The new buffer: each batch written once to the queue folder; a checkpoint writes a manifest."""
    q = DurableStaleQueue(root / "stale_queue", max_in_memory=4)
    peak, saved = 0, []
    for g in range(1, TOTAL + 1):
        if g <= K or g + K <= TOTAL:  # a batch popped after the last step is never stored
            q.push(synthetic_batch(g), policy_version=0)
            q.flush()
            peak = max(peak, _disk(root))  # between the push and the pop: k + 1 waiting
        if g > K:
            q.pop()
        if g % save_every == 0 or g == TOTAL:
            path = root / f"global_step_{g}" / "m2po_stale_queue.json"
            manifest = q.manifest()
            write_manifest(manifest, path)
            saved.append(path.stat().st_size)
            q.commit(manifest)
        q.flush()
        peak = max(peak, _disk(root))
    q.close()
    return {"per_checkpoint": 0, "manifest": max(saved), "peak": peak, "checkpoints": len(saved),
            "written": q.bytes_written, "manifests": _disk(root, ".json")}  # fmt: skip


_FILE_BYTES: list[int] = []


def batch_file_bytes() -> int:
    """Size of one scaled batch as a ``torch.save`` file (tensor bytes + the format's overhead)."""
    if not _FILE_BYTES:
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(synthetic_batch(0), Path(tmp) / "b.pt")
            _FILE_BYTES.append((Path(tmp) / "b.pt").stat().st_size)
    return _FILE_BYTES[0]


def main() -> None:
    unit = batch_file_bytes()  # one scaled batch on disk
    full = batch_bytes(SEQUENCES_7B)  # B_7B
    rows = []
    for name, fn, every in (
        ("before", run_before, SAVE_EVERY),
        ("after", run_after, SAVE_EVERY),
        ("after", run_after, 1),
    ):
        with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
            t0 = time.perf_counter()
            r = fn(Path(tmp), every)
            wall = time.perf_counter() - t0
        batches = r["peak"] / unit
        bound = K + min(every, K) + 1
        per_ckpt = f"{r['per_checkpoint'] / unit * full / 1e9:.3g} GB" if name == "before" else f"{r['manifest']} B"
        rows.append(
            [f"{name}, checkpoint every {every}", r["checkpoints"], per_ckpt,
             f"{r['written'] / unit * full / 1e12:.3g} TB",
             f"{batches:.1f}", f"{batches * full / 1e9:.4g} GB", r["manifests"],
             "-" if name == "before" else f"{bound} ({'met' if batches <= bound + 1e-9 else 'NOT met'})",
             f"{wall:.1f}"]
        )  # fmt: skip
    print_table(
        f"Stale queue on disk, Qwen2.5-Math-7B shape (B_7B = {full / 1e6:.0f} MB/batch), s={STALENESS} (k={K}), "
        f"{TRAIN_STEPS} steps + {K} prefill; scaled 1/{SEQUENCES_7B}: 7B bytes = measured batch bytes / "
        f"{unit} B (one scaled batch file) × B_7B; manifests unscaled",
        ["run", "checkpoints", "written per checkpoint (7B)", "batch bytes written, whole run (7B)",
         "peak batches on disk", "peak on disk (7B)", "manifests on disk (B)", "bound k+min(f,k)+1 batches",
         "bench wall (s)"],
        rows,
    )  # fmt: skip
    print(
        f"The issue's target s/n + 2 = {K + 2} batches is met with a checkpoint every step (f = 1); with f = 50 "
        "a resume from the latest checkpoint needs again the f batches consumed since it, so k + f is the floor."
    )


if __name__ == "__main__":
    main()
