#!/usr/bin/env bash
# The GPU check of m2po (docs/verl.md, "GPU check"): one CUDA GPU, at most 8 minutes, nothing to download.
#
#   bash scripts/gpu_check.sh [WORKDIR]
#
# 1. (torch only) the loss benchmark on CUDA: m2po and m2po_released against the authors' released
#    per-token threshold loop, whose every step is a device sync (goal: the loop >= 100x slower than m2po
#    at 1M tokens); and the embedded engine's training update (its 1M model and losses) on CUDA vs CPU.
#    scripts/gpu_check.py; needs torch (a bare CUDA image has it) and this checkout on sys.path.
# 2. (only where verl is installed, e.g. the environment.yml env) verl's own trainer loop in the CPU mode's
#    torchrun form, on the GPU with NCCL: `launch --cpu --device cuda --smoke`, then `--resume`, with the
#    staleness of every update checked. Not in a bare CUDA image: verl imports Ray, whose wheel (ray
#    2.60.0, cp312 manylinux: 79 MB) is over the 64 MB that can be carried to such a machine.
set -uo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-$(mktemp -d -t m2po-gpu-check-XXXX)}"
mkdir -p "${WORK}"
PY="${PYTHON:-python3}"
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}" PYTHONUNBUFFERED=1
if ! nvidia-smi -L >/dev/null 2>&1; then echo "gpu_check: no CUDA GPU visible (nvidia-smi -L failed)" >&2; exit 2; fi
nvidia-smi -L
status=0

echo "== 1. losses and the engine update on CUDA (torch only)"
timeout 300 "${PY}" scripts/gpu_check.py --device cuda --json "${WORK}/gpu_check.json" || status=1

echo "== 2. verl's trainer loop (CPU mode's torchrun form) on CUDA with NCCL"
if "${PY}" -c "import verl, ray, hydra, transformers" >/dev/null 2>&1; then
  launch=("${PY}" -m m2po.verl_plugin.launch --cpu --device cuda --cpu-ranks 1 --smoke --out "${WORK}/verl_smoke")
  timeout 240 "${launch[@]}" && timeout 120 "${launch[@]}" --resume || status=1
else
  echo "gpu_check: verl is not installed here: step 2 skipped (run it in the environment.yml environment)"
fi
echo "gpu_check: work dir ${WORK}, status ${status}"
exit "${status}"
