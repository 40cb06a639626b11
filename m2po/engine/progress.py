"""What a training run tells its user while it runs and when it ends.

On a terminal: a tqdm bar whose postfix shows the training reward, the staleness of the data, the
clipped/masked fraction of tokens and the last held-out accuracy. Without one (a pipeline's log
file): the same numbers as one plain line every ``run.log_every`` updates, so a log shows how a run
went rather than one line at its end. At the end, :func:`summary` (peak and final accuracy, wall
time, where the files are, how to extend the run).
"""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path
from typing import IO, Any

from tqdm.auto import tqdm

#: weight of the newest row in the displayed moving averages of reward and clipped fraction
_EMA = 0.2


class TrainProgress:
    """Progress of one run from update ``initial`` to ``total``; :meth:`step` after every rollout batch."""

    def __init__(
        self,
        total: int,
        initial: int,
        name: str,
        enabled: bool = True,
        log_every: int = 0,
        stream: IO[str] | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.total, self.name, self.enabled = total, name, enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log_every = log_every or max(1, total // 20)
        self.started, self.initial = time.monotonic(), initial
        self.last_logged = initial
        self.reward = self.clip = math.nan
        self.acc = math.nan
        self.staleness: int | None = None
        self.bar = (
            tqdm(total=total, initial=initial, desc=name, unit="upd", dynamic_ncols=True, file=self.stream)
            if self.tty
            else None
        )

    def _average(self, old: float, new: float) -> float:
        return new if math.isnan(old) else (1 - _EMA) * old + _EMA * new

    def fields(self) -> dict[str, str]:
        out = {
            "reward": f"{self.reward:.3f}",
            "s": str(self.staleness) if self.staleness is not None else "-",
            "clip": f"{self.clip:.3f}",
        }
        out["acc"] = "-" if math.isnan(self.acc) else f"{self.acc:.3f}"
        return out

    def step(self, update: int, row: dict[str, Any] | None, last_eval: dict[str, Any] | None) -> None:
        """``update``: updates made so far; ``row``: the last row of updates.csv; ``last_eval``: the
        newest evaluation row, if one was just made."""
        if row is not None:
            self.reward = self._average(self.reward, float(row["reward_mean"]))
            self.clip = self._average(self.clip, float(row["clipped_frac"]))
            self.staleness = int(row["staleness"])
        if last_eval:
            self.acc = float(last_eval["sampled_acc"])
        if self.bar is not None:
            self.bar.update(update - self.bar.n)
            self.bar.set_postfix(self.fields(), refresh=False)
        elif self.enabled and (update - self.last_logged >= self.log_every or update >= self.total):
            self.last_logged = update
            elapsed = time.monotonic() - self.started
            done = update - self.initial
            eta = elapsed / done * (self.total - update) if done else math.nan
            text = " ".join(f"{k}={v}" for k, v in self.fields().items())
            print(
                f"{self.name}: update {update}/{self.total} {text} ({_duration(elapsed)} elapsed, "
                f"~{_duration(eta)} left)",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _accuracies(evals: Path) -> list[tuple[int, float]]:
    if not evals.exists():
        return []
    with evals.open(newline="") as f:
        return [(int(r["update"]), float(r["sampled_acc"])) for r in csv.DictReader(f) if r.get("sampled_acc")]


def summary(out: Path, total_updates: int, wall_seconds: float) -> str:
    """The end-of-run summary: peak and final accuracy, wall time, files, and how to resume or extend."""
    acc = _accuracies(out / "evals.csv")
    lines = [f"run complete: {out} ({total_updates} updates; wall time of this process {_duration(wall_seconds)})"]
    if acc:
        peak_u, peak = max(acc, key=lambda x: (x[1], -x[0]))
        final_u, final = acc[-1]
        lines.append(
            f"  held-out accuracy: peak {100 * peak:.1f}% at update {peak_u}, final {100 * final:.1f}% "
            f"at update {final_u} ({len(acc)} evaluations)"
        )
    lines += [
        f"  files: {out}/updates.csv (per update), evals.csv (accuracy), tokens.csv, config.yaml, manifest.json, "
        "final_model.pt, checkpoints/last.pt",
        f"  extend it: m2po train --out {out} --resume --set run.total_updates={2 * total_updates}",
    ]
    return "\n".join(lines)
