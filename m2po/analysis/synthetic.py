"""Hand-made results trees with known numbers, for tests and for trying the figures without training.

:func:`write_synthetic_runs` writes run directories in the engine's format (contract 2) whose
accuracies, clipping ratios and M2 values are exactly what a :class:`SynthCell` says, so every
aggregate (peak/final means, s.e., steady-state means, claim verdicts) can be computed by hand:

* seeds get symmetric accuracy offsets ``linspace(−noise, +noise, n_seeds)`` (mean offset 0: the
  cell mean equals ``acc``; for two seeds the seed s.e. equals ``noise``);
* per-update metrics alternate ±10 % around their value from update to update (their steady-state
  mean over an even number of updates is exactly the value).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..loss_names import PAPER_TAU, TAU_LOSSES

#: updates.csv columns of the tiny engine (m2po.engine.bookkeeping.UPDATE_COLUMNS)
UPDATE_COLUMNS = [
    "update", "step", "staleness", "behaviour_version", "reward_mean", "loss", "m2", "m2_all", "m2_after",
    "clipped_frac", "masked_frac", "frac_pos_gt1", "frac_pos_lt1", "frac_neg_gt1", "frac_neg_lt1", "tr_frac",
    "ratio_mean", "ratio_min", "ratio_max", "kl_k1", "kl_k3", "ess", "n_tokens", "entropy", "grad_norm", "lr",
]  # fmt: skip
EVAL_COLUMNS = ["update", "benchmark", "sampled_acc", "sampled_acc_se", "greedy_acc", "n_problems"]
VERL_EVAL_COLUMNS = ["update", "benchmark", "avg_at_k", "ci_low", "ci_high", "k", "n_problems", "n_timeouts"]
VERL_BENCHMARKS = ["aime2024", "aime2025", "amc23", "amc24", "math500", "minerva_math", "gaokao2023en", "olympiadbench"]


@dataclass
class SynthCell:
    """What every seed of one (model, method, s, τ) cell logs."""

    acc: Sequence[float]  #: accuracy at each evaluation: updates 0, eval_every, 2·eval_every, ...
    clip: float = 0.01  #: clipped_frac (and masked_frac)
    reward: float = 0.5
    m2: float = 0.1
    m2_after: float = 0.03
    kl: float = 0.01
    seeds: tuple[int, ...] = (0, 1)
    noise: float = 0.01  #: half-spread of the seeds' accuracy offsets
    eval_se: float = 0.01  #: the evaluation's own s.e. (sampled_acc_se)
    tau_in_id: bool = False  #: write ``-tau<τ>`` into the run id
    extra: dict[str, float] = field(default_factory=dict)


def _wobble(value: float, update: int) -> float:
    return value * (1.1 if update % 2 == 0 else 0.9)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def write_synthetic_runs(
    runs_dir: str | Path,
    cells: dict[tuple[str, str, int, float | None], SynthCell],
    n_updates: int = 24,
    eval_every: int = 8,
    eval_format: str = "tiny",
    tokens_per_update: int = 12,
) -> list[Path]:
    """Write one run directory per (cell, seed) under ``runs_dir``; returns their paths.

    Keys are ``(model, method, staleness, tau)``; ``tau`` None means "not swept" (config τ = 0.04 for the
    τ methods, no ``-tau`` in the id). ``eval_format="verl"`` writes eight benchmark rows per evaluation
    whose mean is the cell's accuracy.
    """
    runs_dir = Path(runs_dir)
    paths = []
    for (model, method, s, tau), cell in cells.items():
        n_evals = n_updates // eval_every + 1
        if len(cell.acc) != n_evals:
            raise ValueError(f"{model} {method} s={s}: need {n_evals} accuracies (updates 0..{n_updates}), "
                             f"got {len(cell.acc)}")  # fmt: skip
        offsets = np.linspace(-cell.noise, cell.noise, len(cell.seeds)) if len(cell.seeds) > 1 else [0.0]
        for seed, off in zip(cell.seeds, offsets, strict=True):
            run_id = f"{model}-{method}-s{s}-seed{seed}" + (
                f"-tau{tau:g}" if tau is not None and cell.tau_in_id else ""
            )
            d = runs_dir / run_id
            d.mkdir(parents=True, exist_ok=True)
            params = {"tau": PAPER_TAU if tau is None else tau} if method in TAU_LOSSES else {}
            config = {"algo": {"loss": method, "staleness": s, "loss_params": params},
                      "run": {"seed": seed, "total_updates": n_updates}}  # fmt: skip
            (d / "config.yaml").write_text(yaml.safe_dump(config))
            manifest = {"seed": seed, "created_utc": "2026-01-01T00:00:00+00:00", "wall_seconds": 60.0 + seed}
            (d / "manifest.json").write_text(json.dumps(manifest))
            rows = []
            for u in range(n_updates):
                row: dict[str, object] = dict.fromkeys(UPDATE_COLUMNS, 0.0)
                row.update(update=u, step=u // 4, staleness=min(u, s), behaviour_version=max(u - s, 0),
                           reward_mean=_wobble(cell.reward, u), clipped_frac=_wobble(cell.clip, u),
                           masked_frac=_wobble(cell.clip, u), m2=_wobble(cell.m2, u),
                           m2_after=_wobble(cell.m2_after, u), kl_k1=_wobble(cell.kl, u), kl_k3=_wobble(cell.kl, u),
                           ratio_mean=1.0, ess=1.0, n_tokens=100.0, entropy=0.5, lr=2e-4, **cell.extra)  # fmt: skip
                rows.append(row)
            _write_csv(d / "updates.csv", UPDATE_COLUMNS, rows)
            evals = []
            for i, a in enumerate(cell.acc):
                acc = float(a) + float(off)
                if eval_format == "verl":
                    spread = np.linspace(-0.02, 0.02, len(VERL_BENCHMARKS))
                    for b, sp in zip(VERL_BENCHMARKS, spread, strict=True):
                        hw = 1.96 * cell.eval_se * math.sqrt(len(VERL_BENCHMARKS))
                        evals.append({"update": i * eval_every, "benchmark": b, "avg_at_k": acc + sp,
                                      "ci_low": acc + sp - hw, "ci_high": acc + sp + hw, "k": 4,
                                      "n_problems": 30, "n_timeouts": 0})  # fmt: skip
                else:
                    evals.append({"update": i * eval_every, "benchmark": "tiny_arith", "sampled_acc": acc,
                                  "sampled_acc_se": cell.eval_se, "greedy_acc": acc, "n_problems": 200})  # fmt: skip
            _write_csv(d / "evals.csv", VERL_EVAL_COLUMNS if eval_format == "verl" else EVAL_COLUMNS, evals)
            toks = []
            for u in range(0, n_updates, 4):
                for k in range(tokens_per_update):
                    dev = 0.05 * (k + 1) * (1 + u % 3)
                    toks.append({"update": u, "ratio": 1.0 + dev * (-1) ** k, "entropy": 0.2 + dev, "advantage": 1.0})
            _write_csv(d / "tokens.csv", ["update", "ratio", "entropy", "advantage"], toks)
            paths.append(d)
    return paths


def scenario(kind: str = "paper", models: Sequence[str] = ("0.1M", "1M"), stale: int = 16) -> dict:
    """Cells of a small study (evals at updates 0, 8, 16, 24) in which the paper's claims ``"paper"``: all
    hold, or ``"contrary"``: all fail (low noise, no staleness effect, M2PO worse and clipping as much)."""
    s, mid = stale, stale // 2
    up = [0.5, 0.6, 0.7, 0.8]
    cells: dict[tuple[str, str, int, float | None], SynthCell] = {}
    for i, m in enumerate(models):
        if kind == "paper":
            spec = {
                ("grpo", 0, None): SynthCell(up, clip=0.004),
                ("grpo", mid, None): SynthCell([0.5, 0.58, 0.66, 0.74], clip=0.02),
                ("grpo", s, None): SynthCell([0.5, 0.55, 0.62, 0.68], clip=0.05),
                ("grpo_notr", s, None): SynthCell([0.5, 0.7, 0.8, 0.2], clip=0.0),
                ("gspo", s, None): SynthCell([0.5, 0.55, 0.6, 0.66], clip=0.03),
                ("m2po", 0, None): SynthCell(up, clip=0.001),
                ("m2po", mid, None): SynthCell([0.5, 0.6, 0.7, 0.79], clip=0.002),
                ("m2po", s, None): SynthCell(up, clip=0.003, m2=0.2, m2_after=0.03),
                ("m2po", s, 0.08): SynthCell([0.5, 0.6, 0.7, 0.78], tau_in_id=True),
                ("m2po", s, 0.16): SynthCell([0.5, 0.6, 0.65, 0.6], tau_in_id=True),
                ("m2po_released", s, None): SynthCell([0.5, 0.6, 0.7, 0.78], clip=0.004),
            }
            if i == 0:
                for b in ("cispo", "decoupled_ppo", "topr", "gppo"):
                    spec[(b, s, None)] = SynthCell([0.5, 0.6, 0.3, 0.1], clip=0.02)
        elif kind == "contrary":
            quiet = {"noise": 0.001, "eval_se": 0.001}
            spec = {
                ("grpo", 0, None): SynthCell(up, clip=0.01, **quiet),
                ("grpo", s, None): SynthCell(up, clip=0.011, **quiet),
                ("grpo_notr", s, None): SynthCell(up, clip=0.0, **quiet),
                ("m2po", s, None): SynthCell([0.5, 0.55, 0.6, 0.65], clip=0.011, **quiet),
            }
        else:
            raise ValueError(f"unknown scenario {kind!r}; use 'paper' or 'contrary'")
        cells.update({(m, me, st, tau): c for (me, st, tau), c in spec.items()})
    return cells
