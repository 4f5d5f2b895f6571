from pathlib import Path

# coopbench: suite config -> run jobs -> aggregate -> rliable stats -> figures -> claims -> static site.
# Run from the repository root with the project's environment on PATH:
#   snakemake --cores 2                         (the default suite -> site/)
#   snakemake --cores 2 --config suite=smoke    (tiny budgets)
#   snakemake --cores 2 paper_acpo              (ACPO's experiments at its budget, its claims judged -> site-paper-acpo/)


configfile: Path(workflow.basedir) / "config" / "workflow.yaml"


include: "workflow/rules/config.smk"  # validates the config first (workflow/schemas/config.schema.yaml)


container: config["container_image"]


include: "workflow/rules/common.smk"
include: "workflow/rules/run.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/claims.smk"
include: "workflow/rules/site.smk"


rule all:
    input:
        SITE / "index.html",
    default_target: True


# One target per paper: exactly the runs its claims need, at its budget and seeds, then the verdicts and a site.
rule paper_acpo:
    input:
        RESULTS / "paper-acpo" / "claims" / "acpo.json",
        "site-paper-acpo/index.html",


rule paper_as:
    input:
        RESULTS / "paper-as" / "claims" / "as.json",
        "site-paper-as/index.html",


rule paper_bn:
    input:
        RESULTS / "paper-bn" / "claims" / "bn.json",
        "site-paper-bn/index.html",


rule paper_cora:
    input:
        RESULTS / "paper-cora" / "claims" / "cora.json",
        "site-paper-cora/index.html",


rule paper_lan:
    input:
        RESULTS / "paper-lan" / "claims" / "lan.json",
        "site-paper-lan/index.html",
