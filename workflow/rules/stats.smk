# rliable statistics per comparison over the suite's scores, then the figures drawn from them.


rule stats:
    input:
        RESULTS / "{suite}" / "scores.parquet",
    output:
        RESULTS / "{suite}" / "stats.json",
    params:
        reps=config["bootstrap_reps"],
    log:
        RESULTS / "logs" / "{suite}" / "stats.log",
    shell:
        "python -m leaderboard stats --scores {input:q} --out {output:q} --reps {params.reps:q} > {log:q} 2>&1"


rule figures:
    input:
        RESULTS / "{suite}" / "stats.json",
    priority: 5  # the longest summary stage and the site's last input: before claims when both are ready
    output:
        directory(RESULTS / "{suite}" / "figures"),
    log:
        RESULTS / "logs" / "{suite}" / "figures.log",
    shell:
        "python -m leaderboard figures --stats {input:q} --out-dir {output:q} > {log:q} 2>&1"
