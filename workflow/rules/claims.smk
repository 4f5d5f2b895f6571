# The papers' claims judged on a suite: analyses (exact computations a paper reports) are jobs of their own,
# shared by every suite; the claims stage reads them with the suite's scores and writes one verdict file per paper.


rule analysis:
    output:
        RESULTS / "analyses" / "{name}.json",
    log:
        RESULTS / "logs" / "analyses" / "{name}.log",
    shell:
        "python -m leaderboard analysis {wildcards.name:q} --out {output:q} > {log:q} 2>&1"


rule claims:
    input:
        scores=RESULTS / "{suite}" / "scores.parquet",
        runs=RESULTS / "{suite}" / "runs.json",
        analyses=lambda wildcards: suite_analyses(wildcards.suite),
    output:
        [RESULTS / "{suite}" / "claims" / f"{paper}.json" for paper in PAPER_NAMES],
    params:
        analyses=RESULTS / "analyses",
        out=lambda wildcards: RESULTS / wildcards.suite / "claims",
        reps=config["bootstrap_reps"],
    log:
        RESULTS / "logs" / "{suite}" / "claims.log",
    shell:
        "python -m leaderboard claims --suite {wildcards.suite:q} --scores {input.scores:q} --runs {input.runs:q} "
        "--analyses {params.analyses:q} --out-dir {params.out:q} --reps {params.reps:q} > {log:q} 2>&1"
