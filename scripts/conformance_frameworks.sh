#!/usr/bin/env bash
# The cross-framework conformance table of docs/conformance.md, reproduced.
#
# Builds scratch virtual environments OUTSIDE the repository (never the project's .venv) with the CPU torch
# wheel and the frameworks' released packages, installs only what importing their loss modules needs, exports
# the vectors with this checkout's .venv and runs the checker against every adapter of
# scripts/conformance_frameworks.py. Tables go to $OUT/<target>.txt and results to $OUT/<target>.json.
# ms-swift 4.6.0 needs trl<1.0, so it gets a venv of its own.
#
#   bash scripts/conformance_frameworks.sh [SCRATCH_DIR]      (default: /tmp/m2po-conformance-frameworks)
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SCRATCH=${1:-/tmp/m2po-conformance-frameworks}
OUT=$SCRATCH/results
mkdir -p "$OUT"

# make_venv DIR PACKAGES-WITHOUT-DEPS -- PACKAGES-WITH-DEPS
make_venv() {
  local dir=$1; shift
  [ -x "$dir/bin/python" ] && return 0
  python3 -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet torch==2.13.0   # first: the CPU wheel, so nothing pulls a CUDA build
  local nodeps=()
  while [ "$1" != "--" ]; do nodeps+=("$1"); shift; done
  shift
  # the frameworks without their dependency lists (AReaL pins torch<2.11 and dozens of services)
  "$dir/bin/python" -m pip install --quiet --no-deps "${nodeps[@]}"
  "$dir/bin/python" -m pip install --quiet "$@"
}

# import_until_ok PYTHON MODULE: install the module each failed import names until MODULE imports (30 rounds)
import_until_ok() {
  local py=$1 module=$2
  for _ in $(seq 1 30); do
    local err missing
    "$py" -c "import $module" > /dev/null 2>&1 && { echo "import $module: ok"; return 0; }
    err=$("$py" -c "import $module" 2>&1 | tail -1)
    missing=$(echo "$err" | sed -n "s/.*No module named '\([^'.]*\).*/\1/p")
    [ -z "$missing" ] && { echo "import $module: $err"; return 1; }
    case $missing in
      PIL) missing=pillow ;; yaml) missing=pyyaml ;; dateutil) missing=python-dateutil ;; zmq) missing=pyzmq ;;
    esac
    echo "import $module: installing $missing"
    "$py" -m pip install --quiet "$missing" 2>/dev/null || return 1
  done
  return 1
}

MAIN=$SCRATCH/venv
SWIFT=$SCRATCH/venv-swift
make_venv "$MAIN" areal==1.0.4 trinity-rft==0.6.0 -- trl==1.16.0 aiohttp packaging tqdm \
  "hydra-core==1.4.0.dev1" "omegaconf==2.4.0.dev2"
make_venv "$SWIFT" ms-swift==4.6.0 -- "trl<1.0"
import_until_ok "$MAIN/bin/python" areal.trainer.ppo.actor
import_until_ok "$MAIN/bin/python" trinity.algorithm.policy_loss_fn
import_until_ok "$MAIN/bin/python" trl.trainer.grpo_trainer
import_until_ok "$SWIFT/bin/python" swift.rlhf_trainers.grpo_trainer
"$MAIN/bin/python" -m pip freeze > "$OUT/pip-freeze-main.txt"
"$SWIFT/bin/python" -m pip freeze > "$OUT/pip-freeze-swift.txt"

"$REPO/.venv/bin/python" -m m2po.conformance export --out "$SCRATCH/vectors"
ADAPTERS=$REPO/scripts/conformance_frameworks.py
run() {  # run PYTHON TARGET [CASES...]
  local py=$1 target=$2; shift 2
  local args=()
  for c in "$@"; do args+=(--cases "$c"); done
  PYTHONPATH=$REPO "$py" -m m2po.conformance check --vectors "$SCRATCH/vectors" \
    --target "$ADAPTERS:$target" "${args[@]}" --json "$OUT/$target.json" > "$OUT/$target.txt" 2>&1
  echo "$target: exit $? ($(tail -1 "$OUT/$target.txt"))"
}
run "$MAIN/bin/python" ArealM2PO
run "$MAIN/bin/python" ArealPPO grpo decoupled_ppo
for t in TrinityPPO TrinityGSPO TrinityCISPO TrinityTOPR TrlGRPO TrlGSPO TrlCISPO; do run "$MAIN/bin/python" $t; done
for t in SwiftGRPO SwiftGSPO SwiftCISPO; do run "$SWIFT/bin/python" $t; done
