#!/usr/bin/env bash
# Build the CPU image (containers/build.sh; cached layers make a rebuild quick) and run the `smoke`
# suite inside it with podman, without network; alongside, the same suite locally from .venv.
# Then check that every run completed, that scores and metrics are identical to the local run's,
# and that every manifest (and the site) records the image's digest-pinned reference.
#
#   containers/smoke-in-container.sh        (root; `make smoke-container`)
#
# COOPBENCH_CI_KEEP=1 keeps the work directory. Prints the wall time of each step.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
export PATH=$REPO/.venv/bin:$PATH
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export COOPBENCH_TORCH_THREADS=1
export CONTAINERS_CONF=$REPO/containers/build/containers.conf
IMAGE=localhost/coopbench:cpu
SUITE=smoke
REPS=200

log() { echo "[smoke-in-container] $*" >&2; }
die() { log "FAIL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (podman import and build)"
[ -x "$REPO/.venv/bin/snakemake" ] || die "no .venv: run 'make venv' first"

t_all=$SECONDS
t=$SECONDS
"$REPO/containers/build.sh" cpu --no-sif
ref=$(cat "$REPO/containers/build/coopbench-cpu.ref")
log "image $ref: $((SECONDS - t)) s"

WORK=$(mktemp -d /var/tmp/coopbench-container-ci.XXXXXX)
cleanup() {
    local rc=$?
    set +e
    if ((rc != 0)); then
        for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -40 "$f"; } >&2; done
    fi
    [ -n "${local_pid:-}" ] && kill "$local_pid" 2>/dev/null
    if [ -z "${COOPBENCH_CI_KEEP:-}" ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
mkdir -p "$WORK/local" "$WORK/container"

t=$SECONDS
(cd "$WORK/local" && snakemake -s "$REPO/Snakefile" --profile "$REPO/workflow/profiles/default" --cores 1 \
    --config suite=$SUITE bootstrap_reps=$REPS) >"$WORK/local.log" 2>&1 &
local_pid=$!
podman run --rm --network none -v "$WORK/container:/work" -w /work \
    -e COOPBENCH_CONTAINER_IMAGE="$ref" -e COOPBENCH_TORCH_THREADS=1 "$IMAGE" \
    snakemake -s /opt/coopbench/Snakefile --profile /opt/coopbench/workflow/profiles/default --cores 1 \
    --config suite=$SUITE bootstrap_reps=$REPS >"$WORK/container.log" 2>&1 \
    || die "the smoke suite failed inside $IMAGE (see $WORK/container.log)"
log "smoke suite inside the container: $((SECONDS - t)) s"
wait "$local_pid" || die "the local run failed (see $WORK/local.log)"
local_pid=""

python "$REPO/.ci/slurm/compare.py" $SUITE "$WORK/container" "$WORK/local" --image "$ref" --site
log "all container checks passed in $((SECONDS - t_all)) s"
