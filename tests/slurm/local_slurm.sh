#!/usr/bin/env bash
# A single-node SLURM on this machine for the `slurm` tests: this host is the controller and the
# only compute node, one partition `local` with every core, authentication by munge.
#
#   tests/slurm/local_slurm.sh install       # Debian's slurmctld, slurmd, slurm-client, munge (root)
#   tests/slurm/local_slurm.sh start DIR     # write DIR/slurm.conf, start munged, slurmctld, slurmd
#   tests/slurm/local_slurm.sh stop DIR      # stop them
#
# After `start`, export SLURM_CONF=DIR/slurm.conf for sbatch/squeue/scancel/submitit. Tested with
# Slurm 22.05 (Debian 12). Needs root (the daemons run as root here; a real cluster has its own).
set -euo pipefail
cmd=${1:?usage: local_slurm.sh install|start DIR|stop DIR}

case "$cmd" in
install)
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
    fi
    ;;
start)
    dir=$(realpath -m "${2:?start DIR}")
    mkdir -p "$dir"/{state,spool,log,munge}
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048))
    cat >"$dir/slurm.conf" <<EOF
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
KillWait=30
MinJobAge=300
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
    export SLURM_CONF="$dir/slurm.conf"
    if ! pgrep -x munged >/dev/null; then
        if [ ! -s /etc/munge/munge.key ]; then
            mkdir -p /etc/munge
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
            chmod 400 /etc/munge/munge.key
        fi
        chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
        mkdir -p /run/munge && chown munge:munge /run/munge
        runuser -u munge -- munged
    fi
    slurmctld
    slurmd
    for _ in $(seq 1 60); do
        state=$(sinfo -h -N -o %t 2>/dev/null || true)
        if [ "$state" = "idle" ] || [ "$state" = "mix" ]; then
            echo "local SLURM up: node $host ($cpus CPUs), partition local, SLURM_CONF=$SLURM_CONF"
            exit 0
        fi
        sleep 1
    done
    echo "local SLURM did not come up; logs in $dir/log" >&2
    tail -20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    exit 1
    ;;
stop)
    dir=$(realpath -m "${2:?stop DIR}")
    SLURM_CONF="$dir/slurm.conf" scancel --user="$(id -un)" 2>/dev/null || true
    for pid in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
        if [ -s "$pid" ]; then kill "$(cat "$pid")" 2>/dev/null || true; fi
    done
    sleep 1
    pkill -x slurmstepd 2>/dev/null || true # job steps left without their slurmd
    ;;
*)
    echo "usage: local_slurm.sh install|start DIR|stop DIR" >&2
    exit 2
    ;;
esac
