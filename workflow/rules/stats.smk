# rliable statistics over the suite's scores, then the figures drawn from them.


rule stats:
    input:
        SUITE_DIR / "scores.parquet",
    output:
        SUITE_DIR / "stats.json",
    params:
        reps=config.get("bootstrap_reps", 2000),
    log:
        RESULTS / "logs" / SUITE / "stats.log",
    shell:
        "python -m leaderboard stats --scores {input} --out {output} --reps {params.reps} > {log} 2>&1"


rule figures:
    input:
        SUITE_DIR / "stats.json",
    output:
        directory(SUITE_DIR / "figures"),
    log:
        RESULTS / "logs" / SUITE / "figures.log",
    shell:
        "python -m leaderboard figures --stats {input} --out-dir {output} > {log} 2>&1"
