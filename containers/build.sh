#!/usr/bin/env bash
# Build the coopbench image without any image registry:
#
#   containers/build.sh [cpu|cuda] [--no-sif]
#
# 1. a Debian bookworm base image made with debootstrap and `podman import` (cached as
#    localhost/coopbench-base:bookworm; COOPBENCH_IMAGE_BASE=<image> uses another base instead,
#    e.g. docker.io/library/debian:bookworm-slim where a registry is reachable);
# 2. `podman build -f containers/Dockerfile` (FLAVOR=cpu or cuda) on a context made of the files
#    git knows about (tracked + untracked-not-ignored), tagged localhost/coopbench:<flavor>;
# 3. the image's digest, written as a pinned reference to containers/build/coopbench-<flavor>.ref
#    (and containers/build/image-ref for the Apptainer build) -- manifests record it;
# 4. where `apptainer` is installed (and not --no-sif): containers/build/coopbench-<flavor>.sif
#    from containers/coopbench.def.
#
# Needs root (debootstrap; podman as root). Installs podman, buildah, runc and debootstrap from
# Debian's packages if missing. Podman runs with runc and default_ulimits nofile=1024:1024 and
# nproc <= kernel.pid_max (its own containers.conf via CONTAINERS_CONF, the system's is not
# touched). Local wheel directories and file:// indexes from the host's pip configuration (e.g. a
# CPU torch wheel) are bind-mounted into the build and used before PyPI.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
BUILD=$REPO/containers/build
FLAVOR=cpu
SIF=1
for arg in "$@"; do
    case "$arg" in
        cpu | cuda) FLAVOR=$arg ;;
        --no-sif) SIF=0 ;;
        -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "usage: $0 [cpu|cuda] [--no-sif]" >&2; exit 2 ;;
    esac
done
IMAGE=localhost/coopbench:$FLAVOR
BASE_IMAGE=${COOPBENCH_IMAGE_BASE:-localhost/coopbench-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { echo "[build-image] $*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap and podman import need it)"
mkdir -p "$BUILD"
t_start=$SECONDS

# --- tools -------------------------------------------------------------------------------------
need=()
for pkg in podman buildah runc debootstrap; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    log "installing ${need[*]} from Debian's packages"
    apt=(apt-get -q -o DPkg::Lock::Timeout=600)
    export DEBIAN_FRONTEND=noninteractive
    if ! "${apt[@]}" install -y --no-install-recommends "${need[@]}" >"$BUILD/apt.log" 2>&1; then
        "${apt[@]}" update >>"$BUILD/apt.log" 2>&1
        "${apt[@]}" install -y --no-install-recommends "${need[@]}" >>"$BUILD/apt.log" 2>&1 \
            || { tail -20 "$BUILD/apt.log" >&2; die "apt-get install failed"; }
    fi
fi
# `podman run` as root asks for nproc=1048576 unless told otherwise; kernels or sandboxes that
# refuse more than kernel.pid_max (which caps the process count anyway) then fail to start it.
nproc=$(ulimit -Hu)
pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
[[ "$nproc" =~ ^[0-9]+$ ]] && ((nproc <= pid_max)) || nproc=$pid_max
cat >"$BUILD/containers.conf" <<EOF
# Written by containers/build.sh; used through CONTAINERS_CONF.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$BUILD/containers.conf

# --- base image: debootstrap + podman import ---------------------------------------------------
if [ -z "${COOPBENCH_IMAGE_BASE:-}" ] && ! podman image exists "$BASE_IMAGE"; then
    log "debootstrap bookworm (minbase + python3) from $MIRROR"
    t0=$SECONDS
    rootfs=$(mktemp -d "$BUILD/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$MIRROR" >"$BUILD/debootstrap.log" 2>&1 \
        || { tail -20 "$BUILD/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" --numeric-owner -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase bookworm $MIRROR" - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    log "base image $BASE_IMAGE in $((SECONDS - t0)) s"
fi

# --- build context: the files git knows about --------------------------------------------------
ctx=$BUILD/context
rm -rf "$ctx"
mkdir -p "$ctx"
git ls-files -z --cached --others --exclude-standard \
    | python3 -c 'import os,sys; sys.stdout.write("".join(p + "\0" for p in sys.stdin.read().split("\0") if p and os.path.isfile(p)))' \
    | tar --null -T - -c | tar -x -C "$ctx"
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit+dirty"
fi

# --- local wheels / indexes from the host's pip configuration ----------------------------------
mounts=() wheels="" extra_indexes=""
pip_cfg() { python3 -m pip config get "global.$1" 2>/dev/null || true; }
for dir in ${PIP_FIND_LINKS:-} $(pip_cfg find-links); do
    dir=${dir#file://}
    [ -d "$dir" ] || continue
    [[ " $wheels " == *" $dir "* ]] && continue
    mounts+=(-v "$dir:$dir:ro")
    wheels=${wheels:+$wheels }$dir
done
for url in ${PIP_EXTRA_INDEX_URL:-} $(pip_cfg extra-index-url); do
    dir=${url#file://}
    dir=${dir%/}
    [ "$dir" != "$url" ] && [ -d "$dir" ] || continue
    # A "simple" index links to its files relative to it (../../files/...): mount its parent.
    [ "$(basename "$dir")" = simple ] && dir=$(dirname "$dir")
    mounts+=(-v "$dir:$dir:ro")
    extra_indexes=${extra_indexes:+$extra_indexes }$url
done
# A CA bundle the host's pip trusts (e.g. a proxy's) is trusted by the build's pip too.
cert=${PIP_CERT:-$(pip_cfg cert)}
cert_arg=""
if [ -n "$cert" ] && [ -f "$cert" ]; then
    mounts+=(-v "$cert:/run/coopbench-build/ca.crt:ro")
    cert_arg=/run/coopbench-build/ca.crt
fi
torch_index=https://download.pytorch.org/whl/cpu
for dir in $wheels; do
    if compgen -G "$dir/torch-2.13.0+cpu-*.whl" >/dev/null; then torch_index=""; fi
done

# --- image -------------------------------------------------------------------------------------
log "podman build $IMAGE (FLAVOR=$FLAVOR, code $commit, base $BASE_IMAGE)"
t0=$SECONDS
podman build --network host --layers \
    -f "$REPO/containers/Dockerfile" \
    --build-arg BASE="$BASE_IMAGE" \
    --build-arg FLAVOR="$FLAVOR" \
    --build-arg CODE_VERSION="$commit" \
    --build-arg TORCH_INDEX="$torch_index" \
    --build-arg WHEELS_DIR="${wheels%% *}" \
    --build-arg EXTRA_INDEXES="$extra_indexes" \
    --build-arg PIP_CERT_FILE="$cert_arg" \
    "${mounts[@]}" -t "$IMAGE" "$ctx" >"$BUILD/build-$FLAVOR.log" 2>&1 \
    || { tail -30 "$BUILD/build-$FLAVOR.log" >&2; die "podman build failed (log: $BUILD/build-$FLAVOR.log)"; }
rm -rf "$ctx"
digest=$(podman image inspect --format '{{.Digest}}' "$IMAGE")
ref="$IMAGE@$digest"
echo "$ref" >"$BUILD/coopbench-$FLAVOR.ref"
echo "$ref" >"$BUILD/image-ref"
log "built $ref in $((SECONDS - t0)) s ($(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"

# --- Apptainer image ---------------------------------------------------------------------------
if ((SIF)); then
    if command -v apptainer >/dev/null; then
        log "apptainer build containers/build/coopbench-$FLAVOR.sif"
        podman save --format docker-archive -o "$BUILD/coopbench.tar" "$IMAGE"
        apptainer build --force "$BUILD/coopbench-$FLAVOR.sif" "$REPO/containers/coopbench.def"
        rm -f "$BUILD/coopbench.tar"
    else
        log "apptainer not installed: no .sif (on a machine with apptainer: containers/build.sh $FLAVOR)"
    fi
fi
log "done in $((SECONDS - t_start)) s; reference: $ref (in containers/build/coopbench-$FLAVOR.ref)"
