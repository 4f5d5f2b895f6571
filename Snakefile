from pathlib import Path

# coopbench: suite config -> run jobs -> aggregate -> rliable stats -> figures -> static site.
# Run from the repository root with the project's environment on PATH:
#   snakemake --cores 2                         (the default suite)
#   snakemake --cores 2 --config suite=smoke    (tiny budgets)


configfile: Path(workflow.basedir) / "config" / "workflow.yaml"


container: config["container_image"]


include: "workflow/rules/common.smk"
include: "workflow/rules/run.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/site.smk"


rule all:
    input:
        SITE / "index.html",
    default_target: True
