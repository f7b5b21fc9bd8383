#!/usr/bin/env bash
# dev/services.sh - local Apache Kafka (KRaft, single node) and PostgreSQL for
# provider-events development and tests. No docker: the real Kafka broker is
# resolved from Maven Central with mvn, PostgreSQL comes from Debian.
#
#   eval "$(dev/services.sh up)"     start both (idempotent), export the env
#   dev/services.sh down             stop both (data kept)
#   dev/services.sh help             all subcommands
#
# Everything stateful lives under $ROOT/.dev/ (jar cache, Maven repo, Kafka
# and PostgreSQL data, logs, pid files). See dev/README.md.
#
# Only the export lines go to stdout; all progress goes to stderr.
set -euo pipefail
# runuser and other system tools live in sbin: a PATH of only /usr/bin:/bin must work too.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
DEV="$ROOT/.dev"
LOG_DIR="$DEV/logs"
SETTINGS="$DEV/settings.env"
LOCK_FILE="$DEV/.lock"

# ---------------------------------------------------------------- Kafka ---
KAFKA_HOST=127.0.0.1
KAFKA_POM="$SCRIPT_DIR/kafka/pom.xml"
KAFKA_LOG4J="$SCRIPT_DIR/kafka/log4j2.properties"
KAFKA_TOOLS_LOG4J="$SCRIPT_DIR/kafka/log4j2-tools.properties"
KAFKA_HOME="$DEV/kafka"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_LIBS_STAMP="$KAFKA_HOME/libs.stamp"
KAFKA_DATA="$KAFKA_HOME/data"
KAFKA_CONF="$KAFKA_HOME/server.properties"
KAFKA_CLUSTER_ID_FILE="$KAFKA_HOME/cluster-id"
KAFKA_PID_FILE="$KAFKA_HOME/kafka.pid"
KAFKA_OUT="$LOG_DIR/kafka.out"            # JVM stdout/stderr
KAFKA_SERVER_LOG="$LOG_DIR/kafka-server.log"  # log4j2 (dev/kafka/log4j2.properties)
M2_REPO="$DEV/m2"                         # private Maven repo: no ~/.m2 needed
MVN_DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
KAFKA_READY_TIMEOUT=${KAFKA_READY_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
KAFKA_TOPICS=${KAFKA_TOPICS:-omninode.agent.provider.selected.v1 omninode.agent.provider.selected.v1.dlq}
KAFKA_TOPIC_PARTITIONS=${KAFKA_TOPIC_PARTITIONS:-6}

# ----------------------------------------------------------- PostgreSQL ---
PG_DB=provider_events
PG_ROLE=provider_events
PG_STATE="$DEV/pg"                  # root-owned: password, location record
PG_PASSWORD_FILE="$PG_STATE/password"
PG_BASE_FILE="$PG_STATE/base"       # records where the cluster lives (see pg_resolve_base)
PG_READY_TIMEOUT=${PG_READY_TIMEOUT:-60}

# ------------------------------------------------------------- helpers ---
log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }
now_us() { local t=${EPOCHREALTIME//[.,]/}; echo "${t#0}"; }
elapsed_since() { # $1 = start from now_us -> "12.3s"
  local d=$(( $(now_us) - $1 ))
  printf '%d.%ds' $(( d / 1000000 )) $(( (d % 1000000) / 100000 ))
}

# True while pid exists and is not a zombie. (A SIGKILLed JVM's cmdline goes
# empty before its sockets are closed, so waiting on the cmdline is not enough.)
proc_running() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "${st%% *}" != Z ]
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port_owner_hint() {
  if command -v ss >/dev/null 2>&1; then
    ss -ltnpH "sport = :$1" 2>/dev/null | head -n 3 >&2 || true
  fi
}

APT_UPDATED=
apt_install() {
  [ "$(id -u)" -eq 0 ] || die "missing $*; install it (apt-get install $*) or run as root"
  # apt's output goes to the install log; one line here, the log's tail on failure.
  local log_file="$LOG_DIR/install.log"
  mkdir -p "$LOG_DIR"
  log "installing with apt-get: $* (log: $log_file)"
  printf '\n=== %s: apt-get install %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$log_file"
  if [ -z "$APT_UPDATED" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null >>"$log_file" 2>&1 9>&- \
      || { tail -n 25 "$log_file" | sed 's/^/  | /' >&2; die "apt-get update failed"; }
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    </dev/null >>"$log_file" 2>&1 9>&- \
    || { tail -n 25 "$log_file" | sed 's/^/  | /' >&2; die "apt-get install $* failed"; }
}

ensure_java() { command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless; }
ensure_mvn()  { command -v mvn  >/dev/null 2>&1 || apt_install maven; }
ensure_kcat() { command -v kcat >/dev/null 2>&1 || apt_install kcat; }

# Serialise mutating subcommands (e.g. parallel test workers calling `up`).
# fd 9 holds the lock; every long-lived child is started with 9>&- so that
# the broker / postmaster never inherit (and keep holding) it.
take_lock() {
  mkdir -p "$DEV"
  exec 9>"$LOCK_FILE"
  flock -w 600 9 || die "timed out waiting for $LOCK_FILE"
}

# Ports: explicit env var > value saved by an earlier run > default.
# They are saved so that e.g. `KAFKA_PORT=39092 services.sh up` followed by a
# plain `services.sh kafka-start` (from a test) keeps using 39092.
load_settings() {
  local SAVED_KAFKA_PORT='' SAVED_KAFKA_CONTROLLER_PORT='' SAVED_PG_PORT=''
  # shellcheck disable=SC1090
  [ -f "$SETTINGS" ] && . "$SETTINGS"
  if [ -n "${KAFKA_PORT:-}" ]; then
    # A KAFKA_PORT given now also moves the controller port, unless given too.
    KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
  else
    KAFKA_PORT=${SAVED_KAFKA_PORT:-29092}
    KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-${SAVED_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}}
  fi
  PG_PORT=${PG_PORT:-${SAVED_PG_PORT:-55432}}
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$PG_PORT"; do
    if ! [[ "$p" =~ ^[0-9]+$ ]] || [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then die "bad port: $p"; fi
  done
  [ "$KAFKA_PORT" != "$KAFKA_CONTROLLER_PORT" ] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"
  KAFKA_BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"
}

save_settings() {
  mkdir -p "$DEV"
  local new
  new=$(printf 'SAVED_KAFKA_PORT=%s\nSAVED_KAFKA_CONTROLLER_PORT=%s\nSAVED_PG_PORT=%s\n' \
    "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$PG_PORT")
  if [ ! -f "$SETTINGS" ] || [ "$(cat "$SETTINGS")" != "$new" ]; then
    printf '%s\n' "$new" >"$SETTINGS.tmp" && mv "$SETTINGS.tmp" "$SETTINGS"
  fi
}

# ================================================================ Kafka ===
kafka_pid() { cat "$KAFKA_PID_FILE" 2>/dev/null || true; }

# Alive = the pid in the pid file is a live JVM running kafka.Kafka with OUR
# server.properties (guards against pid reuse; a zombie has an empty cmdline).
kafka_alive() {
  local pid
  pid=$(kafka_pid)
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $KAFKA_CONF"
}

# Does the config of the running broker (written at its launch) use the
# ports asked for now?
kafka_conf_matches() {
  grep -qx "listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT" \
    "$KAFKA_CONF" 2>/dev/null
}

kafka_resolve_jars() {
  local want
  want=$(sha256sum "$KAFKA_POM" | cut -c1-64)
  if [ -f "$KAFKA_LIBS_STAMP" ] && [ "$(cat "$KAFKA_LIBS_STAMP")" = "$want" ] && [ -d "$KAFKA_LIBS" ]; then
    return 0
  fi
  ensure_java
  ensure_mvn
  log "resolving Kafka jars from Maven Central (first run only; cached in ${KAFKA_LIBS#"$ROOT/"})"
  local t0 tmp="$KAFKA_HOME/libs.tmp"
  t0=$(now_us)
  mkdir -p "$KAFKA_HOME"
  rm -rf "$tmp"
  quietly mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" -Dmaven.repo.local="$M2_REPO" \
    "$MVN_DEP_PLUGIN:copy-dependencies" \
    -DoutputDirectory="$tmp" -DincludeScope=runtime \
    || die "mvn dependency resolution failed (see output above)"
  local j
  for j in 'kafka_2.13-*.jar' 'kafka-tools-*.jar' 'kafka-server-[0-9]*.jar' \
           'kafka-metadata-*.jar' 'kafka-raft-*.jar' 'kafka-storage-[0-9]*.jar' \
           'log4j-core-*.jar' 'log4j-slf4j-impl-*.jar' 'slf4j-api-1.7.*.jar'; do
    compgen -G "$tmp/$j" >/dev/null || die "resolved jars lack $j"
  done
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  printf '%s\n' "$want" >"$KAFKA_LIBS_STAMP"
  log "resolved $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $(elapsed_since "$t0")"
}

# Run a command quietly: its output goes to stderr only if it fails.
quietly() {
  local out rc=0
  out=$("$@" 2>&1 </dev/null 9>&-) || rc=$?
  [ "$rc" -eq 0 ] || printf '%s\n' "$out" >&2
  return "$rc"
}

# One-shot Kafka CLI class (StorageTool, TopicCommand): small, fast-starting JVM.
kafka_tool() {
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_TOOLS_LOG4J" \
    -cp "$KAFKA_LIBS/*" "$@"
}

kafka_write_config() {
  mkdir -p "$KAFKA_HOME" "$KAFKA_DATA" "$LOG_DIR"
  cat >"$KAFKA_CONF.tmp" <<EOF
# Generated by dev/services.sh on every start - edit the script, not this file.
# Single-node KRaft: combined broker + controller, static controller quorum.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a SIGKILL the restarted controller keeps the dead incarnation's
# registration until its session expires (default 9 s) and refuses the new
# one meanwhile; a shorter session makes kafka-kill + kafka-start quick.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
EOF
  mv "$KAFKA_CONF.tmp" "$KAFKA_CONF"
}

kafka_format_if_needed() {
  [ -f "$KAFKA_DATA/meta.properties" ] && return 0
  local cid
  if [ -s "$KAFKA_CLUSTER_ID_FILE" ]; then
    cid=$(cat "$KAFKA_CLUSTER_ID_FILE")
  else
    # Same shape as `kafka-storage random-uuid` (16 random bytes, base64url,
    # no padding) without paying for a JVM start. Must not start with '-'.
    cid=-
    while [[ "$cid" == -* ]]; do
      cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    printf '%s\n' "$cid" >"$KAFKA_CLUSTER_ID_FILE"
  fi
  log "formatting KRaft storage (cluster id $cid)"
  quietly kafka_tool kafka.tools.StorageTool format -t "$cid" -c "$KAFKA_CONF" --ignore-formatted \
    || die "kafka StorageTool format failed"
}

# Start the broker JVM in the background (does not wait for readiness).
kafka_launch() {
  if kafka_alive; then
    if kafka_conf_matches; then
      log "kafka already running (pid $(kafka_pid))"
      return 0
    fi
    log "kafka is running with other ports; restarting it on $KAFKA_PORT/$KAFKA_CONTROLLER_PORT"
    kafka_stop TERM
  fi
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_in_use "$p"; then
      port_owner_hint "$p"
      die "port $p is already in use by another process (not our broker); set KAFKA_PORT / KAFKA_CONTROLLER_PORT or stop it"
    fi
  done
  ensure_java
  kafka_resolve_jars
  kafka_write_config
  kafka_format_if_needed
  rm -f "$KAFKA_PID_FILE"
  stat -c %s "$KAFKA_SERVER_LOG" >"$KAFKA_HOME/launch.offset" 2>/dev/null || echo 0 >"$KAFKA_HOME/launch.offset"
  printf '\n===== %s starting kafka.Kafka %s\n' "$(date -Is)" "$KAFKA_CONF" >>"$KAFKA_OUT"
  # setsid: own session, no controlling terminal, survives the calling shell.
  # The inner bash writes its own pid and execs java, so the pid file holds
  # the JVM's pid whether or not setsid had to fork.
  # shellcheck disable=SC2086,SC2016
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' services-kafka "$KAFKA_PID_FILE" \
    java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Djava.awt.headless=true \
    -Dkafka.logs.dir="$LOG_DIR" -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF" \
    </dev/null >>"$KAFKA_OUT" 2>&1 9>&- &
  local _
  for _ in $(seq 1 100); do
    [ -s "$KAFKA_PID_FILE" ] && break
    sleep 0.05
  done
  log "kafka starting (pid $(kafka_pid)), bootstrap $KAFKA_BOOTSTRAP"
}

kafka_metadata() { kcat -L -b "$KAFKA_BOOTSTRAP" -m "${1:-2}" 2>/dev/null; }

# Ready = a real metadata request answers, lists our broker, and no existing
# partition is leaderless (matters right after a restart).
kafka_ready() {
  local md
  md=$(kafka_metadata "${1:-2}") || return 1
  grep -q "broker 1 at $KAFKA_BOOTSTRAP" <<<"$md" || return 1
  ! grep -q 'leader -1' <<<"$md"
}

# Tail of what the current broker run logged (not older runs), lines cut.
kafka_dump_logs() {
  local off=0 size
  off=$(cat "$KAFKA_HOME/launch.offset" 2>/dev/null || echo 0)
  size=$(stat -c %s "$KAFKA_SERVER_LOG" 2>/dev/null || echo 0)
  [ "$size" -ge "$off" ] || off=0   # rolled over since launch
  log "---- tail of ${KAFKA_SERVER_LOG#"$ROOT/"} (this run) ----"
  { tail -c +"$((off + 1))" "$KAFKA_SERVER_LOG" 2>/dev/null || true; } | tail -n 30 | cut -c1-400 >&2
  log "---- ${KAFKA_OUT#"$ROOT/"} (this run) ----"
  { awk '/^===== /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$KAFKA_OUT" 2>/dev/null || true; } \
    | tail -n 20 | cut -c1-400 >&2
}

kafka_wait_ready() {
  local t0 deadline
  t0=$(now_us)
  deadline=$(( SECONDS + KAFKA_READY_TIMEOUT ))
  until kafka_ready 2; do
    if ! kafka_alive; then
      kafka_dump_logs
      die "kafka broker exited during startup"
    fi
    if (( SECONDS >= deadline )); then
      kafka_dump_logs
      die "kafka not ready after ${KAFKA_READY_TIMEOUT}s (pid $(kafka_pid) left running for inspection; dev/services.sh kafka-stop)"
    fi
    sleep 0.3
  done
  log "kafka ready at $KAFKA_BOOTSTRAP (waited $(elapsed_since "$t0"))"
}

kafka_ensure_topics() {
  [ -n "$KAFKA_TOPICS" ] || return 0
  local md t missing=()
  md=$(kafka_metadata 5) || die "kafka metadata request failed"
  for t in $KAFKA_TOPICS; do
    grep -qF "topic \"$t\" with" <<<"$md" || missing+=("$t")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  for t in "${missing[@]}"; do
    log "creating topic $t ($KAFKA_TOPIC_PARTITIONS partitions)"
    quietly kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
      --create --if-not-exists --topic "$t" \
      --partitions "$KAFKA_TOPIC_PARTITIONS" --replication-factor 1 \
      || die "creating topic $t failed"
  done
  # Wait until the new topics are visible with leaders.
  local deadline=$(( SECONDS + 30 )) ok
  while :; do
    ok=1
    md=$(kafka_metadata 2) || ok=0
    for t in "${missing[@]}"; do
      grep -qF "topic \"$t\" with" <<<"$md" || ok=0
    done
    grep -q 'leader -1' <<<"$md" && ok=0
    [ "$ok" = 1 ] && break
    (( SECONDS < deadline )) || die "topics ${missing[*]} not visible after 30s"
    sleep 0.3
  done
}

kafka_start() { # launch + wait + topics
  ensure_kcat
  kafka_launch
  kafka_wait_ready
  kafka_ensure_topics
}

kafka_stop() { # $1 = TERM (clean shutdown) or KILL
  local sig=${1:-TERM} pid
  if ! kafka_alive; then
    rm -f "$KAFKA_PID_FILE"
    log "kafka not running"
    return 0
  fi
  pid=$(kafka_pid)
  local t0
  t0=$(now_us)
  kill "-$sig" "$pid" 2>/dev/null || true
  local deadline=$(( SECONDS + KAFKA_STOP_TIMEOUT ))
  while proc_running "$pid"; do
    if (( SECONDS >= deadline )) && [ "$sig" != KILL ]; then
      log "kafka did not stop within ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sig=KILL
      deadline=$(( SECONDS + 10 ))
    elif (( SECONDS >= deadline )); then
      die "kafka pid $pid survived SIGKILL"
    fi
    sleep 0.1
  done
  # The leader thread can be a zombie while other JVM threads still hold the
  # sockets: also wait for the ports to be released.
  # Ports are taken from the config the broker was launched with.
  local ports port
  ports=$(sed -n 's/^listeners=//p' "$KAFKA_CONF" 2>/dev/null | grep -o ':[0-9]*' | tr -d ':' || true)
  deadline=$(( SECONDS + 15 ))
  for port in $ports; do
    while port_in_use "$port"; do
      (( SECONDS < deadline )) || die "kafka port $port still in use 15s after pid $pid exited"
      sleep 0.1
    done
  done
  rm -f "$KAFKA_PID_FILE"
  log "kafka stopped (SIG$sig, pid $pid, $(elapsed_since "$t0"))"
}

kafka_status() {
  if kafka_alive; then
    if kafka_ready 2; then
      echo "kafka:    running (pid $(kafka_pid)), ready at $KAFKA_BOOTSTRAP"
      return 0
    fi
    echo "kafka:    running (pid $(kafka_pid)), NOT ready at $KAFKA_BOOTSTRAP"
    return 1
  fi
  echo "kafka:    stopped"
  return 1
}

# =========================================================== PostgreSQL ===
PG_BIN=${PG_BIN:-}
pg_find_bin() {
  [ -n "$PG_BIN" ] && [ -x "$PG_BIN/pg_ctl" ] && return 0
  local d ver
  # Prefer the major version an existing cluster was created with.
  if [ -n "${PGDATA_DIR:-}" ] && [ -f "$PGDATA_DIR/PG_VERSION" ]; then
    ver=$(cat "$PGDATA_DIR/PG_VERSION")
    if [ -x "/usr/lib/postgresql/$ver/bin/pg_ctl" ]; then
      PG_BIN="/usr/lib/postgresql/$ver/bin"
      return 0
    fi
  fi
  # shellcheck disable=SC2012
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
      PG_BIN=$d
      return 0
    fi
  done
  return 1
}

pg_ensure_installed() {
  pg_find_bin && return 0
  apt_install postgresql
  pg_find_bin || die "PostgreSQL server binaries not found after installing 'postgresql'"
}

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# Run a PostgreSQL program as the cluster owner: the server refuses to run as
# root, so as root we use the `postgres` system user; as any other user, that
# user owns the cluster. cd / so an unreadable cwd does not bother it.
as_pg() {
  if [ "$IS_ROOT" = 1 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

# Where the cluster lives.
# Default: $ROOT/.dev/pg/{data,run,postgres.log} (data and run owned by the
# postgres user, mode 700). That needs the postgres user to traverse every
# directory from / down to .dev (true for /work/main, whose parents are 755).
# If it cannot (e.g. the checkout sits under a 700 /root), or if the unix
# socket path would exceed the ~107-byte sun_path limit, we do NOT chmod the
# user's directories; instead the cluster goes to
# /tmp/provider-events-pg-<sha256(ROOT)[:12]>. The choice is recorded in
# .dev/pg/base so it stays stable across runs. Password stays in .dev/pg.
pg_resolve_base() {
  mkdir -p "$PG_STATE"
  chmod 755 "$PG_STATE"
  if [ -s "$PG_BASE_FILE" ]; then
    PG_BASE=$(cat "$PG_BASE_FILE")
  else
    PG_BASE="$PG_STATE"
    local sock="$PG_BASE/run/.s.PGSQL.$PG_PORT"
    local ok=1
    [ "${#sock}" -le 100 ] || ok=0
    if [ "$ok" = 1 ] && [ "$IS_ROOT" = 1 ] && ! runuser -u postgres -- test -x "$PG_STATE" 2>/dev/null; then
      ok=0
    fi
    if [ "$ok" = 0 ]; then
      PG_BASE="/tmp/provider-events-pg-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
      log "postgres cannot use ${PG_STATE} (traversal or socket path length); using $PG_BASE"
    fi
    printf '%s\n' "$PG_BASE" >"$PG_BASE_FILE"
  fi
  PGDATA_DIR="$PG_BASE/data"
  PG_RUN="$PG_BASE/run"
  PG_LOG="$PG_BASE/postgres.log"
}

pg_chown() { if [ "$IS_ROOT" = 1 ]; then chown postgres:postgres "$@"; fi; }

pg_password() {
  if [ ! -s "$PG_PASSWORD_FILE" ]; then
    mkdir -p "$PG_STATE"
    (umask 077; od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$PG_PASSWORD_FILE")
  fi
  cat "$PG_PASSWORD_FILE"
}

pg_init_if_needed() {
  [ "$IS_ROOT" = 1 ] && ! id postgres >/dev/null 2>&1 && die "system user 'postgres' missing (install the 'postgresql' package)"
  mkdir -p "$PG_BASE"
  [ "$PG_BASE" = "$PG_STATE" ] || { pg_chown "$PG_BASE"; chmod 700 "$PG_BASE"; }
  mkdir -p "$PG_RUN"
  pg_chown "$PG_RUN"
  chmod 700 "$PG_RUN"
  touch "$PG_LOG"
  pg_chown "$PG_LOG"
  mkdir -p "$LOG_DIR"
  ln -sfn "$PG_LOG" "$LOG_DIR/postgres.log"
  [ -f "$PGDATA_DIR/PG_VERSION" ] && return 0

  log "initdb ${PGDATA_DIR} ($("$PG_BIN/postgres" --version))"
  rm -rf "$PGDATA_DIR"
  mkdir -p "$PGDATA_DIR"
  pg_chown "$PGDATA_DIR"
  chmod 700 "$PGDATA_DIR"
  quietly as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync \
    || die "initdb failed"
  # Unix socket (0700 dir, superuser, trust): only for this script's admin
  # work. TCP on 127.0.0.1 only, password (scram-sha-256).
  as_pg tee "$PGDATA_DIR/pg_hba.conf" >/dev/null <<'EOF'
# Generated by dev/services.sh
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   scram-sha-256
EOF
  printf "\n# dev/services.sh rewrites this file on every start\ninclude_if_exists = 'dev_services.conf'\n" \
    | as_pg tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
}

pg_write_config() {
  as_pg tee "$PGDATA_DIR/dev_services.conf" >/dev/null <<EOF
# Generated by dev/services.sh on every start.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_RUN'
unix_socket_permissions = 0700
password_encryption = scram-sha-256
max_connections = 100
fsync = on
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

pg_running() { as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; }

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -t 2 >/dev/null 2>&1; }

pg_dump_log() {
  log "---- tail of $PG_LOG ----"
  tail -n 30 "$PG_LOG" >&2 2>/dev/null || true
}

pg_prepare() { # common setup for every pg subcommand
  pg_resolve_base
  pg_ensure_installed
}

pg_start() {
  pg_prepare
  pg_init_if_needed
  local t0
  t0=$(now_us)
  if pg_running && ! grep -qx "port = $PG_PORT" "$PGDATA_DIR/dev_services.conf" 2>/dev/null; then
    log "postgres is running on another port; restarting it on $PG_PORT"
    pg_stop fast
  fi
  if pg_running; then
    log "postgres already running"
  else
    if port_in_use "$PG_PORT"; then
      port_owner_hint "$PG_PORT"
      die "port $PG_PORT is already in use by another process; set PG_PORT or stop it"
    fi
    pg_write_config
    printf '\n===== %s pg_ctl start\n' "$(date -Is)" | as_pg tee -a "$PG_LOG" >/dev/null
    # pg_ctl puts the postmaster in its own session with output to $PG_LOG.
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t "$PG_READY_TIMEOUT" -s start \
        </dev/null >&2 9>&-; then
      pg_dump_log
      die "postgres failed to start"
    fi
  fi
  local deadline=$(( SECONDS + PG_READY_TIMEOUT ))
  until pg_ready; do
    if (( SECONDS >= deadline )); then pg_dump_log; die "postgres not ready after ${PG_READY_TIMEOUT}s"; fi
    sleep 0.2
  done
  pg_ensure_role_db
  log "postgres ready at 127.0.0.1:$PG_PORT ($(elapsed_since "$t0"))"
}

pg_ensure_role_db() {
  local pw
  pw=$(pg_password)
  [[ "$pw" =~ ^[0-9a-f]+$ ]] || die "unexpected content in $PG_PASSWORD_FILE"
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_RUN" -p "$PG_PORT" -U postgres -d postgres \
    >/dev/null 9>&- <<EOF || die "creating role/database failed"
SELECT 'CREATE ROLE $PG_ROLE' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE') \gexec
ALTER ROLE $PG_ROLE WITH LOGIN CREATEDB PASSWORD '$pw';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_ROLE' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB') \gexec
EOF
}

pg_stop() { # $1 = fast (clean) or immediate (crash-like)
  local mode=${1:-fast}
  # Never initialise or install anything just to stop.
  if [ ! -s "$PG_BASE_FILE" ]; then
    log "postgres not running"
    return 0
  fi
  pg_resolve_base
  if ! pg_find_bin || [ ! -f "$PGDATA_DIR/PG_VERSION" ] || ! pg_running; then
    log "postgres not running"
    return 0
  fi
  local t0
  t0=$(now_us)
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m "$mode" -w -t 60 -s stop </dev/null >&2 9>&- \
    || die "pg_ctl stop failed"
  log "postgres stopped (-m $mode, $(elapsed_since "$t0"))"
}

pg_status() {
  if [ ! -s "$PG_BASE_FILE" ]; then
    echo "postgres: not set up"
    return 1
  fi
  pg_resolve_base
  if ! pg_find_bin; then
    echo "postgres: server binaries not installed"
    return 1
  fi
  if [ -f "$PGDATA_DIR/PG_VERSION" ] && pg_running; then
    if pg_ready; then
      echo "postgres: running, ready at 127.0.0.1:$PG_PORT (data $PGDATA_DIR)"
      return 0
    fi
    echo "postgres: running, NOT ready at 127.0.0.1:$PG_PORT (data $PGDATA_DIR)"
    return 1
  fi
  echo "postgres: stopped"
  return 1
}

# ============================================================ commands ===
print_env() {
  [ -s "$PG_PASSWORD_FILE" ] || die "no PostgreSQL password yet; run: dev/services.sh up"
  echo "export KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP"
  echo "export DATABASE_URL=postgresql://$PG_ROLE:$(cat "$PG_PASSWORD_FILE")@127.0.0.1:$PG_PORT/$PG_DB"
}

cmd_up() {
  local t0
  t0=$(now_us)
  ensure_kcat
  # Boot the broker JVM first and set up PostgreSQL while it starts.
  kafka_launch
  pg_start
  kafka_wait_ready
  kafka_ensure_topics
  log "all services up ($(elapsed_since "$t0"))"
  print_env
}

cmd_clean() {
  kafka_stop TERM
  pg_stop fast
  local base=''
  [ -s "$PG_BASE_FILE" ] && base=$(cat "$PG_BASE_FILE")
  if [ -n "$base" ] && [ "$base" != "$PG_STATE" ] && [[ "$base" == /tmp/provider-events-pg-* ]]; then
    rm -rf "$base"
  fi
  rm -rf "$KAFKA_DATA" "$KAFKA_CLUSTER_ID_FILE" "$KAFKA_CONF" "$PG_STATE" "$SETTINGS" "$LOG_DIR"
  log "removed Kafka and PostgreSQL data (jar cache kept in ${KAFKA_LIBS#"$ROOT/"})"
}

usage() {
  cat >&2 <<'EOF'
usage: dev/services.sh COMMAND

  up           start Kafka + PostgreSQL (idempotent), create topics, role, db;
               prints the export lines:  eval "$(dev/services.sh up)"
  down         stop both (clean shutdown, data kept; idempotent)
  status       show state; exit 0 only if both are running and ready
  env          print the export lines only (no starting)
  kafka-start  start the broker and wait until it answers metadata requests
  kafka-stop   SIGTERM the broker (controlled shutdown) and wait for exit
  kafka-kill   SIGKILL the broker (crash simulation) and wait for exit
  pg-start     start PostgreSQL and wait until ready
  pg-stop      stop PostgreSQL (pg_ctl -m fast)
  pg-kill      stop PostgreSQL like a crash (pg_ctl -m immediate)
  clean        down + delete Kafka/PostgreSQL data and logs (keeps jar cache)

env overrides: KAFKA_PORT (29092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1),
PG_PORT (55432); ports are remembered in .dev/settings.env.
KAFKA_HEAP_OPTS, KAFKA_READY_TIMEOUT (90), KAFKA_TOPICS, KAFKA_TOPIC_PARTITIONS (6).
EOF
}

main() {
  local cmd=${1:-help}
  load_settings
  case "$cmd" in
    up)          take_lock; save_settings; cmd_up ;;
    down)        take_lock; kafka_stop TERM; pg_stop fast ;;
    status)      local rc=0; kafka_status || rc=1; pg_status || rc=1; return "$rc" ;;
    env)         print_env ;;
    kafka-start) take_lock; save_settings; kafka_start ;;
    kafka-stop)  take_lock; kafka_stop TERM ;;
    kafka-kill)  take_lock; kafka_stop KILL ;;
    pg-start)    take_lock; save_settings; pg_start ;;
    pg-stop)     take_lock; pg_stop fast ;;
    pg-kill)     take_lock; pg_stop immediate ;;
    clean)       take_lock; cmd_clean ;;
    help|-h|--help) usage ;;
    *)           usage; die "unknown command: $cmd" ;;
  esac
}

main "$@"
