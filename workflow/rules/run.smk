# One job per (env, algo, config hash, seed), or with `seeds_per_job: K` (config/workflow.yaml) one job per K seeds
# of a (env, algo, config hash): `coopbench run --seeds`, a seed batch in one process (docs/architecture.md, "Seed
# batches"). The DAG still asks for each seed's manifest; a seed's results are its own either way.
# A failed job (crashed, killed, scancel'ed, timed out) is retried and resumes from the checkpoint.pt files it
# left behind (not declared outputs, so Snakemake keeps them). After the third failed attempt (at once for a
# missing dependency) the failure is written as the run's result (status and reason), so the rest of the suite is
# still judged and published. Resources come from the env/algo configs' `resources:` (see common.smk); the slurm
# profile turns them into sbatch options (-t, --mem, --cpus-per-task, --gpus).

from types import SimpleNamespace

SEEDS_PER_JOB = config["seeds_per_job"]


def run_command(seed_flag):
    # image_env and sets are shell words already quoted (common.smk); every other value is quoted here
    return ("{params.image_env}coopbench run {wildcards.algo:q} {wildcards.env:q} " + seed_flag + " {params.sets} "
            "--expect-hash {wildcards.hash:q} --results-dir {params.results:q} --threads {threads:q} "
            "--record-failure-after 3")


if SEEDS_PER_JOB == 1:

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
            run_command("--seed {wildcards.seed:q}") + " > {log:q} 2>&1"

else:
    # Which seeds share a job is fixed by the plans of every suite (planned once, here): a pair's planned seeds in
    # order, cut into blocks of K, so whichever seed a target asks for, its block is the same job.
    for _suite in (SUITE, *PAPER_SUITES, "papers"):
        suite_plan(_suite)

    def seed_block(wildcards):
        key = (wildcards.env, wildcards.algo, wildcards.hash)
        seed = planned_run(wildcards).seed
        seeds = sorted({k[3] for k in _RUNS if k[:3] == key})
        start = seeds.index(seed) // SEEDS_PER_JOB * SEEDS_PER_JOB
        return seeds[start : start + SEEDS_PER_JOB]

    def block_marker(wildcards):
        seeds = ",".join(map(str, seed_block(wildcards)))
        return RESULTS / f"runs/{wildcards.env}/{wildcards.algo}/{wildcards.hash}/seeds-{seeds}.done"

    def first_seed(wildcards):
        """The wildcards of the block's first seed (its settings and resources are every seed's: one config)."""
        return SimpleNamespace(env=wildcards.env, algo=wildcards.algo, hash=wildcards.hash,
                               seed=wildcards.seeds.split(",")[0])

    def batch_resources(wildcards):
        """One seed's resources; the time limit and memory of the block's seeds one after another (an upper bound:
        a batch is faster per seed, benchmarks/README.md)."""
        one = run_resources(first_seed(wildcards))
        n = len(wildcards.seeds.split(","))
        return {**one, "runtime": one["runtime"] * n, "mem_mb": one["mem_mb"] * n}

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
            run_command("--seeds {wildcards.seeds:q}") + " > {log:q} 2>&1 && touch {output:q}"

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
