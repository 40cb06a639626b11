"""The paper's verl runs as launch commands (the Snakemake pipeline calls this), and the CPU mode.

    python -m m2po.verl_plugin.launch --model Qwen2.5-Math-7B --method m2po --staleness 256 \\
        --nodes 1 --gpus-per-node 8 --dry-run
    python -m m2po.verl_plugin.launch --list --study tau_sweep
    python -m m2po.verl_plugin.launch --run-id Qwen2.5-Math-7B-grpo-s256-seed0 --dry-run --json
    python -m m2po.verl_plugin.launch --cpu --smoke --out DIR [--resume]      # verl's loop on a laptop

A run is ``workflow/verl_hydra/m2po_trainer.yaml`` (verl's ``ppo_trainer`` plus App. B of the paper: 256
prompts × 8 responses, mini-batches of 512 responses → 4 updates per step, AdamW lr 1e-6 constant, weight
decay 0.01, grad clip 1.0, temperature 1.0, token-mean, no KL, no entropy bonus, 1000 steps), one model
group file ``m2po_model/<model>.yaml`` (weights, context lengths, default GPU layout) and the method's
override bundle :data:`METHODS`. The list of paper runs is the pipeline's grid
(``workflow/config/paper.yaml`` expanded by :func:`m2po.pipeline.expand_grid`), so run ids are the
pipeline's: ``<model>-<method>-s<s>-seed<seed>`` plus ``-tau<τ>`` when τ is swept (docs/architecture.md, contract 2).
Model names are matched case-insensitively (``Qwen2.5-Math-7B`` uses ``m2po_model/qwen2.5-math-7b.yaml``).
``--dry-run`` prints the command; without it the command runs. The GPU layout is the model's
(:data:`MODELS`: Qwen2.5-32B on 4 nodes) unless ``--nodes``/``--gpus-per-node`` are given.

Paths (run directory, data, local weights, the metrics file) are made absolute, and the metrics file is
passed to every Ray process through ``ray_kwargs.ray_init.runtime_env.env_vars``: with a Ray cluster
started beforehand the TaskRunner's working directory and environment are not the launcher's. A relaunch
keeps the previous metrics: verl's file logger truncates ``metrics.jsonl``, so an existing one is renamed
``metrics.session-<k>.jsonl`` first (``m2po.verl_plugin.tidy`` reads all of them).

``--cpu`` runs the same configuration through verl's own trainer loop on this machine's CPU, one
``torchrun`` process per data-parallel rank on 127.0.0.1 (:mod:`m2po.verl_plugin.cpu_mode`; tiny models
only in practice); ``--smoke`` builds the tiny offline model and data and runs the smoke settings
(:data:`m2po.verl_plugin.gpu_smoke.CPU_SMOKE`), then writes ``updates.csv`` and checks the staleness of
every update. Bad input is one line, ``m2po launch: error: <what>, <key>, <fix>``, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from m2po.loss_names import PAPER_TAU, TAU_LOSSES
from m2po.pipeline import RunSpec, expand_grid, model_layout, parse_run_id

from .launch_common import METRICS_ENV, LaunchError, run_env, run_in_dir
from .launch_common import absolute as _local

__all__ = [
    "METHODS",
    "MODELS",
    "LaunchError",
    "build_command",
    "build_overrides",
    "layout",
    "main",
    "model_key",
    "paper_runs",
    "run_env",
    "studies",
]

TRAIN_BATCH = 256  # prompts per step
MINI_BATCH = 64  # prompts per optimizer update (× 8 responses = 512)
ROLLOUT_N = 8
UPDATES_PER_STEP = TRAIN_BATCH // MINI_BATCH


@dataclass(frozen=True)
class ModelSpec:
    """Default GPU layout of a model (``nodes`` × ``gpus_per_node``): its group file's ``trainer.nnodes`` /
    ``trainer.n_gpus_per_node`` (workflow/verl_hydra/m2po_model/<key>.yaml, which also sets its weights, context
    lengths and memory settings; :func:`m2po.pipeline.model_layout`), else 1 × 8."""

    nodes: int = 1
    gpus_per_node: int = 8


#: the paper's six models (App. B), with the layout of their group files
MODELS: dict[str, ModelSpec] = {
    key: ModelSpec(*model_layout(key))
    for key in (
        "qwen2.5-math-7b",
        "llama-3.2-3b-instruct",
        "qwen3-1.7b-base",
        "qwen3-4b-base",
        "qwen3-8b-base",
        "qwen2.5-32b",
    )
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
    # GSPO's Eq. 5 averages per sequence: the loss's registered default aggregation, which the adapter
    # keeps (policy_loss.loss_agg_mode: null); clip 3e-4 / 4e-4 are our gspo defaults (GSPO §5.1)
    "gspo": [f"{_PL}.loss_mode=gspo"],
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
            raise LaunchError(f"unknown study {study!r}", "--study", f"choose one of {list(config['grid'])} or 'all'")
        config = {**config, "grid": {study: config["grid"][study]}}
    return expand_grid(config)


def model_key(model: str) -> str:
    key = model.lower()
    if key not in MODELS:
        raise LaunchError(f"unknown model {model!r}", "--model", f"choose one of {sorted(MODELS)} (case-insensitive)")
    return key


def check_run(run: RunSpec) -> None:
    """The run's own values: a known model and method, staleness a non-negative multiple of 4, seed >= 0,
    τ (only for a loss with a τ: m2po, m2po_released) a finite number >= 0."""
    model_key(run.model)
    if run.method not in METHODS:
        raise LaunchError(f"unknown method {run.method!r}", "--method", f"choose one of {sorted(METHODS)}")
    s = run.staleness
    if isinstance(s, bool) or not isinstance(s, int) or s < 0 or s % UPDATES_PER_STEP:
        lower = max(0, s - s % UPDATES_PER_STEP) if isinstance(s, int) else 0
        raise LaunchError(
            f"staleness must be a multiple of {UPDATES_PER_STEP} that is >= 0 (it counts optimizer updates, "
            f"{UPDATES_PER_STEP} per step), got {s}",
            "--staleness",
            f"use e.g. {lower} or {lower + UPDATES_PER_STEP} (the paper: 0 to 256)",
        )
    if run.seed < 0:
        raise LaunchError(f"seed must be >= 0, got {run.seed}", "--seed", "use e.g. 0")
    if run.tau is not None:
        if run.method not in TAU_LOSSES:
            raise LaunchError(
                f"τ is a parameter of {' / '.join(TAU_LOSSES)}, not of {run.method!r}", "--tau", "drop it"
            )
        if not math.isfinite(run.tau) or run.tau < 0:
            raise LaunchError(f"τ must be a finite number >= 0, got {run.tau}", "--tau", f"the paper uses {PAPER_TAU}")


def layout(run: RunSpec, nodes: int | None = None, gpus_per_node: int | None = None) -> tuple[int, int]:
    """``(nodes, gpus per node)``: the model's (:data:`MODELS`) unless given; their product must divide the
    mini-batch of 512 responses."""
    spec = MODELS[model_key(run.model)]
    for flag, value in (("--nodes", nodes), ("--gpus-per-node", gpus_per_node)):
        if value is not None and value < 1:
            raise LaunchError(f"must be >= 1, got {value}", flag, "omit it to use the model's layout")
    nodes = spec.nodes if nodes is None else nodes
    gpus = spec.gpus_per_node if gpus_per_node is None else gpus_per_node
    if (MINI_BATCH * ROLLOUT_N) % (nodes * gpus):
        raise LaunchError(
            f"{nodes}x{gpus} GPUs do not divide the mini-batch of {MINI_BATCH * ROLLOUT_N} responses",
            "--nodes/--gpus-per-node",
            "use a power of two in total (e.g. 1x8, 2x8, 4x8)",
        )
    return nodes, gpus


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
    """The Hydra overrides of one run (applied on workflow/verl_hydra/m2po_trainer.yaml); every path absolute."""
    check_run(run)
    nodes, gpus = layout(run, nodes, gpus_per_node)
    if steps < 1:
        raise LaunchError(f"steps must be >= 1, got {steps}", "--steps", "the paper trains 1000 steps")
    if not 0.0 <= format_reward <= 1.0:
        raise LaunchError(f"must be in [0, 1], got {format_reward}", "--format-reward", "0.0 (released code) or 0.1")
    prefill = run.staleness // UPDATES_PER_STEP
    run_dir = _local(out or os.path.join("results/paper/runs", run.run_id))
    data_dir = _local(data_dir)
    overrides = [
        f"m2po_model={model_key(run.model)}",
        *METHODS[run.method],
        f"{_PL}.tau={PAPER_TAU if run.tau is None else run.tau}",
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
        # every Ray process (the TaskRunner may run on another node, in another directory) logs here
        f"++ray_kwargs.ray_init.runtime_env.env_vars.{METRICS_ENV}={run_env(run_dir)[METRICS_ENV]}",
    ]
    if model_path:
        overrides.append(f"actor_rollout_ref.model.path={_local(model_path)}")
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
    p.add_argument("--staleness", type=int, default=0, help="s in optimizer updates (a multiple of 4, >= 0)")
    p.add_argument("--tau", type=float, default=None, help=f"M2PO's τ; given: a τ-sweep run (default {PAPER_TAU})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mask-scope", default="minibatch", choices=("minibatch", "microbatch"), help="microbatch = released code"
    )
    p.add_argument("--format-reward", type=float, default=0.0, help="0.0 released code, 0.1 paper text")
    p.add_argument("--nodes", type=int, help="default: the model's (MODELS; Qwen2.5-32B: 4)")
    p.add_argument("--gpus-per-node", type=int, help="default: the model's (8)")
    p.add_argument("--steps", type=int, default=1000, help="training steps (prefill steps come on top)")
    p.add_argument("--out", help="run directory (default results/paper/runs/<run_id>)")
    p.add_argument("--data", default="results/paper/data", help="`m2po data build` output folder")
    p.add_argument("--model-path", help="local weights instead of the hub id")
    p.add_argument("--python", default="python3")
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    p.add_argument("--json", action="store_true", help="with --dry-run: print {run_id, command, env} as JSON")
    p.add_argument("--cpu", action="store_true", help="run verl's trainer loop on this CPU (torchrun, no Ray)")
    p.add_argument("--cpu-ranks", type=int, default=2, help="with --cpu: data-parallel processes (default 2)")
    p.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"), help="with --cpu: run that loop on GPUs (NCCL) instead"
    )
    p.add_argument("--smoke", action="store_true", help="with --cpu: the smoke run (tiny offline model, --out DIR)")
    p.add_argument("--resume", action="store_true", help="with --smoke: continue the run in --out by one step")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides, appended last")
    return p


def _launch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.list:
        for run in paper_runs(args.study):
            print(run.run_id)
        return 0
    if args.cpu_ranks < 1:
        raise LaunchError(f"must be >= 1, got {args.cpu_ranks}", "--cpu-ranks", "use 2 (the CPU mode's default)")
    if args.smoke or args.resume:
        if not (args.cpu and args.smoke):
            raise LaunchError("--smoke and --resume belong to the CPU smoke run", "--cpu", "add --cpu --smoke")
        from .gpu_smoke import cpu_smoke

        if not args.out:
            raise LaunchError("--smoke needs a run directory", "--out", "e.g. --out /tmp/m2po-cpu-smoke")
        return cpu_smoke(Path(_local(args.out)), args.resume, args.cpu_ranks, args.device, args.overrides, args.dry_run)
    if args.run_id:
        try:
            run = parse_run_id(args.run_id)
        except ValueError as e:
            raise LaunchError(str(e), "--run-id", "see --list for the paper's run ids") from None
    elif args.model and args.method:
        run = RunSpec(args.model, args.method, args.staleness, args.seed, args.tau)
    else:
        parser.error("give --run-id, or --model and --method (or --list)")
    out = _local(args.out or os.path.join("results/paper/runs", run.run_id))
    nodes, gpus = args.nodes, args.gpus_per_node
    if args.cpu:
        nodes, gpus = 1, args.cpu_ranks
    overrides = build_overrides(
        run, nodes, gpus, args.steps, out, args.data,
        args.mask_scope, args.format_reward, args.model_path, args.overrides,
    )  # fmt: skip
    if args.cpu:
        from .cpu_mode import cpu_command, cpu_env

        cmd, env = cpu_command(overrides, args.cpu_ranks), cpu_env(out, args.device)
    else:
        cmd, env = build_command(overrides, args.python), run_env(out)
    if args.dry_run:
        if args.json:
            print(json.dumps({"run_id": run.run_id, "command": cmd, "env": env}, indent=2))
        else:
            print(" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(cmd))
        return 0
    return run_in_dir(cmd, env, out)


def main(argv: list[str] | None = None) -> int:
    from m2po.config import ConfigError

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _launch(args, parser)
    except LaunchError as e:
        print(e.line(), file=sys.stderr)
    except ConfigError as e:
        print(LaunchError(e.message, e.key, e.hint or "see docs/verl.md").line(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
