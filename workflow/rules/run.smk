# One job per (env, algo, config hash, seed). A failed job is retried and resumes from the
# checkpoint.pt it left behind (not a declared output, so Snakemake keeps it).


rule run:
    output:
        manifest=RESULTS / "runs/{env}/{algo}/{hash}/seed-{seed}/manifest.json",
        metrics=RESULTS / "runs/{env}/{algo}/{hash}/seed-{seed}/metrics.parquet",
    params:
        sets=set_args,
        results=RESULTS,
    log:
        RESULTS / "logs/runs/{env}/{algo}/{hash}/seed-{seed}.log",
    threads: 1
    resources:
        runtime=config["run_resources"]["runtime"],
        mem_mb=config["run_resources"]["mem_mb"],
    retries: 2
    shell:
        "coopbench run {wildcards.algo} {wildcards.env} --seed {wildcards.seed} {params.sets} "
        "--expect-hash {wildcards.hash} --results-dir {params.results} > {log} 2>&1"
