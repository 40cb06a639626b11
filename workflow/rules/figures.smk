# One script per paper figure (figures/figN.py), each reading the tidy run logs only.
FIGURES = ["fig1", "fig2", "fig3", "fig4a", "fig4b", "fig5", "fig6", "fig7a", "fig7b", "fig8", "fig9a", "fig9b",
           "fig11", "table1"]


def figure_outputs(fig):
    if fig == "table1":
        return [f"{RES}/figures/table1.csv", f"{RES}/figures/table1.md"]
    return [f"{RES}/figures/{fig}.png", f"{RES}/figures/{fig}.pdf"]


for _fig in FIGURES:

    rule:
        name:
            f"figure_{_fig}"
        input:
            expand(f"{RES}/runs/{{run_id}}/updates.csv", run_id=RUN_IDS),
            expand(f"{RES}/runs/{{run_id}}/evals.csv", run_id=RUN_IDS),
            expand(f"{RES}/runs/{{run_id}}/tokens.csv", run_id=RUN_IDS),
            expand(f"{RES}/runs/{{run_id}}/benchmarks.csv", run_id=RUN_IDS),
            script=f"figures/{_fig}.py",
            shared=["figures/style.py", "figures/common.py", "figures/paper_values.yaml"],
        output:
            figure_outputs(_fig),
        log:
            f"{RES}/logs/figures/{_fig}.log",
        benchmark:
            f"{RES}/benchmarks/figures/{_fig}.tsv"
        threads: 1
        params:
            models=" ".join(MODELS),
        shell:
            "python {input.script} --runs {RES}/runs --out {RES}/figures --stale {config[stale]} "
            "--models {params.models} > {log} 2>&1"
