#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the tests of `nnunetv2_druwas grid`.
#
#   bash .ci/slurm.sh start   install Debian's slurm-wlm + munge if missing, write a slurm.conf for
#                             this host, start munged, slurmctld and slurmd, wait for the node to be idle
#   bash .ci/slurm.sh stop    stop the daemons this script started (by their PID files)
#
# Idempotent: `start` does nothing when `sinfo` already answers. Needs root (apt-get, daemons).
# State, spool, logs and PID files live in $DRUWAS_SLURM_DIR (default /tmp/druwas-slurm); the
# configuration is written there and linked from /etc/slurm/slurm.conf so that sbatch/squeue find it.
# An existing /etc/slurm/slurm.conf that is not ours is never replaced.
set -euo pipefail

DIR="${DRUWAS_SLURM_DIR:-/tmp/druwas-slurm}"
CONF="$DIR/slurm.conf"
SYSTEM_CONF=/etc/slurm/slurm.conf
HOST="$(hostname -s)"

log() { echo "[slurm.sh] $*"; }

cluster_answers() { timeout 10 sinfo -h >/dev/null 2>&1; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    log "installing slurmctld slurmd slurm-client munge (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
    mkdir -p "$DIR"/{state,spool,log,run}
    chown slurm:slurm "$DIR"/state "$DIR"/log
    local cpus mem_mb
    cpus="$(nproc)"
    # leave a tenth of the memory to the system
    mem_mb="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
    cat >"$CONF" <<EOF
# written by .ci/slurm.sh: one node ($HOST), CPU only, no accounting
ClusterName=druwas-ci
SlurmctldHost=$HOST
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$HOST CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    if [[ -e "$SYSTEM_CONF" && ! -L "$SYSTEM_CONF" ]]; then
        echo "[slurm.sh] $SYSTEM_CONF exists and was not written by this script; not replacing it." >&2
        echo "[slurm.sh] Remove it or start this machine's own SLURM instead." >&2
        exit 1
    fi
    ln -sfn "$CONF" "$SYSTEM_CONF"
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_daemons() {
    if ! pid_alive /run/munge/munged.pid; then
        install -d -o munge -g munge -m 755 /run/munge
        runuser -u munge -- /usr/sbin/munged
        touch "$DIR/run/munged.ours"
    fi
    pid_alive "$DIR/run/slurmctld.pid" || slurmctld
    pid_alive "$DIR/run/slurmd.pid" || slurmd
}

wait_idle() {
    local state=""
    for _ in $(seq 1 60); do
        state="$(timeout 10 sinfo -h -N -n "$HOST" -o %T 2>/dev/null || true)"
        case "$state" in
            idle|mixed|allocated|completing) log "node $HOST is $state"; return 0 ;;
            down*|drain*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 1
    done
    echo "[slurm.sh] the node did not become idle (last state: '${state:-no answer}'); see $DIR/log/" >&2
    exit 1
}

stop_daemons() {
    local pidfile
    for pidfile in "$DIR/run/slurmd.pid" "$DIR/run/slurmctld.pid"; do
        if pid_alive "$pidfile"; then
            kill "$(cat "$pidfile")"
            log "stopped $(basename "$pidfile" .pid)"
        fi
    done
    if [[ -f "$DIR/run/munged.ours" ]] && pid_alive /run/munge/munged.pid; then
        kill "$(cat /run/munge/munged.pid)"
        rm -f "$DIR/run/munged.ours"
        log "stopped munged"
    fi
}

case "${1:-start}" in
    start)
        if cluster_answers; then
            log "SLURM already answers: $(sinfo -h -N -o '%N %T' | head -1)"
            exit 0
        fi
        install_packages
        write_conf
        start_daemons
        wait_idle
        ;;
    stop)
        stop_daemons
        ;;
    *)
        echo "usage: bash .ci/slurm.sh [start|stop]" >&2
        exit 2
        ;;
esac
