#!/usr/bin/env bash
# A real one-node SLURM cluster on localhost for the tests (Debian 12, root, no systemd).
#
#   bash tests/slurm/local_cluster.sh install   # Debian packages: munge, slurmctld, slurmd, slurm-client,
#                                               # slurmdbd, mariadb-server (skipped when already installed)
#   bash tests/slurm/local_cluster.sh start     # configure and start the daemons that are not running yet; jobs
#                                               # left by a cluster that was killed mid-run are ended
#   bash tests/slurm/local_cluster.sh stop      # stop exactly the daemons that `start` started
#   bash tests/slurm/local_cluster.sh status    # daemons and node state; exit 0 when the node is usable
#
# The node offers every CPU of this machine, its memory less 1 GiB, and one fake gres/gpu device (a character
# device with /dev/null's numbers: slurmd 22.05 drops a GPU without a device file), in two partitions: main
# (default) and gpu. Accounting goes through
# slurmdbd + MariaDB so `sacct` answers as on a real site (the executor plugin polls job states with sacct).
# Daemons are started by hand (no systemd here) and each one's PID is recorded in $CACFLOW_SLURM_STATE/started
# (default /run/cacflow-slurm); `stop` with the same CACFLOW_SLURM_STATE reads that list, so daemons that were
# already running before `start` (an earlier test session's, a site's own munged) are left alone.
# Knobs: CACFLOW_SLURM_STATE, CACFLOW_FAKE_GPUS (default 1), CACFLOW_SLURM_DB_PASSWORD.
set -euo pipefail

STATE=${CACFLOW_SLURM_STATE:-/run/cacflow-slurm}
NODE=$(hostname -s)
GPUS=${CACFLOW_FAKE_GPUS:-1}
DB_PASSWORD=${CACFLOW_SLURM_DB_PASSWORD:-cacflow-ci}
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)

say() { printf '[local_cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# running PID: alive and not a zombie waiting to be reaped
running() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ -n $s && $s != Z* ]]; }

# retry CMD... for up to $1 seconds
until_ok() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  while ! "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { say "gave up waiting for $what"; return 1; }
    sleep 0.25
  done
}

pid_of() { [[ -s $1 ]] && running "$(cat "$1")" && cat "$1"; }

remember() { # remember NAME PIDFILE: record a daemon this script started (its pid file read once)
  local pid
  pid=$(cat "$2")
  echo "$1 $pid $2" >> "$STATE/started"
  say "$1 started (pid $pid)"
}

install_packages() {
  if ! dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # apt does not start services here (no systemd; policy-rc.d forbids it): `start` does.
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
  fi
  say "installed: $(dpkg-query -W -f='${Package} ${Version}; ' "${PACKAGES[@]}")"
}

write_slurm_conf() {
  local memory gres_line="" gres_types=""
  memory=$(($(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo) - 1024))
  if ((GPUS > 0)); then
    gres_types="GresTypes=gpu"
    gres_line="Gres=gpu:$GPUS"
    : > /etc/slurm/gres.conf
    for ((i = 0; i < GPUS; i++)); do
      [[ -c /dev/cacflow-gpu$i ]] || mknod -m 666 "/dev/cacflow-gpu$i" c 1 3
      echo "NodeName=$NODE Name=gpu File=/dev/cacflow-gpu$i" >> /etc/slurm/gres.conf
    done
  else
    rm -f /etc/slurm/gres.conf
  fi
  cat > /etc/slurm/slurm.conf <<CONF
# written by cacflow tests/slurm/local_cluster.sh
ClusterName=cacflow
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
ReturnToService=2
MinJobAge=300
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
$gres_types
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$memory $gres_line State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
# a second partition on the same node, so tests can check that GPU rules go where the profile sends them
PartitionName=gpu Nodes=ALL Default=NO MaxTime=INFINITE State=UP
CONF
  # slurmdbd refuses a configuration (it holds the database password) that others can read
  install -o slurm -g slurm -m 600 /dev/stdin /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
CONF
}

start_munge() {
  pid_of /run/munge/munged.pid >/dev/null && { say "munged already running"; return; }
  [[ -s /etc/munge/munge.key ]] || mungekey -c -k /etc/munge/munge.key
  chown munge:munge /etc/munge /etc/munge/munge.key
  chmod 0700 /etc/munge
  chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  until_ok 10 munged bash -c 'munge -n | unmunge'
  remember munged /run/munge/munged.pid
}

start_mariadb() {
  pid_of /run/mysqld/mysqld.pid >/dev/null && { say "mariadbd already running"; return; }
  install -d -o mysql -g mysql -m 0755 /run/mysqld
  rm -f /run/mysqld/mysqld.pid  # stale: its daemon is gone (checked above)
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  # socket only, no TCP port
  nohup /usr/sbin/mariadbd --user=mysql --skip-networking >> /var/log/slurm/mariadb.log 2>&1 &
  until_ok 30 mariadbd mariadb -e 'SELECT 1'
  until_ok 10 "mariadbd pid file" pid_of /run/mysqld/mysqld.pid
  remember mariadbd /run/mysqld/mysqld.pid
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
              ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

start_daemon() { # start_daemon NAME PIDFILE READY-CHECK...
  local name=$1 pidfile=$2
  shift 2
  pid_of "$pidfile" >/dev/null && { say "$name already running"; return; }
  rm -f "$pidfile"  # stale: its daemon is gone (checked above); a stale pid must not be recorded as this one
  "/usr/sbin/$name"  # each SLURM daemon forks into the background and writes its pid file
  until_ok 30 "$name" "$@"
  until_ok 10 "$name pid file" pid_of "$pidfile"
  remember "$name" "$pidfile"
}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null; }
# the node is idle; a down or drained one is asked to resume (one try per call)
idle_or_resume() {
  case $(node_state) in
    idle) return 0 ;;
    down* | drain* | fail*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  return 1
}
# slurmd has registered with slurmctld: a state that is known and not marked '*' (not responding)
node_responding() { local s; s=$(node_state) && [[ -n $s && $s != unknown* && $s != *'*' ]]; }

diagnose() { # what a failed start leaves to read: the node, its jobs and the daemons' last log lines
  {
    scontrol show node "$NODE" || true
    squeue || true
    local log
    for log in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log; do
      echo "--- last lines of $log"
      tail -n 20 "$log" || true
    done
  } >&2
}

start() {
  install -d -m 0755 "$STATE"
  touch "$STATE/started"
  getent hosts "$NODE" >/dev/null || echo "127.0.0.1 $NODE" >> /etc/hosts
  install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld /var/log/slurm
  install -d -m 0755 /var/spool/slurmd
  write_slurm_conf
  start_munge
  start_mariadb
  start_daemon slurmdbd /run/slurmdbd.pid bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'
  start_daemon slurmctld /run/slurmctld.pid scontrol ping
  local fresh_slurmd=0
  pid_of /run/slurmd.pid >/dev/null || fresh_slurmd=1
  start_daemon slurmd /run/slurmd.pid true
  # slurmctld recovers its jobs from StateSaveLocation. When the daemons of an earlier cluster were killed
  # mid-job (a test session ended by a kill), its jobs come back as running or completing and hold the node,
  # although no slurmd runs them any more. A slurmd started just now runs nothing, so every job still listed
  # is such a leftover: cancel it, and take the node down and back up, which ends a job stuck in COMPLETING
  # (scancel alone leaves one there for minutes). Only after slurmd has registered: before, the node ignores it.
  until_ok 60 "node registered" node_responding || { diagnose; return 1; }
  if ((fresh_slurmd)) && [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
    say "ending jobs left by an earlier cluster: $(squeue -h -o '%i:%T' | tr '\n' ' ')"
    scancel --full $(squeue -h -o %i) || true
    scontrol update nodename="$NODE" state=down reason="jobs left by an earlier cluster" || true
    until_ok 60 "leftover jobs to end" bash -c '[[ -z $(squeue -h -o %i) ]]' || { diagnose; return 1; }
  fi
  # The node left DOWN above, or drained by an earlier configuration (StateSaveLocation keeps node states across
  # restarts), is resumed; slurmd's next message may also return it to service by itself (ReturnToService=2).
  until_ok 90 "node idle" idle_or_resume || { diagnose; return 1; }
  # smoke test: a job, a GPU job, and accounting that records them
  srun -n1 -t 1 true
  ((GPUS == 0)) || srun -n1 -t 1 --gres=gpu:1 bash -c '[[ -n $CUDA_VISIBLE_DEVICES ]]'
  until_ok 30 "sacct records" bash -c "sacct -X -n -P -o State -S now-10minutes | grep -q COMPLETED"
  sinfo -N -o '%N %T %c %m %G' >&2
  say "cluster up"
}

stop() {
  [[ -s $STATE/started ]] || { say "nothing started by this script"; return 0; }
  local name pid pidfile
  # reverse start order: slurmd, slurmctld, slurmdbd, mariadbd, munged
  tac "$STATE/started" | while read -r name pid pidfile; do
    running "$pid" || continue
    say "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do running "$pid" || break; sleep 0.2; done
    running "$pid" && { say "$name ignored SIGTERM, SIGKILL"; kill -9 "$pid" 2>/dev/null || true; }
    # a daemon may remove its own pid file on exit; `if` keeps a missing one from failing the loop
    if [[ $(cat "$pidfile" 2>/dev/null) == "$pid" ]]; then rm -f "$pidfile"; fi
  done
  rm -f "$STATE/started"
  say "stopped"
}

status() {
  local f rc=0
  for f in /run/munge/munged.pid /run/mysqld/mysqld.pid /run/slurmdbd.pid /run/slurmctld.pid /run/slurmd.pid; do
    if pid_of "$f" >/dev/null; then echo "up   $f"; else echo "down $f"; rc=1; fi
  done
  local s
  s=$(node_state) || true
  echo "node $NODE: ${s:-unknown}"
  [[ $s == idle || $s == mixed || $s == allocated ]] || rc=1
  return $rc
}

case ${1:-} in
  install) install_packages ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
