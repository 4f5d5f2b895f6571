# Every run of the suite -> one table of scores (one row per run x evaluation point).


rule aggregate:
    input:
        manifests=[run_dir / "manifest.json" for run_dir in RUN_DIRS],
        metrics=[run_dir / "metrics.parquet" for run_dir in RUN_DIRS],
    output:
        SUITE_DIR / "scores.parquet",
    params:
        suite=SUITE,
        run_dirs=RUN_DIRS,
    log:
        RESULTS / "logs" / SUITE / "aggregate.log",
    shell:
        "python -m leaderboard aggregate --suite {params.suite} --out {output} {params.run_dirs} > {log} 2>&1"
