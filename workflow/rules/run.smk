# One job per (env, algo, config hash, seed). A failed job (crashed, killed, scancel'ed, timed out)
# is retried and resumes from the checkpoint.pt it left behind (not a declared output, so Snakemake
# keeps it). After the third failed attempt (at once for a missing dependency) the failure is written as
# the run's result (status and reason), so the rest of the suite is still judged and published.
# Resources come from the env/algo configs' `resources:` (see common.smk); the slurm profile turns them
# into sbatch options (-t, --mem, --cpus-per-task, --gpus).


rule run:
    output:
        manifest=RESULTS / "runs/{env}/{algo}/{hash}/seed-{seed}/manifest.json",
        metrics=RESULTS / "runs/{env}/{algo}/{hash}/seed-{seed}/metrics.parquet",
    params:
        sets=set_args,
        results=RESULTS,
        image_env=image_env,
    log:
        RESULTS / "logs/runs/{env}/{algo}/{hash}/seed-{seed}.log",
    threads: lambda wildcards: run_resources(wildcards)["cpus_per_task"]
    resources:
        runtime=lambda wildcards: run_resources(wildcards)["runtime"],
        mem_mb=lambda wildcards: run_resources(wildcards)["mem_mb"],
        cpus_per_task=lambda wildcards: run_resources(wildcards)["cpus_per_task"],
        gpu=lambda wildcards: run_resources(wildcards)["gpus"],
    retries: 2
    container:
        run_image
    shell:
        # image_env and sets are shell words already quoted (common.smk); every other value is quoted here
        "{params.image_env}coopbench run {wildcards.algo:q} {wildcards.env:q} --seed {wildcards.seed:q} {params.sets} "
        "--expect-hash {wildcards.hash:q} --results-dir {params.results:q} --threads {threads:q} "
        "--record-failure-after 3 > {log:q} 2>&1"
