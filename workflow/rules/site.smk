# The static leaderboard of a suite: claims and verdicts first, statistics per comparison, a page per run, and
# per task an animation of a trained policy where the task can draw itself.
# The configured suite's site is `site_dir`; a paper target's is site-paper-<name>.


rule animations:
    input:
        animated_runs,
    output:
        directory(RESULTS / "{suite}" / "animations"),
    params:
        results=RESULTS,
    log:
        RESULTS / "logs" / "{suite}" / "animations.log",
    shell:
        "python -m leaderboard animations --suite {wildcards.suite:q} --results-dir {params.results:q} "
        "--out-dir {output:q} > {log:q} 2>&1"


rule site:
    input:
        unpack(site_inputs),
    output:
        index="{sitedir}/index.html",
    params:
        suite=lambda wildcards: SITES[wildcards.sitedir],
        claims=lambda wildcards: RESULTS / SITES[wildcards.sitedir] / "claims",
    log:
        RESULTS / "logs" / "site" / "{sitedir}.log",
    shell:
        "python -m leaderboard site --suite {params.suite:q} --stats {input.stats:q} --scores {input.scores:q} "
        "--runs {input.runs:q} --claims {params.claims:q} --figures {input.figures:q} --animations {input.animations:q} "
        "--out {wildcards.sitedir:q} "
        "> {log:q} 2>&1"
