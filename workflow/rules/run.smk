# One job per (env, algo, config hash, seed), or, with `seeds_per_job: K` or `pack_minutes: M` (config/workflow.yaml),
# jobs of several runs (coopbench/jobs.py): a (env, algo, hash)'s seeds in blocks of K, each block one seed batch
# (docs/architecture.md, "Seed batches"), and short runs packed into jobs of about M minutes, run one after another
# in one process (`coopbench run-job`). The DAG still asks for each seed's manifest; a run's results are its own
# either way.
# A failed job (crashed, killed, scancel'ed, timed out) is retried and resumes from the checkpoint.pt files it
# left behind (not declared outputs, so Snakemake keeps them). After the third failed attempt (at once for a
# missing dependency) the failure is written as the run's result (status and reason), so the rest of the suite is
# still judged and published. Resources come from the env/algo configs' `resources:` (see common.smk); the slurm
# profile turns them into sbatch options (-t, --mem, --cpus-per-task, --gpus).

if config["seeds_per_job"] == 1 and config["pack_minutes"] == 0:

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

    # The job: one process trains its runs and writes every run's directory; the marker says it ran. Its file (the
    # items: task, method, hash, seeds, --set arguments) is written when the jobs are planned (common.smk).
    rule run_job:
        input:
            RESULTS / "jobs/{job}.json",
        output:
            RESULTS / "jobs/{job}.done",
        params:
            results=RESULTS,
            image_env=image_env,
        log:
            RESULTS / "logs/jobs/{job}.log",
        threads: lambda wildcards: job_resources_of(wildcards)["cpus_per_task"]
        resources:
            runtime=lambda wildcards: job_resources_of(wildcards)["runtime"],
            mem_mb=lambda wildcards: job_resources_of(wildcards)["mem_mb"],
            cpus_per_task=lambda wildcards: job_resources_of(wildcards)["cpus_per_task"],
            gpu=lambda wildcards: job_resources_of(wildcards)["gpus"],
        retries: 2
        container:
            run_image
        shell:
            "{params.image_env}coopbench run-job {input:q} --results-dir {params.results:q} --threads {threads:q} "
            "--record-failure-after 3 > {log:q} 2>&1 && touch {output:q}"

    # Each run's outputs, written by its job (update: Snakemake must not delete them before this check).
    rule run:
        input:
            job_marker,
        output:
            manifest=update(RESULTS / "runs/{env}/{algo}/{hash}/seed-{seed}/manifest.json"),
            metrics=update(RESULTS / "runs/{env}/{algo}/{hash}/seed-{seed}/metrics.parquet"),
        log:
            RESULTS / "logs/runs/{env}/{algo}/{hash}/seed-{seed}.check.log",
        localrule: True
        shell:
            "test -f {output.manifest:q} -a -f {output.metrics:q} > {log:q} 2>&1"
