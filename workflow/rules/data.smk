# The data stage (`m2po data build`, docs/data.md): the sources of data/sources.yaml -> one folder per dataset
# under results/<profile>/data with its parquet splits and manifest.json, which every later stage reads.
from m2po.data.build import resolve_names
from m2po.data.spec import load_sources

DATA_SOURCES = "data/sources.yaml"
# the manifest.json the build writes for each dataset of the config (groups and `all` expanded)
DATA_MANIFESTS = [
    f"{RES}/data/{name}/manifest.json"
    for name in resolve_names(load_sources(Path(workflow.main_snakefile).parent / DATA_SOURCES), config["data"]["datasets"])
]


rule data:
    input:
        sources=DATA_SOURCES,
    output:
        DATA_MANIFESTS,
    log:
        f"{RES}/logs/data.log",
    benchmark:
        f"{RES}/benchmarks/data.tsv"
    threads: 1
    localrule: True
    conda:
        CPU_ENV
    params:
        datasets=" ".join(config["data"]["datasets"]),
        offline=lambda wc: f"--offline {config['data']['offline']}" if config["data"].get("offline") else "",
    shell:
        "m2po data build --datasets {params.datasets} {params.offline} --sources {input.sources} "
        "--out {RES}/data > {log} 2>&1"
