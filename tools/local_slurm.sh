#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the tests and for trying `resnet-jax sweep --launcher slurm`.
#   bash tools/local_slurm.sh start    install (Debian: slurm-wlm, munge) if needed, configure, start; idempotent
#   bash tools/local_slurm.sh stop
# munged runs as user munge; slurmctld and slurmd as root (so run this as root). The node is this host with
# its CPU count; jobs are tracked by process tree (proctrack/linuxproc), with no cgroups (task/none).
set -euo pipefail
CONF=/etc/slurm/slurm.conf

if [ "${1:-start}" = stop ]; then pkill -x slurmd; pkill -x slurmctld; pkill -x munged; exit 0; fi
if [ "$(id -u)" -ne 0 ]; then echo "tools/local_slurm.sh: run as root (slurmctld and slurmd run as root)" >&2; exit 1; fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
fi

up() { sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }
if up; then exit 0; fi

host=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > "$CONF" <<CONFIG
# Written by resnet-jax tools/local_slurm.sh: one node, this host.
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=300
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONFIG

# munge: the key (made once), /run/munge owned by munge, the daemon as munge.
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown munge:munge /etc/munge /etc/munge/munge.key; chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge; chmod 755 /run/munge
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged

pkill -x slurmd 2>/dev/null || true; pkill -x slurmctld 2>/dev/null || true; sleep 1
slurmctld
slurmd
for _ in $(seq 60); do
  if up; then
    echo "local Slurm up: node $host, $cpus CPUs, partition local"; exit 0
  fi
  scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "tools/local_slurm.sh: Slurm did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
sinfo >&2 || true
exit 1
