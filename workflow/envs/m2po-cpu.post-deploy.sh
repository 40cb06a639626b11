#!/usr/bin/env bash
# Run by `snakemake --use-conda` once, in the environment of m2po-cpu.yaml right after creating it, from the
# workflow's working directory (the repository root, where the Snakefile is): this repository, editable, with
# the pipeline extra, under constraints-cpu.txt (torch==2.13.0 stays the CPU wheel), as `make venv` does.
set -euo pipefail
pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints-cpu.txt -e ".[pipeline]"
