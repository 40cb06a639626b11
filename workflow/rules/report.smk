rule report:
    input:
        [out for fig in FIGURES for out in figure_outputs(fig)],
    output:
        md=f"{RES}/report.md",
        html=f"{RES}/report.html",
        claims=f"{RES}/claims.csv",
    log:
        f"{RES}/logs/report.log",
    benchmark:
        f"{RES}/benchmarks/report.tsv"
    threads: 1
    localrule: True
    conda:
        CPU_ENV
    shell:
        "m2po report --results {RES} --profile {config[profile]} --stale {config[stale]} --no-figures > {log} 2>&1"
