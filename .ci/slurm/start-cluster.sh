#!/usr/bin/env bash
# Start a real one-node Slurm cluster on this machine, from Debian's packages (needs root).
#
#   .ci/slurm/start-cluster.sh      install munge + Slurm if missing, configure, start, wait for "idle"
#   .ci/slurm/stop-cluster.sh       stop the daemons this script started (by PID)
#
# The node is localhost: proctrack/linuxproc, task/none, select/cons_tres with CR_Core_Memory,
# RealMemory and the CPU layout taken from `slurmd -C`. There is no accounting database
# (AccountingStorageType=accounting_storage/none), so `sacct` cannot answer and the Snakemake
# plugin must poll `squeue` (`slurm-status-command: squeue` in the slurm profile); squeue only
# reports a finished job for MinJobAge seconds, so MinJobAge (300 s here) must be at least 3x the
# plugin's init-seconds-before-status-checks.
#
# Everything the daemons write (config copy, state, spool, logs, PID files) lives under
# $COOPBENCH_SLURM_DIR (default /var/tmp/coopbench-slurm); /etc/slurm/slurm.conf is a link to the
# config there so that sbatch/squeue/scontrol find it without SLURM_CONF. An existing
# /etc/slurm/slurm.conf that this script did not write is left alone (the script stops instead).
set -euo pipefail

STATE=${COOPBENCH_SLURM_DIR:-/var/tmp/coopbench-slurm}
NODE=localhost
PARTITION=${COOPBENCH_SLURM_PARTITION:-debug}
MIN_JOB_AGE=300
MARK="# written by coopbench .ci/slurm/start-cluster.sh"
WAIT_S=${COOPBENCH_SLURM_WAIT_S:-90}

log() { echo "[start-cluster] $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: it installs packages and starts munged, slurmctld and slurmd"

install_packages() {
    local need=() pkg
    for pkg in munge slurmctld slurmd slurm-client; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
    done
    ((${#need[@]})) || return 0
    log "installing ${need[*]} from Debian's packages"
    # Keep the packages' maintainer scripts from starting the daemons: this script starts them.
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local apt=(apt-get -q -o DPkg::Lock::Timeout=600)
    export DEBIAN_FRONTEND=noninteractive
    if ! "${apt[@]}" install -y --no-install-recommends "${need[@]}" >"$STATE/apt.log" 2>&1; then
        "${apt[@]}" update >>"$STATE/apt.log" 2>&1
        "${apt[@]}" install -y --no-install-recommends "${need[@]}" >>"$STATE/apt.log" 2>&1 \
            || { tail -20 "$STATE/apt.log" >&2; ((made_policy)) && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
    fi
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    return 0
}

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        install -d -o munge -g munge -m 700 /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    if running "$STATE/munged.pid"; then
        log "munged already running (pid $(cat "$STATE/munged.pid"))"
    elif munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "a munged not started by this script is answering; using it"
    else
        rm -f "$STATE/munged.pid"
        # munged refuses to run as root; the key and its directories belong to user munge.
        rm -f /run/munge/munged.pid
        runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
        for _ in $(seq 50); do running /run/munge/munged.pid && break; sleep 0.1; done
        running /run/munge/munged.pid || die "munged did not start (see /var/log/munge/munged.log)"
        cp /run/munge/munged.pid "$STATE/munged.pid"
    fi
    for _ in $(seq 50); do munge -n | unmunge >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "munge does not answer: munge -n | unmunge fails"
}

write_config() {
    # CPU layout and memory as slurmd itself sees them; leave 5% of the memory to the system.
    local hw cpus boards sockets cores threads mem
    hw=$(slurmd -C | head -1)
    field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
    cpus=$(field CPUs) boards=$(field Boards) sockets=$(field SocketsPerBoard)
    cores=$(field CoresPerSocket) threads=$(field ThreadsPerCore) mem=$(field RealMemory)
    [ -n "$cpus" ] && [ -n "$mem" ] || die "cannot parse 'slurmd -C': $hw"
    mem=$((mem * 95 / 100))
    mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log"
    cat >"$STATE/slurm.conf" <<EOF
$MARK
# A one-node cluster for coopbench's CI: controller and node on localhost, no accounting database.
ClusterName=coopbench
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# No accounting: Snakemake polls squeue, which shows a finished job for MinJobAge seconds only.
# Keep MinJobAge >= 3 x the plugin's init-seconds-before-status-checks (default 40 s).
MinJobAge=$MIN_JOB_AGE
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mkdir -p /etc/slurm
    if [ -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ] \
        && ! grep -qF "$MARK" /etc/slurm/slurm.conf; then
        die "/etc/slurm/slurm.conf exists and was not written by this script; not touching it"
    fi
    ln -sfn "$STATE/slurm.conf" /etc/slurm/slurm.conf
    log "node $NODE: CPUs=$cpus RealMemory=${mem}MB, partition $PARTITION, MinJobAge=${MIN_JOB_AGE}s"
}

start_slurm() {
    if running "$STATE/slurmctld.pid"; then
        log "slurmctld already running (pid $(cat "$STATE/slurmctld.pid"))"
    else
        # -c: start from a clean state (no jobs or node states left from an earlier cluster).
        slurmctld -c -f "$STATE/slurm.conf"
    fi
    if running "$STATE/slurmd.pid"; then
        log "slurmd already running (pid $(cat "$STATE/slurmd.pid"))"
    else
        slurmd -N "$NODE" -f "$STATE/slurm.conf"
    fi
}

wait_idle() {
    local state="" i
    for ((i = 0; i < WAIT_S * 2; i++)); do
        state=$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null || true)
        case "$state" in
            idle*) log "node $NODE is idle after $((i / 2)) s"; return 0 ;;
            drain* | down*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    tail -20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
    die "node $NODE not idle after ${WAIT_S}s (state: ${state:-unknown})"
}

mkdir -p "$STATE"
t0=$SECONDS
install_packages
start_munge
write_config
start_slurm
wait_idle
log "cluster up in $((SECONDS - t0)) s; stop it with .ci/slurm/stop-cluster.sh"
