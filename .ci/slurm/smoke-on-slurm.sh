#!/usr/bin/env bash
# CI: the workflow on a real Slurm cluster (one node on this machine, from Debian's packages).
#
#   .ci/slurm/smoke-on-slurm.sh          (root; run from anywhere; needs .venv, i.e. `make venv`)
#
# 1. start the cluster (.ci/slurm/start-cluster.sh) and install the slurm profile (make profiles);
# 2. at the same time, each in its own temporary directory:
#    a. the `smoke` suite with `snakemake --profile slurm`;
#    b. a one-run suite, long enough to be interrupted, with `--profile slurm`; once the run has
#       written a checkpoint its Slurm job is `scancel`ed: Snakemake must resubmit it and the
#       retry must resume from the checkpoint;
#    c. both suites locally with `--profile workflow/profiles/default`, as the reference;
# 3. every run completed; the aggregated scores and every metrics.parquet equal the local run's;
#    Slurm manifests carry their job id and the site shows it; the cancelled run resumed and
#    ended identical to the uninterrupted one (.ci/slurm/compare.py);
# 4. stop the cluster (also on failure).
#
# Status checks are made fast for CI (first after 5 s); MinJobAge is 300 s >= 3 x 5 s.
# COOPBENCH_CI_KEEP=1 keeps the work directory. Prints the wall time of each step.
set -euo pipefail

cd "$(dirname "$0")/../.."
REPO=$PWD
export PATH=$REPO/.venv/bin:$PATH
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
# Same torch thread count on both sides whatever the machine (run jobs pass --threads anyway).
export COOPBENCH_TORCH_THREADS=1
SUITE=smoke
REPS=200
FAST_STATUS=(--slurm-init-seconds-before-status-checks 5 --seconds-between-status-checks 5)

log() { echo "[smoke-on-slurm] $*" >&2; }
die() { log "FAIL: $*"; exit 1; }
elapsed() { echo "$((SECONDS - $1)) s"; }

[ "$(id -u)" = 0 ] || die "run as root (it installs and starts Slurm)"
[ -x "$REPO/.venv/bin/snakemake" ] || die "no .venv: run 'make venv' first"

WORK=$(mktemp -d /var/tmp/coopbench-slurm-ci.XXXXXX)
pids=()
cleanup() {
    local rc=$? pid f
    set +e
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    if ((rc != 0)); then
        log "failed (rc $rc); logs:"
        for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -40 "$f"; } >&2; done
        find "$WORK" -path "*/logs/*" -name "*.log" -size +0 2>/dev/null | head -20 \
            | while read -r f; do { echo "--- $f"; tail -15 "$f"; } >&2; done
        squeue >&2
    fi
    "$REPO/.ci/slurm/stop-cluster.sh"
    # A scancel'ed job step can leave its `snakemake --wait-for-files` child behind (proctrack/linuxproc
    # loses it); it ignores SIGTERM. Everything still running from this check's work dir goes.
    pkill -KILL -f -- "$WORK" 2>/dev/null
    if [ -z "${COOPBENCH_CI_KEEP:-}" ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
t_all=$SECONDS

# --- 1. cluster and profile -------------------------------------------------------------------
t=$SECONDS
"$REPO/.ci/slurm/start-cluster.sh"
log "cluster up: $(elapsed $t)"
make -s -C "$REPO" profiles >/dev/null
profile_dir=$(python -c "from snakemake.cli import get_profile_dir; print(get_profile_dir('slurm')[0].resolve())")
[ "$profile_dir" = "$REPO/workflow/profiles/slurm" ] \
    || die "--profile slurm resolves to $profile_dir, not this checkout's workflow/profiles/slurm"

snake() {  # snake DIR ARGS...: the workflow of this checkout, run in DIR
    local dir=$1
    shift
    mkdir -p "$dir"
    (cd "$dir" && exec snakemake -s "$REPO/Snakefile" "$@")
}

# The one-run suite for the scancel check (~10 s of training, a checkpoint every 1000 steps).
cp -r "$REPO/config" "$WORK/config"
cp -r "$REPO/claims" "$WORK/claims"  # claims/ sits beside config/ (coopbench.claims.claims_dir)
cat >"$WORK/config/suites/slurm-retry.yaml" <<'EOF'
description: "CI: one run, cancelled mid-run on Slurm; the retry must resume and match a local run."
environments: [matrix/acpo-3x3]
algorithms: [mappo]
seeds: [0]
run:
  total_env_steps: 20000
  eval_interval: 1000
  eval_episodes: 4
EOF
retry_run_dir=$(COOPBENCH_CONFIG_DIR=$WORK/config python -c "
from coopbench.config import plan_suite
[run] = plan_suite('slurm-retry')
print(run.config.run_dir('results', run.seed))")
retry() { COOPBENCH_CONFIG_DIR=$WORK/config snake "$@" --config suite=slurm-retry -- "$retry_run_dir/manifest.json"; }

# --- 2. everything at once ----------------------------------------------------------------------
t=$SECONDS
snake "$WORK/slurm" --profile slurm "${FAST_STATUS[@]}" \
    --config suite=$SUITE bootstrap_reps=$REPS >"$WORK/slurm.log" 2>&1 &
slurm_pid=$!
pids+=("$slurm_pid")
retry "$WORK/retry-slurm" --profile slurm "${FAST_STATUS[@]}" >"$WORK/retry-slurm.log" 2>&1 &
retry_pid=$!
pids+=("$retry_pid")
{
    snake "$WORK/local" --profile "$REPO/workflow/profiles/default" --cores 1 \
        --config suite=$SUITE bootstrap_reps=$REPS >"$WORK/local.log" 2>&1 &&
    retry "$WORK/retry-local" --profile "$REPO/workflow/profiles/default" --cores 1 >"$WORK/retry-local.log" 2>&1
} &
local_pid=$!
pids+=("$local_pid")

checkpoint=$WORK/retry-slurm/$retry_run_dir/checkpoint.pt
cancelled=""
for _ in $(seq 3000); do  # up to 10 minutes
    kill -0 "$retry_pid" 2>/dev/null || break
    if [ -f "$checkpoint" ]; then
        # This workflow's jobs are named after its SLURM run ID; its only job so far is the run.
        run_id=$(sed -n 's/.*SLURM run ID: \([^ ]*\).*/\1/p' "$WORK/retry-slurm.log" | head -1)
        cancelled=$(squeue -h -t RUNNING --name="$run_id" -o %i | head -1)
        if [ -n "$cancelled" ] && [ -f "$checkpoint" ]; then
            scancel "$cancelled"
            log "retry suite: checkpoint written after $(elapsed $t); scancel $cancelled"
            break
        fi
    fi
    sleep 0.2
done
[ -n "$cancelled" ] || die "never saw the retry suite's run job with a checkpoint to cancel"

wait "$retry_pid" || die "the Slurm run did not recover from scancel (see $WORK/retry-slurm.log)"
log "retry suite on Slurm (cancelled, resubmitted, resumed): $(elapsed $t)"
wait "$slurm_pid" || die "snakemake --profile slurm failed (see $WORK/slurm.log)"
log "smoke suite on Slurm: $(elapsed $t)"
wait "$local_pid" || die "the local reference runs failed (see $WORK/local.log, $WORK/retry-local.log)"
log "local reference runs done: $(elapsed $t)"
pids=()

# --- 3. compare ---------------------------------------------------------------------------------
grep -q "SLURM run ID" "$WORK/slurm.log" || die "the smoke run did not use the slurm executor"
grep -qE "SLURM-job '$cancelled' failed" "$WORK/retry-slurm.log" \
    || die "Snakemake did not see Slurm job $cancelled fail"
python "$REPO/.ci/slurm/compare.py" $SUITE "$WORK/slurm" "$WORK/local" --slurm --site
COOPBENCH_CONFIG_DIR=$WORK/config python "$REPO/.ci/slurm/compare.py" slurm-retry \
    "$WORK/retry-slurm" "$WORK/retry-local" --slurm --runs-only \
    --resumed-run matrix/acpo-3x3 mappo 0 --cancelled-job "$cancelled"

log "all Slurm checks passed in $(elapsed $t_all)"
