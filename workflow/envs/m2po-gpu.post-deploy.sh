#!/usr/bin/env bash
# Run by `snakemake --use-conda` once, in the environment of m2po-gpu.yaml right after creating it, from the
# workflow's working directory (the repository root; Snakemake runs a copy of this script kept under its conda
# prefix, so the path is relative to the working directory, not to this file): steps 2-4 of the GPU install (scripts/install_gpu.sh; FLASH_ATTN_WHEEL=/path/flash_attn-2.8.3-...whl for offline nodes).
set -euo pipefail
bash scripts/install_gpu.sh
