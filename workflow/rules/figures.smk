# One job per entry of the figure list (m2po.analysis.figure_list: id, script, outputs), each drawing it with
# figures/draw.py (the program `m2po report` runs too) from the tidy run logs only.
from m2po.analysis.figure_list import FIGURES


def figure_outputs(fig):
    return fig.outputs(f"{RES}/figures")


for _fig in FIGURES:

    rule:
        name:
            f"figure_{_fig.id}"
        input:
            expand(f"{RES}/runs/{{run_id}}/updates.csv", run_id=RUN_IDS),
            expand(f"{RES}/runs/{{run_id}}/evals.csv", run_id=RUN_IDS),
            expand(f"{RES}/runs/{{run_id}}/tokens.csv", run_id=RUN_IDS),
            expand(f"{RES}/runs/{{run_id}}/benchmarks.csv", run_id=RUN_IDS),
            script=_fig.script,
            shared=["figures/draw.py", "figures/style.py", "figures/common.py", "figures/paper_values.yaml"],
        output:
            figure_outputs(_fig),
        log:
            f"{RES}/logs/figures/{_fig.id}.log",
        benchmark:
            f"{RES}/benchmarks/figures/{_fig.id}.tsv"
        threads: 1
        localrule: True
        conda:
            CPU_ENV
        params:
            figure=_fig.id,
            models=" ".join(MODELS),
        shell:
            "python figures/draw.py {params.figure} --runs {RES}/runs --out {RES}/figures --stale {config[stale]} "
            "--models {params.models} > {log} 2>&1"
