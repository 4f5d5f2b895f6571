# Every run of a suite -> scores.parquet (one row per run x evaluation point x comparison) and runs.json
# (each planned run's status, and the pairs the plan left out). The stage plans the suite itself: no run
# list on the command line. A run recorded as not completed is listed, not scored.


rule aggregate:
    input:
        runs=lambda wildcards: run_results(suite_plan(wildcards.suite).runs, wildcards.suite),
    output:
        scores=RESULTS / "{suite}" / "scores.parquet",
        runs=RESULTS / "{suite}" / "runs.json",
    params:
        results=RESULTS,
    log:
        RESULTS / "logs" / "{suite}" / "aggregate.log",
    shell:
        "python -m leaderboard aggregate --suite {wildcards.suite:q} --results-dir {params.results:q} "
        "--out {output.scores:q} > {log:q} 2>&1"
