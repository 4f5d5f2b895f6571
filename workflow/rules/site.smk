# The static leaderboard of a suite: claims and verdicts first, statistics per comparison, a page per run.
# The configured suite's site is `site_dir`; a paper target's is site-paper-<name>.


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
        "--runs {input.runs:q} --claims {params.claims:q} --figures {input.figures:q} --out {wildcards.sitedir:q} "
        "> {log:q} 2>&1"
