# One job per run of the grid. The tiny engine trains in-process on a CPU; the paper profile
# launches verl (Ray, FSDP, vLLM) through the m2po verl plugin on GPU nodes.

if config["engine"] == "tiny":

    rule warm_start:
        output:
            f"{RES}/cache/warm_start-{{model}}.done",
        log:
            f"{RES}/logs/warm_start/{{model}}.log",
        benchmark:
            f"{RES}/benchmarks/warm_start/{{model}}.tsv"
        threads: 1
        params:
            overrides=" ".join(
                f"--set '{k}={v}'" for k, v in (config.get("train_overrides") or {}).items() if k.startswith("warm_start.")
            ),
        shell:
            "m2po train --warm-start-only --set model.size={wildcards.model} "
            "--set warm_start.cache_dir={RES}/cache {params.overrides} > {log} 2>&1 && touch {output}"

    rule train:
        input:
            data=f"{RES}/data/manifest.done",
            warm=lambda wc: f"{RES}/cache/warm_start-{parse_run_id(wc.run_id).model}.done",
        output:
            updates=f"{RES}/runs/{{run_id}}/updates.csv",
            evals=f"{RES}/runs/{{run_id}}/evals.csv",
            tokens=f"{RES}/runs/{{run_id}}/tokens.csv",
        log:
            f"{RES}/logs/train/{{run_id}}.log",
        benchmark:
            f"{RES}/benchmarks/train/{{run_id}}.tsv"
        threads: config.get("threads_per_run", 1)
        resources:
            mem_mb=1500,
        params:
            overrides=lambda wc: " ".join(
                f"--set '{o}'" for o in train_overrides(parse_run_id(wc.run_id), config)
            ),
        shell:
            "m2po train --out {RES}/runs/{wildcards.run_id} --resume auto "
            "--set warm_start.cache_dir={RES}/cache --set run.threads={threads} {params.overrides} > {log} 2>&1"

else:

    def verl_layout(wc):
        """(nodes, GPUs per node) of a run: the model group file's (workflow/verl/m2po_model/<model>.yaml,
        what the launcher uses too; Qwen2.5-32B: 4 x 8), unless the config sets nodes / gpus_per_node."""
        from pathlib import Path

        import yaml

        models = Path(workflow.main_snakefile).parent / "workflow" / "verl" / "m2po_model"
        group = models / f"{parse_run_id(wc.run_id).model.lower()}.yaml"
        trainer = (yaml.safe_load(group.read_text()) or {}).get("trainer", {}) or {}
        return (
            int(config.get("nodes") or trainer.get("nnodes", 1)),
            int(config.get("gpus_per_node") or trainer.get("n_gpus_per_node", 8)),
        )

    rule train:
        input:
            data=f"{RES}/data/manifest.done",
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
