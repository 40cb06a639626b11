# Shared values: the results folder, the grid (expanded by m2po.pipeline: one definition), the data stage's
# manifests, the model groups of the verl Hydra configs and the software environments of the rules.
from pathlib import Path

import yaml

from m2po.pipeline import expand_grid, parse_run_id, train_overrides

RES = config["results"]
RUNS = expand_grid(config)
RUN_IDS = [r.run_id for r in RUNS]
MODELS = list(config["models"])

# `snakemake --use-conda`: every rule that runs code names its environment (paths relative to this folder).
# CPU: this repository with the CPU torch wheel (the tiny study, data, figures, report); GPU: the verl stack
# of environment.yml + scripts/install_gpu.sh (the paper profile's training and evaluation jobs).
CPU_ENV = "../envs/m2po-cpu.yaml"
GPU_ENV = "../envs/m2po-gpu.yaml"

# Rules run by the Snakemake process itself, never submitted to a cluster: the figures, the report and the
# data build (minutes of CPU; the login node has the internet the hub downloads need); `benchmarks` (in
# eval.smk) gathers an evaluated run's checkpoints.
localrules:
    all,
    data,
    report,


wildcard_constraints:
    run_id=r"[^/]+",
    fig=r"fig\d+[ab]?|table1",


def model_group(model):
    """The verl Hydra config group of a paper model: workflow/verl_hydra/m2po_model/<model>.yaml, parsed
    (its GPU layout, weights and context lengths; the launcher reads the same file)."""
    path = Path(workflow.main_snakefile).parent / "workflow" / "verl_hydra" / "m2po_model" / f"{model.lower()}.yaml"
    return yaml.safe_load(path.read_text()) or {}
