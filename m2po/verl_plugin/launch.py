"""The paper's verl runs as launch commands (the Snakemake pipeline calls this).

    python -m m2po.verl_plugin.launch --model Qwen2.5-Math-7B --method m2po --staleness 256 \\
        --nodes 1 --gpus-per-node 8 --dry-run
    python -m m2po.verl_plugin.launch --list --study tau_sweep
    python -m m2po.verl_plugin.launch --run-id Qwen2.5-Math-7B-grpo-s256-seed0 --dry-run --json

A run is ``workflow/verl/m2po_trainer.yaml`` (verl's ``ppo_trainer`` plus App. B of the paper: 256
prompts × 8 responses, mini-batches of 512 responses → 4 updates per step, AdamW lr 1e-6 constant, weight
decay 0.01, grad clip 1.0, temperature 1.0, token-mean, no KL, no entropy bonus, 1000 steps), one model
group file ``m2po_model/<model>.yaml`` (weights, context lengths, default GPU layout) and the method's
override bundle :data:`METHODS`. The list of paper runs is the pipeline's grid
(``workflow/config/paper.yaml`` expanded by :func:`m2po.pipeline.expand_grid`), so run ids are the
pipeline's: ``<model>-<method>-s<s>-seed<seed>`` plus ``-tau<τ>`` when τ is swept (ARCHITECTURE.md §2).
Model names are matched case-insensitively (``Qwen2.5-Math-7B`` uses ``m2po_model/qwen2.5-math-7b.yaml``).
``--dry-run`` prints the command; without it the command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from m2po.pipeline import RunSpec, expand_grid, parse_run_id

__all__ = ["METHODS", "MODELS", "build_command", "build_overrides", "main", "model_key", "paper_runs", "studies"]

#: τ of every paper run (§5.2); a run id without ``-tau<τ>`` uses it
DEFAULT_TAU = 0.04
TRAIN_BATCH = 256  # prompts per step
MINI_BATCH = 64  # prompts per optimizer update (× 8 responses = 512)
ROLLOUT_N = 8
UPDATES_PER_STEP = TRAIN_BATCH // MINI_BATCH


@dataclass(frozen=True)
class ModelSpec:
    """Default GPU layout of a model (``nodes`` × ``gpus_per_node``); weights, context lengths and memory
    settings are in its group file workflow/verl/m2po_model/<key>.yaml."""

    nodes: int = 1
    gpus_per_node: int = 8


#: the paper's six models (App. B)
MODELS: dict[str, ModelSpec] = {
    "qwen2.5-math-7b": ModelSpec(),
    "llama-3.2-3b-instruct": ModelSpec(),
    "qwen3-1.7b-base": ModelSpec(),
    "qwen3-4b-base": ModelSpec(),
    "qwen3-8b-base": ModelSpec(),
    "qwen2.5-32b": ModelSpec(nodes=4),
}

_PL = "actor_rollout_ref.actor.policy_loss"
#: method -> Hydra overrides ("with the recommended values of its own paper", App. B; m2po.losses defaults)
METHODS: dict[str, list[str]] = {
    "grpo": [
        f"{_PL}.loss_mode=grpo",
        "actor_rollout_ref.actor.clip_ratio_low=0.2",
        "actor_rollout_ref.actor.clip_ratio_high=0.2",
    ],
    "grpo_notr": [f"{_PL}.loss_mode=grpo_notr"],
    "m2po": [f"{_PL}.loss_mode=m2po"],
    "m2po_released": [f"{_PL}.loss_mode=m2po_released"],
    # GSPO's Eq. 5 averages per sequence; clip 3e-4 / 4e-4 are our gspo defaults (GSPO §5.1)
    "gspo": [f"{_PL}.loss_mode=gspo", "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean"],
    "cispo": [f"{_PL}.loss_mode=cispo"],
    "topr": [f"{_PL}.loss_mode=topr"],
    "gppo": [f"{_PL}.loss_mode=gppo"],
    # AReaL: old_log_prob = proximal policy (recomputed at pop), IS weight π_prox/π_behav from verl's
    # rollout correction, uncapped (AReaL's behav_imp_weight_cap off; verl would truncate, not drop)
    "decoupled_ppo": [
        f"{_PL}.loss_mode=decoupled_ppo",
        "m2po.proximal=true",
        "algorithm.rollout_correction.rollout_is=token",
        "algorithm.rollout_correction.rollout_is_threshold=1000000.0",
    ],
}


PAPER_GRID = Path(__file__).resolve().parents[2] / "workflow" / "config" / "paper.yaml"


def _grid_config(path: Path = PAPER_GRID) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def studies(path: Path = PAPER_GRID) -> list[str]:
    """The grid blocks of the paper profile (main, on_policy, staleness_sweep, baselines, tau_sweep)."""
    return list(_grid_config(path)["grid"])


def paper_runs(study: str = "all", path: Path = PAPER_GRID) -> list[RunSpec]:
    """Every verl run of the paper: the pipeline's grid (one block of it with ``study``)."""
    config = _grid_config(path)
    if study != "all":
        if study not in config["grid"]:
            raise ValueError(f"unknown study {study!r}; choose one of {list(config['grid'])} or 'all'")
        config = {**config, "grid": {study: config["grid"][study]}}
    return expand_grid(config)


def model_key(model: str) -> str:
    key = model.lower()
    if key not in MODELS:
        raise KeyError(f"unknown model {model!r}; choose one of {sorted(MODELS)} (case-insensitive)")
    return key


def build_overrides(
    run: RunSpec,
    nodes: int | None = None,
    gpus_per_node: int | None = None,
    steps: int = 1000,
    out: str | None = None,
    data_dir: str = "results/paper/data",
    mask_scope: str = "minibatch",
    format_reward: float = 0.0,
    model_path: str | None = None,
    extra: list[str] | None = None,
) -> list[str]:
    """The Hydra overrides of one run (applied on workflow/verl/m2po_trainer.yaml)."""
    key = model_key(run.model)
    if run.method not in METHODS:
        raise KeyError(f"unknown method {run.method!r}; choose one of {sorted(METHODS)}")
    if run.staleness % UPDATES_PER_STEP:
        raise ValueError(f"staleness is counted in updates and must be a multiple of {UPDATES_PER_STEP}")
    spec = MODELS[key]
    nodes = nodes or spec.nodes
    gpus = gpus_per_node or spec.gpus_per_node
    if (MINI_BATCH * ROLLOUT_N) % (nodes * gpus):
        raise ValueError(f"{nodes}x{gpus} GPUs must divide the mini-batch of {MINI_BATCH * ROLLOUT_N} responses")
    prefill = run.staleness // UPDATES_PER_STEP
    run_dir = out or os.path.join("results/paper/runs", run.run_id)
    if run.tau is not None and run.method not in ("m2po", "m2po_released"):
        raise ValueError(f"--tau is a parameter of m2po / m2po_released, not of {run.method!r}")
    overrides = [
        f"m2po_model={key}",
        *METHODS[run.method],
        f"{_PL}.tau={DEFAULT_TAU if run.tau is None else run.tau}",
        f"{_PL}.mask_scope={mask_scope}",
        f"m2po.staleness={run.staleness}",
        f"trainer.total_training_steps={steps + prefill}",
        f"trainer.nnodes={nodes}",
        f"trainer.n_gpus_per_node={gpus}",
        f"trainer.experiment_name={run.run_id}",
        f"trainer.default_local_dir={os.path.join(run_dir, 'checkpoints')}",
        f"actor_rollout_ref.rollout.seed={42 + run.seed}",
        f"data.train_files={os.path.join(data_dir, 'deepscaler', 'train.parquet')}",
        f"data.val_files={os.path.join(data_dir, 'math500', 'test.parquet')}",
        f"reward.custom_reward_function.reward_kwargs.format_reward={format_reward}",
    ]
    if model_path:
        overrides.append(f"actor_rollout_ref.model.path={model_path}")
    return overrides + list(extra or [])


def build_command(overrides: list[str], python: str = "python3") -> list[str]:
    return [python, "-m", "m2po.verl_plugin.main", *overrides]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m m2po.verl_plugin.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="list the paper's run ids (the pipeline's grid) and exit")
    p.add_argument("--study", default="all", help="with --list: a block of workflow/config/paper.yaml's grid")
    p.add_argument("--run-id", help="a run id (instead of --model/--method/--staleness/--seed/--tau)")
    p.add_argument("--model", help=f"one of {sorted(MODELS)} (case-insensitive)")
    p.add_argument("--method", choices=sorted(METHODS))
    p.add_argument("--staleness", type=int, default=0, help="s in optimizer updates (multiple of 4)")
    p.add_argument("--tau", type=float, default=None, help=f"M2PO's τ; given: a τ-sweep run (default {DEFAULT_TAU})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mask-scope", default="minibatch", choices=("minibatch", "microbatch"), help="microbatch = released code"
    )
    p.add_argument("--format-reward", type=float, default=0.0, help="0.0 released code, 0.1 paper text")
    p.add_argument("--nodes", type=int, help="default: the model's (MODELS)")
    p.add_argument("--gpus-per-node", type=int)
    p.add_argument("--steps", type=int, default=1000, help="training steps (prefill steps come on top)")
    p.add_argument("--out", help="run directory (default results/paper/runs/<run_id>)")
    p.add_argument("--data", default="results/paper/data", help="`m2po data build` output folder")
    p.add_argument("--model-path", help="local weights instead of the hub id")
    p.add_argument("--python", default="python3")
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    p.add_argument("--json", action="store_true", help="with --dry-run: print {run_id, command, env} as JSON")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides, appended last")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        for run in paper_runs(args.study):
            print(run.run_id)
        return 0
    if args.run_id:
        run = parse_run_id(args.run_id)
    elif args.model and args.method:
        run = RunSpec(args.model, args.method, args.staleness, args.seed, args.tau)
    else:
        parser.error("give --run-id, or --model and --method (or --list)")
    out = args.out or os.path.join("results/paper/runs", run.run_id)
    overrides = build_overrides(
        run, args.nodes, args.gpus_per_node, args.steps, out, args.data,
        args.mask_scope, args.format_reward, args.model_path, args.overrides,
    )  # fmt: skip
    cmd = build_command(overrides, args.python)
    env = {"VERL_FILE_LOGGER_PATH": os.path.join(out, "metrics.jsonl")}
    if args.dry_run:
        if args.json:
            print(json.dumps({"run_id": run.run_id, "command": cmd, "env": env}, indent=2))
        else:
            print(" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(cmd))
        return 0
    Path(out).mkdir(parents=True, exist_ok=True)
    return subprocess.call(cmd, env={**os.environ, **env})


if __name__ == "__main__":
    sys.exit(main())
