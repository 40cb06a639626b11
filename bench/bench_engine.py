"""Wall time of one embedded-engine run: the 0.1M model, 320 updates, the default config.

The warm start is built first (cached in results/cache, shared with the pipeline) and not
counted. Printed against the time of the same run's rollouts alone (generation + behaviour
log-probs), so the ratio says how much of a run is the optimizer side.
"""

from __future__ import annotations

import tempfile
import time

from m2po.config import load_config
from m2po.engine.build import build_run
from m2po.engine.loop import Trainer
from m2po.engine.train_config import TrainConfig

from .timing import print_table


def main() -> None:
    overrides = ["run.progress=false", "warm_start.cache_dir=results/cache", "algo.loss=m2po", "algo.staleness=32"]
    cfg = load_config(TrainConfig, None, overrides)
    build_run(cfg)  # warm start, cached
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, out)
        t0 = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, out)
        steps = cfg.run.total_updates // cfg.algo.mini_batches + trainer.schedule.prefill_batches
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer._generate_batch()
        rollouts = time.perf_counter() - t0
    print_table(
        "Engine: one 0.1M run, m2po s=32, 320 updates (1 thread, warm start cached)",
        ["run wall (s)", "rollouts alone (s)", "run / rollouts", "updates/s"],
        [[total, rollouts, total / rollouts, cfg.run.total_updates / total]],
    )


if __name__ == "__main__":
    main()
