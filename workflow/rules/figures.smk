# Every entry of the figure list (m2po.analysis.figure_list: id, script, outputs) drawn by one job, in one
# process, with figures/draw.py (the program `m2po report` runs too) from the tidy run logs only: the runs are
# loaded once per figure, but matplotlib, pandas and the package are imported once.
from m2po.analysis.figure_list import FIGURES


def figure_outputs(fig):
    return fig.outputs(f"{RES}/figures")


rule figures:
    input:
        expand(f"{RES}/runs/{{run_id}}/updates.csv", run_id=RUN_IDS),
        expand(f"{RES}/runs/{{run_id}}/evals.csv", run_id=RUN_IDS),
        expand(f"{RES}/runs/{{run_id}}/tokens.csv", run_id=RUN_IDS),
        expand(f"{RES}/runs/{{run_id}}/benchmarks.csv", run_id=RUN_IDS),
        scripts=[fig.script for fig in FIGURES],
        shared=["figures/draw.py", "figures/style.py", "figures/common.py", "figures/paper_values.yaml"],
    output:
        [out for fig in FIGURES for out in figure_outputs(fig)],
    log:
        f"{RES}/logs/figures.log",
    benchmark:
        f"{RES}/benchmarks/figures.tsv"
    threads: 1
    localrule: True
    conda:
        CPU_ENV
    params:
        figures=" ".join(fig.id for fig in FIGURES),
        models=" ".join(MODELS),
    shell:
        "python figures/draw.py {params.figures} --runs {RES}/runs --out {RES}/figures --stale {config[stale]} "
        "--models {params.models} > {log} 2>&1"
