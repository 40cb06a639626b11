#!/usr/bin/env bash
# Run by `snakemake --use-conda` once, in the environment of m2po-gpu.yaml right after creating it: steps 2-4
# of the GPU install (scripts/install_gpu.sh; FLASH_ATTN_WHEEL=/path/flash_attn-2.8.3-...whl for offline nodes).
set -euo pipefail
bash "$(dirname "${BASH_SOURCE[0]}")/../../scripts/install_gpu.sh"
