"""The study's grid: which runs a pipeline profile trains, named by the run-id contract.

``run_id = <model>-<method>-s<staleness>-seed<seed>`` plus ``-tau<τ>`` when τ is swept
(ARCHITECTURE.md §2). The Snakefile and the tests both expand the grid through this module,
so the list of jobs is defined in exactly one place: ``workflow/config/<profile>.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .analysis import runs as analysis_runs
from .losses import available_losses


@dataclass(frozen=True)
class RunSpec:
    model: str
    method: str
    staleness: int
    seed: int
    tau: float | None = None

    @property
    def run_id(self) -> str:
        base = f"{self.model}-{self.method}-s{self.staleness}-seed{self.seed}"
        return base if self.tau is None else f"{base}-tau{self.tau:g}"


def parse_run_id(run_id: str) -> RunSpec:
    """The run of a run id (ValueError naming the expected form when it does not parse)."""
    m = analysis_runs.parse_run_id(run_id)
    return RunSpec(m.model, m.method, m.staleness, m.seed, m.tau)


def _models(block: dict[str, Any], config: dict[str, Any]) -> list[str]:
    models = block.get("models", "all")
    return list(config["models"]) if models == "all" else list(models)


def expand_grid(config: dict[str, Any]) -> list[RunSpec]:
    """Every run of the profile, deduplicated, in a stable order.

    Each block of ``config["grid"]`` is {methods, staleness, models (list or "all"), taus (optional)}.
    """
    seeds = config["seeds"]
    runs: set[RunSpec] = set()
    for name, block in config["grid"].items():
        unknown = set(block["methods"]) - set(available_losses())
        if unknown:
            raise ValueError(
                f"grid.{name}.methods: unknown loss(es) {sorted(unknown)}; available: {available_losses()}"
            )
        taus = block.get("taus", [None])
        for model in _models(block, config):
            for method in block["methods"]:
                for s in block["staleness"]:
                    for seed in seeds:
                        for tau in taus:
                            runs.add(RunSpec(model, method, int(s), int(seed), None if tau is None else float(tau)))
    return sorted(runs, key=lambda r: (r.model, r.method, r.staleness, r.seed, -1.0 if r.tau is None else r.tau))


def train_overrides(spec: RunSpec, config: dict[str, Any]) -> list[str]:
    """``--set`` overrides of ``m2po train`` for one tiny-engine run."""
    out = [
        f"model.size={spec.model}",
        f"algo.loss={spec.method}",
        f"algo.staleness={spec.staleness}",
        f"run.seed={spec.seed}",
    ]
    if spec.tau is not None:
        out.append(f"algo.loss_params={{tau: {spec.tau}}}")
    overrides = {**(config.get("train_overrides") or {}), **(config.get("model_overrides") or {}).get(spec.model, {})}
    for key, value in overrides.items():
        out.append(f"{key}={value}")
    return out
