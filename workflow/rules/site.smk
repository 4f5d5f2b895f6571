# The static leaderboard: index with a table per environment and the figures, a page per run.


rule site:
    input:
        stats=SUITE_DIR / "stats.json",
        scores=SUITE_DIR / "scores.parquet",
        figures=SUITE_DIR / "figures",
        manifests=[run_dir / "manifest.json" for run_dir in RUN_DIRS],
    output:
        index=SITE / "index.html",
    params:
        suite=SUITE,
        run_dirs=RUN_DIRS,
        site=SITE,
    log:
        RESULTS / "logs" / SUITE / "site.log",
    shell:
        "python -m leaderboard site --suite {params.suite} --stats {input.stats} --scores {input.scores} "
        "--figures {input.figures} --out {params.site} {params.run_dirs} > {log} 2>&1"
