# One job per run of the grid (the paper profile launches verl through the m2po verl plugin on GPU
# nodes), or, for the tiny engine, one job per shard of runs trained in-process on a CPU.

if config["engine"] == "tiny":
    # Tiny runs take seconds, so each job is a SHARD: `m2po train-worker` trains several runs in one
    # process (one import, one warm-start load). m2po.pipeline.plan_shards cuts the grid longest runs
    # first, large shards early and small ones last; the priorities make the scheduler follow that order.
    import json as _json

    from m2po.pipeline import plan_shards, warm_start_overrides

    SHARDS = plan_shards(config, RUNS)

    rule warm_start:
        output:
            done=f"{RES}/cache/warm_start-{{model}}.done",
            regime=f"{RES}/regime/warm_start-{{model}}.json",
        log:
            f"{RES}/logs/warm_start/{{model}}.log",
        benchmark:
            f"{RES}/benchmarks/warm_start/{{model}}.tsv"
        threads: 1
        priority: 100
        conda:
            CPU_ENV
        params:
            jobs=lambda wc, output: _json.dumps(
                [
                    {
                        "warm_start_only": True,
                        "overrides": [*warm_start_overrides(wc.model, config), f"warm_start.cache_dir={RES}/cache"],
                        "regime_out": output.regime,
                    }
                ]
            ),
        shell:
            "m2po train-worker --jobs {params.jobs:q} > {log} 2>&1 && touch {output.done}"

    for _i, _shard in enumerate(SHARDS):

        rule:
            name:
                f"train_{_shard.name}"
            input:
                data=DATA_MANIFESTS,
                warm=f"{RES}/cache/warm_start-{_shard.model}.done",
            output:
                [f"{RES}/runs/{r.run_id}/{f}" for r in _shard.runs for f in ("updates.csv", "evals.csv", "tokens.csv")],
            log:
                f"{RES}/logs/train/{_shard.name}.log",
            benchmark:
                f"{RES}/benchmarks/train/{_shard.name}.tsv"
            threads: config.get("threads_per_run", 1)
            priority: len(SHARDS) - _i
            resources:
                mem_mb=1500,
            conda:
                CPU_ENV
            params:
                jobs=_json.dumps(
                    [
                        {
                            "out": f"{RES}/runs/{r.run_id}",
                            "overrides": [
                                *train_overrides(r, config),
                                f"warm_start.cache_dir={RES}/cache",
                                f"run.threads={config.get('threads_per_run', 1)}",
                            ],
                        }
                        for r in _shard.runs
                    ]
                ),
            shell:
                "m2po train-worker --jobs {params.jobs:q} > {log} 2>&1"

else:

    def verl_layout(wc):
        """(nodes, GPUs per node) of a run: its model group's (m2po.pipeline.model_layout; Qwen2.5-32B: 4 x 8),
        unless the config sets nodes / gpus_per_node."""
        return model_layout(parse_run_id(wc.run_id).model, config)

    rule train:
        input:
            data=DATA_MANIFESTS,
        output:
            updates=f"{RES}/runs/{{run_id}}/updates.csv",
            evals=f"{RES}/runs/{{run_id}}/evals.csv",
            tokens=f"{RES}/runs/{{run_id}}/tokens.csv",
        log:
            f"{RES}/logs/train/{{run_id}}.log",
        benchmark:
            f"{RES}/benchmarks/train/{{run_id}}.tsv"
        threads: 16
        resources:
            nodes=lambda wc: verl_layout(wc)[0],
            gpus=lambda wc: verl_layout(wc)[0] * verl_layout(wc)[1],
            runtime=4 * 24 * 60,
        conda:
            GPU_ENV
        params:
            spec=lambda wc: parse_run_id(wc.run_id),
            tau=lambda wc: (
                f"--tau {parse_run_id(wc.run_id).tau}" if parse_run_id(wc.run_id).tau is not None else ""
            ),
            gpus_per_node=lambda wc: verl_layout(wc)[1],
        # verl logs one line per step to <out>/metrics.jsonl; m2po.verl_plugin.tidy converts it into
        # the declared updates/evals/tokens.csv (docs/verl.md, "Tidy logs")
        shell:
            "python -m m2po.verl_plugin.launch --model {params.spec.model} --method {params.spec.method} "
            "--staleness {params.spec.staleness} --seed {params.spec.seed} "
            "{params.tau} --nodes {resources.nodes} --gpus-per-node {params.gpus_per_node} "
            "--data {RES}/data --out {RES}/runs/{wildcards.run_id} > {log} 2>&1 && "
            "python -m m2po.verl_plugin.tidy {RES}/runs/{wildcards.run_id} >> {log} 2>&1"
