#!/usr/bin/env bash
# Stop the one-node cluster that start-cluster.sh started: slurmd, slurmctld, then munged, each by
# the PID in its PID file under $COOPBENCH_SLURM_DIR (nothing is killed by name). Safe to run twice.
set -uo pipefail

STATE=${COOPBENCH_SLURM_DIR:-/var/tmp/coopbench-slurm}

log() { echo "[stop-cluster] $*" >&2; }

stop() {  # stop NAME PIDFILE
    local name=$1 pidfile=$2 pid
    [ -s "$pidfile" ] || { log "$name: no PID file, not running"; return 0; }
    pid=$(cat "$pidfile")
    if ! kill -0 "$pid" 2>/dev/null; then
        log "$name: pid $pid already gone"
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name: pid $pid ignored SIGTERM for 10 s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
    log "$name: stopped (pid $pid)"
}

stop slurmd "$STATE/slurmd.pid"
stop slurmctld "$STATE/slurmctld.pid"
stop munged "$STATE/munged.pid"
# Unlink /etc/slurm/slurm.conf if it is start-cluster.sh's link, so that client commands fail
# fast instead of waiting for a controller that is gone.
if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$STATE/slurm.conf" ]; then
    rm -f /etc/slurm/slurm.conf
fi
exit 0
