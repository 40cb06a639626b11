"""The study's grid: which runs a pipeline profile trains, named by the run-id contract.

``run_id = <model>-<method>-s<staleness>-seed<seed>`` plus ``-tau<τ>`` when τ is swept
(docs/architecture.md, contract 2). The Snakefile and the tests both expand the grid through this module,
so the list of jobs is defined in exactly one place: ``workflow/config/<profile>.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .analysis import runs as analysis_runs
from .loss_names import LOSS_NAMES


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

    Each block of ``config["grid"]`` is {methods, staleness, models (list or "all"), taus (optional),
    seeds (optional: the block's own seeds instead of ``config["seeds"]``)}.
    """
    runs: set[RunSpec] = set()
    for name, block in config["grid"].items():
        seeds = block.get("seeds", config["seeds"])
        unknown = set(block["methods"]) - set(LOSS_NAMES)
        if unknown:
            raise ValueError(f"grid.{name}.methods: unknown loss(es) {sorted(unknown)}; available: {list(LOSS_NAMES)}")
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


def warm_start_overrides(model: str, config: dict[str, Any]) -> list[str]:
    """``--set`` overrides that build the warm start every run of ``model`` uses (the same task,
    warm-start and rollout keys as its runs, so the cache key matches)."""
    return train_overrides(RunSpec(model, "grpo", 0, 0), config)


@dataclass(frozen=True)
class Shard:
    """Runs of one model trained one after the other by one ``m2po train-worker`` process."""

    name: str
    model: str
    runs: tuple[RunSpec, ...]
    cost: float  #: estimated CPU seconds


def run_cost(spec: RunSpec, config: dict[str, Any]) -> float:
    """Estimated CPU seconds of one run from the profile's measured ``cost`` block:
    ``{per_update: {model: s}, per_prefill_batch: {model: s}, per_run: s}`` (the stale warm-up
    generates ``staleness / mini_batches`` extra batches). Without a cost block every run costs 1."""
    cost = config.get("cost") or {}
    if not cost:
        return 1.0
    updates = int(_setting(config, spec.model, "run.total_updates", 320))
    mini = int(_setting(config, spec.model, "algo.mini_batches", 4))
    return (
        cost["per_update"][spec.model] * updates
        + cost.get("per_prefill_batch", {}).get(spec.model, 0.0) * spec.staleness / mini
        + cost.get("per_run", 0.0)
    )


def _setting(config: dict[str, Any], model: str, key: str, default: Any) -> Any:
    merged = {**(config.get("train_overrides") or {}), **(config.get("model_overrides") or {}).get(model, {})}
    return merged.get(key, default)


def plan_shards(config: dict[str, Any], runs: list[RunSpec] | None = None) -> list[Shard]:
    """The grid cut into worker shards, in the order they should start (highest priority first).

    Longest runs first (LPT), cut by guided self-scheduling: each shard takes about
    ``remaining cost / (2 x workers)`` (at least one run), so early shards are large (few process
    starts) and the last ones small (the cores finish together). ``workers`` is
    ``config["workers"]`` (default 2). Shards never mix models: each waits for its own warm start.
    """
    runs = expand_grid(config) if runs is None else runs
    workers = int(config.get("workers", 2))
    costs = {r: run_cost(r, config) for r in runs}
    order = sorted(runs, key=lambda r: (-costs[r], r.model, r.method, r.staleness, r.seed, r.tau or 0.0))
    total = sum(costs.values())
    pending = {m: [r for r in order if r.model == m] for m in sorted({r.model for r in order})}
    shards: list[Shard] = []
    while total > 0 and any(pending.values()):
        model = max(pending, key=lambda m: (costs[pending[m][0]] if pending[m] else -1.0, m))
        target = total / (2 * workers)
        taken: list[RunSpec] = []
        while pending[model] and (not taken or sum(costs[r] for r in taken) + costs[pending[model][0]] <= target):
            taken.append(pending[model].pop(0))
        cost = sum(costs[r] for r in taken)
        total -= cost
        shards.append(Shard(f"{model}-{sum(sh.model == model for sh in shards):02d}", model, tuple(taken), cost))
    return shards


def eval_protocol_args(config: dict[str, Any]) -> list[str]:
    """The ``m2po eval-run`` protocol options of a profile's ``eval:`` section (benchmarks, k, sampling): the
    evaluation stage's jobs (workflow/rules/eval.smk) and ``make bench`` run the stage with these."""
    section = config.get("eval") or {}
    default = ["tiny_arith"] if config["engine"] == "tiny" else ["paper"]
    args = ["--benchmarks", *(section.get("benchmarks") or default)]
    for key, flag in (("k", "--k"), ("temperature", "--temperature"), ("top_p", "--top-p")):
        if section.get(key) is not None:
            args += [flag, str(section[key])]
    return args


#: the tiny pipeline's eval job's own options beyond the protocol: one grading worker (two jobs share the two
#: cores), generation in batches of 250 problems, no progress bar in the log
TINY_EVAL_JOB_ARGS = ["--workers", "1", "--batch-problems", "250", "--no-progress"]


#: the verl Hydra config group of each paper model (its GPU layout, weights, context lengths, memory settings)
MODEL_GROUP_DIR = Path(__file__).resolve().parents[1] / "workflow" / "verl_hydra" / "m2po_model"


@cache
def model_group(model: str) -> dict[str, Any]:
    """The parsed group file ``workflow/verl_hydra/m2po_model/<model>.yaml`` of a paper model (read once; the
    launcher and the Snakefile both read it here). Treat it as read-only."""
    import yaml

    return yaml.safe_load((MODEL_GROUP_DIR / f"{model.lower()}.yaml").read_text()) or {}


def model_layout(model: str, config: dict[str, Any] | None = None) -> tuple[int, int]:
    """``(nodes, GPUs per node)`` of a paper model: its group's ``trainer.nnodes`` / ``trainer.n_gpus_per_node``
    (else 1 x 8), unless ``config`` (a pipeline profile) sets ``nodes`` / ``gpus_per_node``."""
    trainer = model_group(model).get("trainer") or {}
    config = config or {}
    return (
        int(config.get("nodes") or trainer.get("nnodes", 1)),
        int(config.get("gpus_per_node") or trainer.get("n_gpus_per_node", 8)),
    )
