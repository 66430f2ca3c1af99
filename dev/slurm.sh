#!/usr/bin/env bash
# A single-node Slurm on loopback with a private munge, for tests and
# benchmarks of the Slurm runner (root, no systemd needed).
#
# Usage: dev/slurm.sh {install|start|stop|status|env|stop-controller|start-controller}
#
#   install           check the Debian packages; apt-get install the missing
#   start             install if needed, start munged, slurmctld and slurmd
#                     (each only if not already running), then wait until
#                     the node answers and a probe job completed; idempotent
#   stop              cancel leftover jobs, then stop the daemons by PID
#   status            print the daemons' PIDs and the node state; exit 1 if
#                     something is not running
#   env               print "export SLURM_CONF=..." for the client commands
#   stop-controller   stop only slurmctld (jobs keep running under slurmd)
#   start-controller  start slurmctld again and wait until it answers
#
# Environment: OCPS_SLURM_BASE (default /tmp/ocps-slurm), OCPS_SLURM_SLOTS
# (job slots of the node, default 8), OCPS_SLURMCTLD_PORT (6817) and
# OCPS_SLURMD_PORT (6818).
set -euo pipefail

B=${OCPS_SLURM_BASE:-/tmp/ocps-slurm}
SLOTS=${OCPS_SLURM_SLOTS:-8}
CTLD_PORT=${OCPS_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${OCPS_SLURMD_PORT:-6818}
PACKAGES=(slurmctld slurmd slurm-client munge)
export SLURM_CONF=$B/etc/slurm.conf

log() { echo "slurm.sh: $*" >&2; }

pid_alive() {
    # True if the pid file exists and names a live process of that daemon
    # (the file name without .pid), not a reused PID.
    local pid name
    [ -f "$1" ] || return 1
    pid=$(cat "$1")
    name=$(basename "$1" .pid)
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]
}

do_install() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" != 0 ]; then
            log "missing Debian packages ${missing[*]} and not root"
            exit 1
        fi
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

write_config() {
    # Write slurm.conf; replace the file only if its content changed.
    local tmp=$B/etc/slurm.conf.new
    cat >"$tmp" <<CONF
ClusterName=ocps
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$B/munge/sock/munge.socket
CredType=cred/munge
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$B/spool/slurmctld
SlurmdSpoolDir=$B/spool/slurmd
SlurmctldPidFile=$B/run/slurmctld.pid
SlurmdPidFile=$B/run/slurmd.pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$B/log/jobcomp.txt
MinJobAge=600
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
InactiveLimit=0
SlurmdTimeout=300
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$SLOTS RealMemory=4096 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    if cmp -s "$tmp" "$B/etc/slurm.conf"; then
        rm -f "$tmp"
    else
        mv "$tmp" "$B/etc/slurm.conf"
    fi
}

start_munge() {
    pid_alive "$B/munge/munged.pid" && return 0
    mkdir -p "$B/munge/sock"
    # munged runs as user munge and wants o+x on every socket directory.
    chown munge:munge "$B/munge" "$B/munge/sock"
    chmod 0711 "$B/munge"
    chmod 0755 "$B/munge/sock"
    if ! runuser -u munge -- test -w "$B/munge"; then
        log "user munge cannot write $B/munge: its parents need o+x (not under a 0700 dir)"
        exit 1
    fi
    if [ ! -f "$B/munge/munge.key" ]; then
        mungekey --create --keyfile="$B/munge/munge.key"
        chown munge:munge "$B/munge/munge.key"
        chmod 0400 "$B/munge/munge.key"
    fi
    rm -f "$B/munge/sock/munge.socket" "$B/munge/sock/munge.socket.lock"
    runuser -u munge -- munged --key-file="$B/munge/munge.key" \
        --socket="$B/munge/sock/munge.socket" --pid-file="$B/munge/munged.pid" \
        --log-file="$B/munge/munged.log" --seed-file="$B/munge/munged.seed"
}

node_state() {
    timeout 5 sinfo --noheader --Node --format=%t 2>/dev/null | head -n 1 || true
}

wait_controller() {
    # Wait until slurmctld answers and the node is usable.
    local state=""
    for _ in $(seq 1 240); do
        state=$(node_state)
        case "$state" in
            idle | mix | alloc | comp) return 0 ;;
            down* | drain* | drng*)
                timeout 5 scontrol update NodeName=localhost State=RESUME \
                    >/dev/null 2>&1 || true
                ;;
        esac
        sleep 0.25
    done
    log "node not usable (state ${state:-unknown}); see $B/log"
    return 1
}

start_controller() {
    pid_alive "$B/run/slurmctld.pid" || slurmctld -f "$SLURM_CONF"
}

probe() {
    # End-to-end check: one trivial job must complete.
    local jid
    jid=$(sbatch --parsable --job-name=ocps-probe --output=/dev/null \
        --export=NONE --wrap=true)
    jid=${jid%%;*}
    for _ in $(seq 1 300); do
        if scontrol -o show job "$jid" 2>/dev/null | grep -q 'JobState=COMPLETED'; then
            return 0
        fi
        sleep 0.2
    done
    log "probe job $jid did not complete; see $B/log"
    return 1
}

do_start() {
    do_install
    mkdir -p "$B"/{etc,run,log,spool/slurmctld,spool/slurmd,munge/sock}
    write_config
    start_munge
    local fresh=0
    pid_alive "$B/run/slurmctld.pid" || fresh=1
    pid_alive "$B/run/slurmd.pid" || fresh=1
    start_controller
    pid_alive "$B/run/slurmd.pid" || slurmd -f "$SLURM_CONF" -N localhost
    wait_controller
    if [ $fresh = 1 ]; then
        probe
    fi
    log "running; SLURM_CONF=$SLURM_CONF"
}

stop_pid_file() {
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if pid_alive "$file" && kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

do_stop() {
    # Cancel leftover jobs first so no job process outlives slurmd.
    if pid_alive "$B/run/slurmctld.pid"; then
        timeout 20 scancel --partition=debug 2>/dev/null || true
        for _ in $(seq 1 50); do
            [ -z "$(timeout 5 squeue --noheader \
                --states=pending,running,completing --format=%i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    stop_pid_file "$B/run/slurmd.pid"
    stop_pid_file "$B/run/slurmctld.pid"
    stop_pid_file "$B/munge/munged.pid"
    log "stopped"
}

do_status() {
    local rc=0 name file
    for name in munged slurmctld slurmd; do
        case $name in
            munged) file=$B/munge/munged.pid ;;
            *) file=$B/run/$name.pid ;;
        esac
        if pid_alive "$file"; then
            echo "$name: running (pid $(cat "$file"))"
        else
            echo "$name: not running"
            rc=1
        fi
    done
    if pid_alive "$B/run/slurmctld.pid"; then
        echo "node: $(node_state)"
    fi
    return $rc
}

case "${1:-}" in
    install) do_install ;;
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    stop-controller) stop_pid_file "$B/run/slurmctld.pid" ;;
    start-controller)
        start_controller
        wait_controller
        ;;
    *)
        echo "usage: $0 {install|start|stop|status|env|stop-controller|start-controller}" >&2
        exit 2
        ;;
esac
