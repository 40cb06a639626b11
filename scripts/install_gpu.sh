#!/usr/bin/env bash
# Steps 2-4 of the GPU environment (docs/verl.md, "Install"), after `conda env create -f environment.yml`
# and `conda activate m2po-gpu` installed Python 3.11 and torch 2.11.0:
#
#   bash scripts/install_gpu.sh                                   # from the repository root
#   FLASH_ATTN_WHEEL=/path/flash_attn-2.8.3-...whl bash scripts/install_gpu.sh   # offline nodes
#
# Order matters: flash-attn's setup.py imports torch, so it is built WITHOUT build isolation against the
# torch already installed (or taken from a prebuilt wheel); verl[fsdp] then finds its flash-attn==2.8.3
# satisfied instead of building it again in isolation. Every other pin comes from verl's own extras.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.__version__.startswith('2.11.0'), torch.__version__" \
  || { echo "install_gpu: activate the environment of environment.yml first (torch 2.11.0)" >&2; exit 2; }

# step 2: flash-attn (verl[fsdp] pins 2.8.3)
if [ -n "${FLASH_ATTN_WHEEL:-}" ]; then
  python -m pip install --no-deps "${FLASH_ATTN_WHEEL}"
else
  python -m pip install packaging ninja psutil wheel  # what its setup.py imports besides torch
  python -m pip install --no-build-isolation flash-attn==2.8.3
fi

# step 3: verl with vLLM and the FSDP stack; its extras pin torch, vllm, transformers, flash-attn, ...
python -m pip install "verl[vllm,fsdp]==0.9.1"

# step 4: this repository (editable: workflow/verl_hydra is read from the checkout) and the slurm executor of
# workflow/profiles/slurm (SmolLM2's GGUF for the smoke runs came with environment.yml)
python -m pip install -e ".[verl,pipeline,dev]" snakemake-executor-plugin-slurm
python -c "import verl, flash_attn, vllm, m2po.verl_plugin; print('install_gpu: OK, verl', verl.__version__)"
