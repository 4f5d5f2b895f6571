# One job per (env, algo, config hash, seed), or with `seeds_per_job: K` (config/workflow.yaml) one job per K seeds
# of a (env, algo, config hash): `coopbench run --seeds`, a seed batch in one process (docs/architecture.md, "Seed
# batches"). The DAG still asks for each seed's manifest; a seed's results are its own either way.
# A failed job (crashed, killed, scancel'ed, timed out) is retried and resumes from the checkpoint.pt files it
# left behind (not declared outputs, so Snakemake keeps them). After the third failed attempt (at once for a
# missing dependency) the failure is written as the run's result (status and reason), so the rest of the suite is
# still judged and published. Resources come from the env/algo configs' `resources:` (see common.smk); the slurm
# profile turns them into sbatch options (-t, --mem, --cpus-per-task, --gpus).

if config["seeds_per_job"] == 1:

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
            "{params.image_env}coopbench run {wildcards.algo:q} {wildcards.env:q} --seed {wildcards.seed:q} {params.sets} "
            "--expect-hash {wildcards.hash:q} --results-dir {params.results:q} --threads {threads:q} "
            "--record-failure-after 3 > {log:q} 2>&1"

else:
    plan_seed_blocks()

    # The block's job: one process trains its seeds and writes every seed's run directory; the marker says it ran.
    rule run_seeds:
        wildcard_constraints:
            seeds=r"\d+(,\d+)*",
        output:
            RESULTS / "runs/{env}/{algo}/{hash}/seeds-{seeds}.done",
        params:
            sets=lambda wildcards: set_args(first_seed(wildcards)),
            results=RESULTS,
            image_env=lambda wildcards: image_env(first_seed(wildcards)),
        log:
            RESULTS / "logs/runs/{env}/{algo}/{hash}/seeds-{seeds}.log",
        threads: lambda wildcards: batch_resources(wildcards)["cpus_per_task"]
        resources:
            runtime=lambda wildcards: batch_resources(wildcards)["runtime"],
            mem_mb=lambda wildcards: batch_resources(wildcards)["mem_mb"],
            cpus_per_task=lambda wildcards: batch_resources(wildcards)["cpus_per_task"],
            gpu=lambda wildcards: batch_resources(wildcards)["gpus"],
        retries: 2
        container:
            lambda wildcards: run_image(first_seed(wildcards))
        shell:
            "{params.image_env}coopbench run {wildcards.algo:q} {wildcards.env:q} --seeds {wildcards.seeds:q} {params.sets} "
            "--expect-hash {wildcards.hash:q} --results-dir {params.results:q} --threads {threads:q} "
            "--record-failure-after 3 > {log:q} 2>&1 && touch {output:q}"

    # Each seed's outputs, written by its block's job (update: Snakemake must not delete them before this check).
    rule run:
        input:
            block_marker,
        output:
            manifest=update(RESULTS / "runs/{env}/{algo}/{hash}/seed-{seed}/manifest.json"),
            metrics=update(RESULTS / "runs/{env}/{algo}/{hash}/seed-{seed}/metrics.parquet"),
        localrule: True
        shell:
            "test -f {output.manifest:q} && test -f {output.metrics:q}"
