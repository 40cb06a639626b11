# The study as one DAG: datasets -> training grid -> evaluation -> figures -> report.
#   snakemake --profile workflow/profiles/tiny     (the embedded default, CPU; `make reproduce`)
#   snakemake --profile workflow/profiles/paper -n (the paper's grid via the verl plugin)
# Every rule calls the `m2po` command, so every stage also runs by hand; with --use-conda each rule runs in
# its environment of workflow/envs/ (the CPU one, or the verl GPU one for the paper's training and eval jobs).

from snakemake.utils import min_version, validate

min_version("9.0")


# The tiny study is the default. A profile's (or the command line's) --configfile replaces it
# rather than merging into it: a merge would carry the tiny grid's blocks into every other study.
if not config.get("profile"):

    configfile: "workflow/config/tiny.yaml"


validate(config, "workflow/schemas/config.schema.yaml")

include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        f"{RES}/report.md",
        f"{RES}/report.html",
    default_target: True
    localrule: True
