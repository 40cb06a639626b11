# The evaluation stage (`m2po eval-run`, docs/eval.md): every training run's checkpoints graded on the
# benchmarks with math-verify -> runs/<run_id>/benchmarks.csv, one row per (checkpoint update, benchmark),
# which Table 1, the accuracy curves and the claims read. Between training (train.smk) and the figures.
# Settings: the `eval:` section of workflow/config/<profile>.yaml (all optional).
from m2po.eval.stage import planned_verl_steps
from m2po.pipeline import TINY_EVAL_JOB_ARGS, eval_protocol_args

EVAL = config.get("eval") or {}


wildcard_constraints:
    step=r"\d+",


def eval_protocol():
    """The `m2po eval-run` options of the config's eval section (benchmarks, k, sampling)."""
    return " ".join(eval_protocol_args(config))


if config["engine"] == "tiny":

    # One job per training shard (train.smk's SHARDS), in-process on a CPU: for each of the shard's runs, its
    # best checkpoint (the paper's selection rule applied to its in-training evaluations) and its final one, on
    # the full held-out set with k samples per problem. One process per shard pays the imports and the grading
    # workers' start once; verdicts are memoized across runs in cache/verdicts (m2po.eval.memo). A shard's eval
    # job has its training job's priority, so the large ones run as soon as they can and small jobs end the study.
    for _i, _shard in enumerate(SHARDS):

        rule:
            name:
                f"eval_{_shard.name}"
            input:
                [f"{RES}/runs/{r.run_id}/{f}" for r in _shard.runs for f in ("updates.csv", "evals.csv")],
                data=DATA_MANIFESTS,
            output:
                [f"{RES}/runs/{r.run_id}/benchmarks.csv" for r in _shard.runs],
            log:
                f"{RES}/logs/eval/{_shard.name}.log",
            benchmark:
                f"{RES}/benchmarks/eval/{_shard.name}.tsv"
            threads: 1
            priority: len(SHARDS) - _i
            resources:
                mem_mb=1000,
            conda:
                CPU_ENV
            params:
                runs=" ".join(f"{RES}/runs/{r.run_id}" for r in _shard.runs),
                protocol=eval_protocol(),
                job=" ".join(TINY_EVAL_JOB_ARGS),
            shell:
                "m2po eval-run --run {params.runs} --backend tiny --data {RES}/data {params.protocol} "
                "--memo {RES}/cache/verdicts {params.job} > {log} 2>&1"

else:

    def eval_steps(run_id):
        """The global steps whose checkpoints a run saves (every trainer.save_freq = 50 steps and the last),
        every `eval.every`-th of them: the known schedule, so that a dry run lists every eval job."""
        return planned_verl_steps(parse_run_id(run_id).staleness, int(EVAL.get("every", 1)))

    def eval_gpus(wc):
        """GPUs of one eval job (vLLM tensor parallel): eval.model_gpus[<model>], else eval.gpus (1)."""
        model = parse_run_id(wc.run_id).model
        return int((EVAL.get("model_gpus") or {}).get(model) or EVAL.get("gpus", 1))

    def model_lengths(wc):
        """(prompt, response) lengths the model trained with: data.max_prompt_length / max_response_length of
        its model group (m2po.pipeline.model_group; Qwen2.5-Math-7B: 1536 + 2560)."""
        data = model_group(parse_run_id(wc.run_id).model).get("data") or {}
        return int(data.get("max_prompt_length", 1536)), int(data.get("max_response_length", 2560))

    # One GPU job per checkpoint: verl's model merger -> vLLM on the eight benchmarks -> graded -> merged
    # weights deleted. A re-run evaluates only the checkpoints (and, within one, the samples) still missing.
    rule eval:
        input:
            updates=f"{RES}/runs/{{run_id}}/updates.csv",
            data=DATA_MANIFESTS,
        output:
            f"{RES}/runs/{{run_id}}/eval/global_step_{{step}}/benchmarks.csv",
        log:
            f"{RES}/logs/eval/{{run_id}}/global_step_{{step}}.log",
        benchmark:
            f"{RES}/benchmarks/eval/{{run_id}}/global_step_{{step}}.tsv"
        threads: 16
        resources:
            gpus=eval_gpus,
            runtime=int(EVAL.get("runtime", 360)),
        conda:
            GPU_ENV
        params:
            protocol=eval_protocol(),
            max_new_tokens=lambda wc: model_lengths(wc)[1],
            max_model_len=lambda wc: sum(model_lengths(wc)),
        shell:
            "m2po eval-run --run {RES}/runs/{wildcards.run_id} --step {wildcards.step} --backend vllm "
            "--data {RES}/data --tensor-parallel-size {resources.gpus} --max-new-tokens {params.max_new_tokens} "
            "--max-model-len {params.max_model_len} {params.protocol} --no-progress > {log} 2>&1"

    rule benchmarks:
        input:
            lambda wc: [
                f"{RES}/runs/{wc.run_id}/eval/global_step_{n}/benchmarks.csv" for n in eval_steps(wc.run_id)
            ],
        output:
            f"{RES}/runs/{{run_id}}/benchmarks.csv",
        log:
            f"{RES}/logs/eval/{{run_id}}/collect.log",
        localrule: True
        conda:
            CPU_ENV
        shell:
            "m2po eval-run --run {RES}/runs/{wildcards.run_id} --collect > {log} 2>&1"
