#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests/test_slurm_live.py: munged, slurmctld and slurmd as root, talking
# over localhost only, every file under one directory (default /tmp/slurm-local, or $SLURM_LOCAL_DIR).
#
#   tests/slurm/cluster.sh install   # apt-get install slurm-wlm munge (Debian's Slurm 22.05; needs root and a mirror)
#   tests/slurm/cluster.sh start     # writes DIR/slurm.conf and starts the daemons; then: export SLURM_CONF=DIR/slurm.conf
#   tests/slurm/cluster.sh stop      # stops the daemons this script started (by their pid files)
#
# The node has this machine's cores (nproc) and memory. Jobs may be requeued (JobRequeue=1: what submitit's
# `scontrol requeue` and a preemption need), `sbatch --signal` works as on any cluster, and KillWait (the seconds between
# SIGTERM and SIGKILL when a job is ended, cancelled or requeued) is 30 s, Slurm's default. A requeued job may start
# again 10 s after its end (cred_expire; Slurm's default, 120 s, would add two minutes to each requeue in the test), and
# the scheduler looks at pending jobs every 2 s (sched_interval, bf_interval; 60 s and 30 s by default).
# No accounting (slurmdbd): `sacct` fails here, so submitit knows a job's end only from its result file.
set -euo pipefail
DIR=${SLURM_LOCAL_DIR:-/tmp/slurm-local}
CONF=$DIR/slurm.conf

stop_daemon() {  # by its pid file, then wait for it to go
  local pidfile=$DIR/$1.pid pid
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case ${1:-} in
install)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  ;;
start)
  for tool in munged slurmctld slurmd sbatch; do
    command -v "$tool" >/dev/null || { echo "cluster.sh: $tool is not installed (cluster.sh install)" >&2; exit 1; }
  done
  [[ $(id -u) == 0 ]] || { echo "cluster.sh: the daemons run as root here; run it as root" >&2; exit 1; }
  "$0" stop  # a cluster an earlier run left
  rm -rf "$DIR/state" "$DIR/spool"  # no jobs of an earlier cluster
  mkdir -p "$DIR"/{state,spool,munge}
  chmod 700 "$DIR/munge"
  [[ -f $DIR/munge/munge.key ]] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$DIR/munge/munge.key"; }
  munged --force --key-file "$DIR/munge/munge.key" --socket "$DIR/munge/munge.socket" \
    --pid-file "$DIR/munged.pid" --log-file "$DIR/munged.log" --seed-file "$DIR/munge/munge.seed"
  host=$(hostname -s)
  memory_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  cat >"$CONF" <<CONF
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=300
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$CONF
  slurmctld -f "$CONF"
  slurmd -f "$CONF"
  for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "cluster up: export SLURM_CONF=$CONF"
      exit 0
    fi
    sleep 1
  done
  echo "cluster.sh: the node did not come up; logs in $DIR" >&2
  sinfo >&2 || true
  exit 1
  ;;
stop)
  stop_daemon slurmd
  stop_daemon slurmctld
  stop_daemon munged
  ;;
*)
  echo "usage: $0 install|start|stop" >&2
  exit 2
  ;;
esac
