#!/usr/bin/env bash
# GPU smoke test of the verl plugin (docs/verl.md): a tiny randomly initialised Qwen2 built locally (no
# download), trained through verl + vLLM + Ray with the M2PO loss in the `minibatch` mask scope at
# staleness 4, stopped after its step-3 checkpoint, then resumed from it for step 4 (queue restore).
#
#   bash scripts/gpu_smoke.sh [WORKDIR]        # >= 1 CUDA GPU, the environment.yml environment
#
# 4 updates per step and staleness 4 = 1 prefill step: global step 1 only generates, steps 2-4 train
# (steps 3 and 4 on data exactly 4..7 updates old). The run is planned for 4 steps (so the batch step 3
# generates is kept for step 4) and the first session stops after step 3 (m2po.stop_at_step). Then the
# evaluation stage grades the step-4 checkpoint with vLLM (verl's merger first), as the paper profile does.
# The same sequence without a GPU, through verl's loop on the CPU: python -m m2po.verl_plugin.launch --cpu --smoke.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-$(mktemp -d -t m2po-gpu-smoke-XXXX)}"
mkdir -p "${WORK}"
NGPUS="${NGPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}"
if [ "${NGPUS}" -lt 1 ]; then echo "gpu_smoke: no CUDA GPU visible" >&2; exit 2; fi
# the mini-batch (2 prompts x 2 responses = 4 sequences) must split evenly over the data-parallel ranks
if [ "${NGPUS}" -ge 4 ]; then NGPUS=4; elif [ "${NGPUS}" -eq 3 ]; then NGPUS=2; fi
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $((NGPUS - 1)))}"
echo "gpu_smoke: work dir ${WORK}, ${NGPUS} GPU(s)"

python -m m2po.verl_plugin.gpu_smoke prepare --out "${WORK}"

common=(
  m2po_model=qwen2.5-math-7b
  actor_rollout_ref.model.path="${WORK}/model"
  actor_rollout_ref.model.enable_gradient_checkpointing=false
  data.train_files="${WORK}/train.parquet"
  data.val_files="${WORK}/test.parquet"
  data.train_batch_size=8
  data.max_prompt_length=128
  data.max_response_length=64
  data.dataloader_num_workers=0
  actor_rollout_ref.rollout.n=2
  actor_rollout_ref.actor.ppo_mini_batch_size=2
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=2048
  actor_rollout_ref.actor.fsdp_config.optimizer_offload=false
  actor_rollout_ref.actor.policy_loss.loss_mode=m2po
  actor_rollout_ref.actor.policy_loss.mask_scope=minibatch
  actor_rollout_ref.actor.optim.lr=1e-3
  actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=2048
  actor_rollout_ref.rollout.gpu_memory_utilization=0.3
  actor_rollout_ref.rollout.enforce_eager=true
  actor_rollout_ref.rollout.max_num_batched_tokens=2048
  actor_rollout_ref.rollout.max_model_len=256
  reward.custom_reward_function.path=pkg://m2po.verl_plugin.gpu_smoke
  reward.custom_reward_function.name=smoke_score
  reward.num_workers=1
  m2po.staleness=4
  m2po.queue_max_in_memory=0
  trainer.n_gpus_per_node="${NGPUS}"
  trainer.nnodes=1
  trainer.save_freq=1
  trainer.experiment_name=gpu-smoke
  trainer.default_local_dir="${WORK}/ckpt"
  "trainer.logger=[console,file]"
)

# 1 prefill + 2 training steps of a 4-step run; a checkpoint (with the stale queue's manifest) every step
VERL_FILE_LOGGER_PATH="${WORK}/metrics.session-1.jsonl" python -m m2po.verl_plugin.main "${common[@]}" \
  trainer.total_training_steps=4 m2po.stop_at_step=3 trainer.resume_mode=disable
python -m m2po.verl_plugin.gpu_smoke check --metrics "${WORK}/metrics.session-1.jsonl" --ckpt "${WORK}/ckpt" \
  --staleness 4

# resume from global_step_3 (verl's actor state + our queue) and train step 4
VERL_FILE_LOGGER_PATH="${WORK}/metrics.jsonl" \
  python -m m2po.verl_plugin.main "${common[@]}" trainer.total_training_steps=4 trainer.resume_mode=auto
python -m m2po.verl_plugin.gpu_smoke check --metrics "${WORK}/metrics.jsonl" --ckpt "${WORK}/ckpt" --staleness 4

# the evaluation stage on the last checkpoint (docs/eval.md): verl's model merger -> vLLM (2 samples per
# problem of the smoke test set) -> math-verify -> eval/global_step_4/benchmarks.csv; merged weights deleted
mkdir -p "${WORK}/run" "${WORK}/evaldata/gpu_smoke"
ln -sfn "${WORK}/ckpt" "${WORK}/run/checkpoints"
ln -sfn "${WORK}/test.parquet" "${WORK}/evaldata/gpu_smoke/test.parquet"
m2po eval-run --run "${WORK}/run" --step 4 --backend vllm --benchmarks gpu_smoke --data "${WORK}/evaldata" \
  --k 2 --max-new-tokens 64 --no-progress
python - "${WORK}/run" <<'EOF'
import csv, pathlib, sys
run = pathlib.Path(sys.argv[1])
rows = list(csv.DictReader((run / "eval" / "global_step_4" / "benchmarks.csv").open()))
assert [r["benchmark"] for r in rows] == ["gpu_smoke"] and rows[0]["backend"] == "vllm", rows
assert int(rows[0]["n_samples"]) == 2 * int(rows[0]["n_problems"]) > 0 and int(rows[0]["update"]) == 12, rows
assert not list((run / "eval" / "global_step_4").glob("merged-*")), "merged weights were not deleted"
print(f"gpu_smoke: eval stage OK (vLLM, {rows[0]['n_samples']} samples graded, avg@2 {rows[0]['avg_at_k']})")
EOF
echo "gpu_smoke: OK (${WORK})"
