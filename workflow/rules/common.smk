# Shared values: the results folder, the grid (expanded by m2po.pipeline: one definition), the data stage's
# manifests, the model groups of the verl Hydra configs and the software environments of the rules.
from pathlib import Path

from m2po.pipeline import expand_grid, model_group, model_layout, parse_run_id, train_overrides

RES = config["results"]
RUNS = expand_grid(config)
RUN_IDS = [r.run_id for r in RUNS]
MODELS = list(config["models"])

# `snakemake --use-conda`: every rule that runs code names its environment (paths relative to this folder).
# CPU: this repository with the CPU torch wheel (the tiny study, data, figures, report); GPU: the verl stack
# of environment.yml + scripts/install_gpu.sh (the paper profile's training and evaluation jobs).
CPU_ENV = "../envs/m2po-cpu.yaml"
GPU_ENV = "../envs/m2po-gpu.yaml"

# Rules run by the Snakemake process itself, never submitted to a cluster, say so with `localrule: True`: the
# data build (minutes of CPU; the login node has the internet the hub downloads need), the figures, the report,
# `all`, and `benchmarks` (in eval.smk), which gathers an evaluated run's checkpoints.


wildcard_constraints:
    run_id=r"[^/]+",

