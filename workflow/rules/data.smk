rule data:
    output:
        manifest=f"{RES}/data/manifest.done",
    log:
        f"{RES}/logs/data.log",
    benchmark:
        f"{RES}/benchmarks/data.tsv"
    threads: 1
    params:
        datasets=" ".join(config["data"]["datasets"]),
        offline=lambda wc: f"--offline {config['data']['offline']}" if config["data"].get("offline") else "",
    shell:
        "m2po data build --datasets {params.datasets} {params.offline} --out {RES}/data > {log} 2>&1"
        " && touch {output.manifest}"
