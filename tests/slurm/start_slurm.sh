#!/usr/bin/env bash
# A throw-away one-node Slurm cluster on localhost, for testing the workflow's Slurm profile.
#
# Usage: tests/slurm/start_slurm.sh [start|stop|status|env]      (default: start)
#   start   install the Debian packages if missing (needs root and apt-get), then start munged,
#           (MariaDB + slurmdbd), slurmctld and slurmd, all private to $SLURM_TEST_DIR; restarts
#           what this script started before. Prints `export SLURM_CONF=...` as its last line.
#   stop    stop exactly the daemons this script started (by their pid files, checked against
#           /proc/PID/cmdline so a recycled pid is never killed).
#   status  which of its daemons run, then sinfo and squeue.
#   env     print the `export SLURM_CONF=...` line (for `eval "$(start_slurm.sh env)"`).
#
# slurm.conf, the munge key and socket, the database, logs and pid files all live under
# $SLURM_TEST_DIR; clients find the cluster through $SLURM_CONF, and through a symbolic link
# /etc/slurm/slurm.conf -> $SLURM_CONF, made only where no slurm.conf exists (and removed by
# `stop`): Snakemake's Slurm job step strips SLURM_* variables before its inner `srun`, which
# then reads the default path. An existing /etc/slurm/slurm.conf is never replaced.
# The node's CPUs and memory are read from this machine (`nproc --all`: all CPUs, whatever
# OMP_NUM_THREADS or this shell's affinity say; 90% of slurmd -C's RealMemory). It refuses to
# start (exit 3) where /etc/slurm belongs to another user or already holds a slurm.conf (another
# cluster's, or another test's link), so it never touches a setup it did not make.
#
# Environment:
#   SLURM_TEST_DIR     state, logs and pid files (default: ${TMPDIR:-/tmp}/lmbrain-slurm)
#   SLURM_PARTITION    name of the single partition (default: debug)
#   SLURM_ACCOUNTING   slurmdbd (default: MariaDB + slurmdbd, `sacct` works) | none
#   SLURM_TEST_PORT    first of four TCP ports on 127.0.0.1: slurmctld, slurmd, slurmdbd, MariaDB
#                      (default: 16817)
set -euo pipefail

ACTION="${1:-start}"
BASE="${SLURM_TEST_DIR:-${TMPDIR:-/tmp}/lmbrain-slurm}"
PART="${SLURM_PARTITION:-debug}"
ACCOUNTING="${SLURM_ACCOUNTING:-slurmdbd}"
PORT="${SLURM_TEST_PORT:-16817}"
CTLD_PORT=$PORT
SLURMD_PORT=$((PORT + 1))
DBD_PORT=$((PORT + 2))
DB_PORT=$((PORT + 3))
ETC="$BASE/etc"
RUN="$BASE/run"
LOG="$BASE/log"
export SLURM_CONF="$ETC/slurm.conf"

log() { echo "start_slurm: $*" >&2; }
die() { log "error: $*"; exit 1; }

# -- stopping: only what we started -----------------------------------------------------------
# name of each daemon's executable, as /proc/PID/cmdline shows it
declare -A EXE=([slurmd]=slurmd [slurmctld]=slurmctld [slurmdbd]=slurmdbd [mariadb]=mariadbd
                [munged]=munged)
ORDER=(slurmd slurmctld slurmdbd mariadb munged)

pid_of() {  # prints the live pid recorded for daemon $1, if it still is that daemon
  local f="$RUN/$1.pid" pid
  [ -s "$f" ] || return 1
  pid="$(tr -dc '0-9' <"$f")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "${EXE[$1]}" || return 1
  echo "$pid"
}

stop_group() {  # SIGTERM the named daemons together, wait up to 10 s, then SIGKILL
  local d pid pids=()
  for d in "$@"; do
    if pid="$(pid_of "$d")"; then kill "$pid" 2>/dev/null && pids+=("$pid"); fi
  done
  for _ in $(seq 100); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid ignored SIGTERM for 10 s; sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  for d in "$@"; do rm -f "$RUN/$d.pid"; done
}

SYSTEM_CONF="${SLURM_SYSTEM_CONF:-/etc/slurm/slurm.conf}"  # override: tests only

# Why /etc/slurm is not ours to use, or nothing.
foreign_system_conf() {
  local dir
  dir="$(dirname "$SYSTEM_CONF")"
  if [ -e "$dir" ] && [ "$(stat -c %u "$dir")" != "$(id -u)" ]; then
    echo "$dir belongs to $(stat -c %U "$dir")"
  elif [ -e "$SYSTEM_CONF" ] || [ -L "$SYSTEM_CONF" ]; then
    if [ "$(readlink "$SYSTEM_CONF")" != "$SLURM_CONF" ]; then
      echo "$SYSTEM_CONF exists (another Slurm setup or test cluster)"
    fi
  fi
}

do_stop() {
  if [ -d "$RUN" ]; then
    stop_group slurmd slurmctld
    stop_group slurmdbd
    stop_group mariadb munged
  fi
  if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$SLURM_CONF" ]; then
    rm -f "$SYSTEM_CONF"
  fi
}

do_status() {
  local d pid
  for d in "${ORDER[@]}"; do
    if pid="$(pid_of "$d")"; then echo "$d: running (pid $pid)"; else echo "$d: stopped"; fi
  done
  [ -f "$SLURM_CONF" ] || { echo "no cluster configured under $BASE"; return 0; }
  echo "SLURM_CONF=$SLURM_CONF"
  sinfo || true
  squeue || true
}

case "$ACTION" in
  stop) do_stop; exit 0 ;;
  status) do_status; exit 0 ;;
  env) echo "export SLURM_CONF=$SLURM_CONF"; exit 0 ;;
  start) ;;
  *) die "unknown action '$ACTION' (start|stop|status|env)" ;;
esac

foreign="$(foreign_system_conf)"
if [ -n "$foreign" ]; then
  log "not starting: $foreign"
  exit 3
fi

# -- 1. packages ------------------------------------------------------------------------------
need=(slurmctld slurmd slurm-client munge)
have() { command -v "$1" >/dev/null 2>&1; }
missing=0
for c in slurmctld slurmd sbatch sacct munged; do have "$c" || missing=1; done
if [ "$ACCOUNTING" = slurmdbd ]; then
  need+=(slurmdbd mariadb-server)
  for c in slurmdbd mariadbd mariadb-install-db; do have "$c" || missing=1; done
fi
if [ "$missing" = 1 ]; then
  [ "$(id -u)" = 0 ] || die "Slurm is not installed and installing it needs root"
  have apt-get || die "Slurm is not installed and apt-get is not available"
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ "$(id -u)" = 0 ] || die "the daemons run as root (SlurmUser=root): run this script as root"

# -- 2. clean state ---------------------------------------------------------------------------
do_stop
if [ -e "$SYSTEM_CONF" ] || [ -L "$SYSTEM_CONF" ]; then
  die "$SYSTEM_CONF exists and is not this script's: this machine has a Slurm setup already"
fi
for p in $CTLD_PORT $SLURMD_PORT $DBD_PORT $DB_PORT; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port $p on 127.0.0.1 is taken by another program: set SLURM_TEST_PORT"
  fi
done
MARKER="$BASE/.lmbrain-test-slurm"
if [ -d "$BASE" ] && [ -n "$(ls -A "$BASE")" ] && [ ! -f "$MARKER" ]; then
  die "$BASE is not empty and was not made by this script: set SLURM_TEST_DIR"
fi
rm -rf "$BASE"
mkdir -p "$ETC" "$RUN" "$LOG" "$BASE/state" "$BASE/spool"
chmod 755 "$BASE" "$ETC" "$RUN" "$LOG"
touch "$MARKER"

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local secs="$1" what="$2"
  shift 2
  for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not come up within ${secs} s; logs in $LOG"
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# -- 3. munge: a private key and socket -------------------------------------------------------
MUNGE="$BASE/munge"
install -d -o munge -g munge -m 700 "$MUNGE"
dd if=/dev/urandom of="$MUNGE/munge.key" bs=1 count=1024 status=none
chown munge:munge "$MUNGE/munge.key"
chmod 400 "$MUNGE/munge.key"
chmod 711 "$MUNGE"  # slurm (root) reaches the socket; munged wants no group/other write
runuser -u munge -- /usr/sbin/munged --socket="$MUNGE/munge.socket" \
  --key-file="$MUNGE/munge.key" --pid-file="$MUNGE/munged.pid" \
  --log-file="$MUNGE/munged.log" --seed-file="$MUNGE/munged.seed"
ln -sf "$MUNGE/munged.pid" "$RUN/munged.pid"
wait_for 10 munged test -S "$MUNGE/munge.socket"
AUTH="AuthType=auth/munge
AuthInfo=socket=$MUNGE/munge.socket"

# -- 4. accounting: private MariaDB on 127.0.0.1 + slurmdbd -----------------------------------
if [ "$ACCOUNTING" = slurmdbd ]; then
  DB="$BASE/mysql"
  install -d -o mysql -g mysql -m 750 "$DB"
  mariadb-install-db --no-defaults --user=mysql --datadir="$DB" \
    --auth-root-authentication-method=socket --skip-test-db --innodb-log-file-size=8M \
    >"$LOG/mariadb-install.log" 2>&1 || die "mariadb-install-db failed: see $LOG/mariadb-install.log"
  touch "$LOG/mariadb.log" && chown mysql:mysql "$LOG/mariadb.log"
  # mariadbd does not daemonise: run it in its own session; it writes its own pid file
  setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DB" \
    --socket="$DB/mysqld.sock" --pid-file="$DB/mariadbd.pid" \
    --bind-address=127.0.0.1 --port="$DB_PORT" \
    --innodb-buffer-pool-size=32M --innodb-log-file-size=8M --log-error="$LOG/mariadb.log" \
    </dev/null >/dev/null 2>&1 &
  wait_for 30 MariaDB mariadb --no-defaults --socket="$DB/mysqld.sock" -uroot -e 'select 1'
  ln -sf "$DB/mariadbd.pid" "$RUN/mariadb.pid"
  DB_PASS="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
  mariadb --no-defaults --socket="$DB/mysqld.sock" -uroot -e "
    CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  cat >"$ETC/slurmdbd.conf" <<EOF
$AUTH
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$ETC/slurmdbd.conf"
  /usr/sbin/slurmdbd  # finds slurmdbd.conf beside $SLURM_CONF
  wait_for 30 slurmdbd port_open "$DBD_PORT"
  ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE/munge.socket
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  ACCT_LINES="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

# -- 5. slurm.conf: one node with this machine's CPUs and memory ------------------------------
NCPU="$(nproc --all)"  # plain nproc honours OMP_NUM_THREADS and the affinity mask
MEM_MB="$(/usr/sbin/slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
[ -n "$MEM_MB" ] || MEM_MB="$(awk '/MemTotal/ {printf "%d", $2 / 1024}' /proc/meminfo)"
MEM_MB=$((MEM_MB * 9 / 10))
cat >"$SLURM_CONF" <<EOF
ClusterName=lmbrain-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
$AUTH
CredType=cred/munge
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
$ACCT_LINES
JobCompType=jobcomp/none
AccountingStoreFlags=job_comment
MpiDefault=none
MinJobAge=300
InactiveLimit=0
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PART Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

mkdir -p "$(dirname "$SYSTEM_CONF")"
ln -s "$SLURM_CONF" "$SYSTEM_CONF"

# -- 6. slurmctld and slurmd (both daemonise and write the pid files above) -------------------
/usr/sbin/slurmctld
wait_for 30 slurmctld port_open "$CTLD_PORT"
/usr/sbin/slurmd -N localhost
up() { sinfo -h -N -o '%T' | grep -qE '^(idle|mixed|allocated)'; }
if ! (for _ in $(seq 300); do up && exit 0; sleep 0.1; done; exit 1); then
  tail -n 20 "$LOG/slurmctld.log" "$LOG/slurmd.log" >&2 || true
  die "the node did not become idle within 30 s"
fi
sinfo >&2
echo "export SLURM_CONF=$SLURM_CONF"
