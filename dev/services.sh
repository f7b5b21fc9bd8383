#!/usr/bin/env bash
# dev/services.sh - local Apache Kafka (KRaft: a single node, or with
# KAFKA_BROKERS=3 a three-broker cluster) and PostgreSQL for provider-events
# development and tests. No docker: the real Kafka broker is
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
# Cluster mode (KAFKA_BROKERS=3): per-node state under .dev/kafka/cluster/.
KAFKA_CLUSTER_HOME="$KAFKA_HOME/cluster"
KAFKA_MAX_BROKERS=9
KAFKA_BROKER_HEAP_OPTS=${KAFKA_BROKER_HEAP_OPTS:--Xms128m -Xmx384m}
KAFKA_CONTROLLER_HEAP_OPTS=${KAFKA_CONTROLLER_HEAP_OPTS:--Xms64m -Xmx256m}
KAFKA_MIN_ISR=${KAFKA_MIN_ISR:-2}

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
  local SAVED_KAFKA_PORT='' SAVED_KAFKA_CONTROLLER_PORT='' SAVED_PG_PORT='' SAVED_KAFKA_BROKERS=''
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
  # Like the ports, a KAFKA_BROKERS given once is remembered (1 = single node).
  KAFKA_BROKERS=${KAFKA_BROKERS:-${SAVED_KAFKA_BROKERS:-1}}
  [[ "$KAFKA_BROKERS" =~ ^[13]$ ]] || die "KAFKA_BROKERS must be 1 (single node) or 3 (cluster), got '$KAFKA_BROKERS'"
  [[ "$KAFKA_MIN_ISR" =~ ^[12]$ ]] || die "KAFKA_MIN_ISR must be 1 or 2, got '$KAFKA_MIN_ISR'"
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$PG_PORT"; do
    if ! [[ "$p" =~ ^[0-9]+$ ]] || [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then die "bad port: $p"; fi
  done
  [ "$KAFKA_PORT" != "$KAFKA_CONTROLLER_PORT" ] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"
  if [ "$KAFKA_BROKERS" = 1 ]; then
    KAFKA_BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"
  else
    # Broker n listens on KAFKA_PORT+2(n-1): 29092, 29094, 29096 by default
    # (the controller keeps KAFKA_PORT+1).
    local n port list=''
    for n in $(seq 1 "$KAFKA_BROKERS"); do
      port=$(broker_port "$n")
      [ "$port" -le 65535 ] || die "bad port: $port"
      [ "$port" != "$KAFKA_CONTROLLER_PORT" ] || die "KAFKA_CONTROLLER_PORT $port is broker $n's port"
      list+="${list:+,}$KAFKA_HOST:$port"
    done
    KAFKA_BOOTSTRAP=$list
  fi
}

save_settings() {
  mkdir -p "$DEV"
  local new
  new=$(printf 'SAVED_KAFKA_PORT=%s\nSAVED_KAFKA_CONTROLLER_PORT=%s\nSAVED_PG_PORT=%s\n' \
    "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$PG_PORT")
  # Only a cluster is recorded: a single node leaves the file as it always was.
  [ "$KAFKA_BROKERS" = 1 ] || new+=$(printf '\nSAVED_KAFKA_BROKERS=%s' "$KAFKA_BROKERS")
  if [ ! -f "$SETTINGS" ] || [ "$(cat "$SETTINGS")" != "$new" ]; then
    printf '%s\n' "$new" >"$SETTINGS.tmp" && mv "$SETTINGS.tmp" "$SETTINGS"
  fi
}

# ================================================================ Kafka ===
# A Kafka "node" is one JVM. Single mode (KAFKA_BROKERS=1, the default) runs one
# combined broker+controller node, "single", with the paths used since the
# start. Cluster mode (KAFKA_BROKERS=3) runs a dedicated KRaft controller,
# "controller" (node.id 100, on KAFKA_CONTROLLER_PORT), and brokers "broker1"..
# "brokerN" (node.id n, client port KAFKA_PORT+2(n-1)), each with its own
# config, data, pid file and logs under .dev/kafka/cluster/<node>/.
# A dedicated controller (rather than three combined nodes) keeps the metadata
# quorum alive while brokers are stopped, so with two of three brokers down
# the ISR really shrinks below min.insync.replicas (NOT_ENOUGH_REPLICAS)
# instead of the whole cluster losing its quorum and going read-only.
node_select() { # $1 = single | controller | broker<N>
  NODE=$1
  case "$1" in
    single)
      NODE_ID=1
      NODE_HOME=$KAFKA_HOME
      NODE_DATA=$KAFKA_DATA
      NODE_CONF=$KAFKA_CONF
      NODE_PID_FILE=$KAFKA_PID_FILE
      NODE_OUT=$KAFKA_OUT
      NODE_SERVER_LOG=$KAFKA_SERVER_LOG
      NODE_LOG_DIR=$LOG_DIR
      NODE_LABEL=kafka
      NODE_HEAP=$KAFKA_HEAP_OPTS
      NODE_PORTS="$KAFKA_PORT $KAFKA_CONTROLLER_PORT"
      NODE_LISTENERS="PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT"
      return 0 ;;
    controller)
      NODE_ID=100
      NODE_LABEL="kafka controller"
      NODE_HEAP=$KAFKA_CONTROLLER_HEAP_OPTS
      NODE_PORTS=$KAFKA_CONTROLLER_PORT
      NODE_LISTENERS="CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT" ;;
    broker[1-9])
      NODE_ID=${1#broker}
      NODE_LABEL="kafka broker $NODE_ID"
      NODE_HEAP=$KAFKA_BROKER_HEAP_OPTS
      NODE_PORTS=$(broker_port "$NODE_ID")
      NODE_LISTENERS="PLAINTEXT://$KAFKA_HOST:$NODE_PORTS" ;;
    *) die "unknown kafka node: $1" ;;
  esac
  NODE_HOME="$KAFKA_CLUSTER_HOME/$1"
  NODE_DATA="$NODE_HOME/data"
  NODE_CONF="$NODE_HOME/server.properties"
  NODE_PID_FILE="$NODE_HOME/kafka.pid"
  NODE_LOG_DIR="$LOG_DIR/$1"
  NODE_OUT="$NODE_LOG_DIR/kafka.out"
  NODE_SERVER_LOG="$NODE_LOG_DIR/kafka-server.log"
}

broker_port() { echo $(( KAFKA_PORT + 2 * ($1 - 1) )); }

# The nodes of the current mode, in start order (controller first).
kafka_nodes() {
  if [ "$KAFKA_BROKERS" = 1 ]; then
    echo single
  else
    local n out=controller
    for n in $(seq 1 "$KAFKA_BROKERS"); do out+=" broker$n"; done
    echo "$out"
  fi
}

# Every node either mode may have left running (to stop them all).
kafka_all_nodes() {
  local n out="single"
  for n in $(seq 1 "$KAFKA_MAX_BROKERS"); do out+=" broker$n"; done
  echo "$out controller"
}

kafka_pid() { cat "$NODE_PID_FILE" 2>/dev/null || true; }

# Alive = the pid in the pid file is a live JVM running kafka.Kafka with the
# node's server.properties (guards against pid reuse; a zombie has an empty cmdline).
kafka_alive() {
  local pid
  pid=$(kafka_pid)
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $NODE_CONF"
}

# Does the config of the running node (written at its launch) use the ports
# asked for now?
kafka_conf_matches() {
  grep -qx "listeners=$NODE_LISTENERS" "$NODE_CONF" 2>/dev/null || return 1
  [ "$NODE" = single ] || grep -qx "controller.quorum.voters=100@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT" "$NODE_CONF"
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
  mkdir -p "$NODE_HOME" "$NODE_DATA" "$NODE_LOG_DIR"
  case "$NODE" in
    single) kafka_single_config ;;
    controller) kafka_controller_config ;;
    *) kafka_broker_config ;;
  esac >"$NODE_CONF.tmp"
  mv "$NODE_CONF.tmp" "$NODE_CONF"
}

kafka_single_config() {
  cat <<EOF
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
}

kafka_controller_config() {
  cat <<EOF
# Generated by dev/services.sh on every start - edit the script, not this file.
# Cluster mode: the dedicated KRaft controller (static single-voter quorum).
process.roles=controller
node.id=100
controller.quorum.voters=100@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT
log.dirs=$NODE_DATA
# A broker that stops heartbeating is fenced (and leaves every ISR) after 3 s.
broker.session.timeout.ms=3000
# Give the preferred leaders back soon after a restarted broker rejoins
# (default: every 300 s), so leadership spreads over the brokers again.
leader.imbalance.check.interval.seconds=15
EOF
}

kafka_broker_config() {
  local rf=$(( KAFKA_BROKERS < 3 ? KAFKA_BROKERS : 3 ))
  cat <<EOF
# Generated by dev/services.sh on every start - edit the script, not this file.
# Cluster mode: broker $NODE_ID of $KAFKA_BROKERS (controller on $KAFKA_HOST:$KAFKA_CONTROLLER_PORT).
process.roles=broker
node.id=$NODE_ID
controller.quorum.voters=100@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=$NODE_LISTENERS
advertised.listeners=$NODE_LISTENERS
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$NODE_DATA
num.partitions=6
default.replication.factor=$rf
min.insync.replicas=$KAFKA_MIN_ISR
auto.create.topics.enable=true
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$KAFKA_MIN_ISR
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$KAFKA_MIN_ISR
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
broker.heartbeat.interval.ms=500
# Small dev heaps: keep the replica fetchers' buffers modest too.
replica.fetch.max.bytes=1048576
num.network.threads=2
num.io.threads=4
EOF
}

kafka_cluster_id() { # $1 = file holding it (created once)
  local cid
  if [ -s "$1" ]; then
    cat "$1"
    return 0
  fi
  # Same shape as `kafka-storage random-uuid` (16 random bytes, base64url,
  # no padding) without paying for a JVM start. Must not start with '-'.
  cid=-
  while [[ "$cid" == -* ]]; do
    cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  done
  mkdir -p "$(dirname "$1")"
  printf '%s\n' "$cid" >"$1"
  echo "$cid"
}

kafka_format_if_needed() {
  [ -f "$NODE_DATA/meta.properties" ] && return 0
  local cid
  if [ "$NODE" = single ]; then
    cid=$(kafka_cluster_id "$KAFKA_CLUSTER_ID_FILE")
  else
    cid=$(kafka_cluster_id "$KAFKA_CLUSTER_HOME/cluster-id")
  fi
  log "formatting KRaft storage of $NODE_LABEL (cluster id $cid)"
  quietly kafka_tool kafka.tools.StorageTool format -t "$cid" -c "$NODE_CONF" --ignore-formatted \
    || die "kafka StorageTool format failed ($NODE_LABEL)"
}

# Start the node's JVM in the background (does not wait for readiness).
kafka_launch() {
  if kafka_alive; then
    if kafka_conf_matches; then
      log "$NODE_LABEL already running (pid $(kafka_pid))"
      return 0
    fi
    log "$NODE_LABEL is running with other ports; restarting it"
    kafka_stop TERM
  fi
  local p
  for p in $NODE_PORTS; do
    if port_in_use "$p"; then
      port_owner_hint "$p"
      die "port $p is already in use by another process (not our $NODE_LABEL); set KAFKA_PORT / KAFKA_CONTROLLER_PORT or stop it"
    fi
  done
  ensure_java
  kafka_resolve_jars
  kafka_write_config
  kafka_format_if_needed
  rm -f "$NODE_PID_FILE"
  stat -c %s "$NODE_SERVER_LOG" >"$NODE_HOME/launch.offset" 2>/dev/null || echo 0 >"$NODE_HOME/launch.offset"
  printf '\n===== %s starting kafka.Kafka %s\n' "$(date -Is)" "$NODE_CONF" >>"$NODE_OUT"
  # setsid: own session, no controlling terminal, survives the calling shell.
  # The inner bash writes its own pid and execs java, so the pid file holds
  # the JVM's pid whether or not setsid had to fork.
  # shellcheck disable=SC2086,SC2016
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' services-kafka "$NODE_PID_FILE" \
    java $NODE_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Djava.awt.headless=true \
    -Dkafka.logs.dir="$NODE_LOG_DIR" -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$NODE_CONF" \
    </dev/null >>"$NODE_OUT" 2>&1 9>&- &
  local _
  for _ in $(seq 1 100); do
    [ -s "$NODE_PID_FILE" ] && break
    sleep 0.05
  done
  if [ "$NODE" = single ]; then
    log "kafka starting (pid $(kafka_pid)), bootstrap $KAFKA_BOOTSTRAP"
  else
    log "$NODE_LABEL starting (pid $(kafka_pid)) on ${NODE_LISTENERS#*://}"
  fi
}

kafka_metadata() { kcat -L -b "$KAFKA_BOOTSTRAP" -m "${1:-2}" 2>/dev/null; }

# Is broker $1 registered (listed in the metadata $2)?
broker_listed() {
  local port
  if [ "$KAFKA_BROKERS" = 1 ]; then port=$KAFKA_PORT; else port=$(broker_port "$1"); fi
  grep -q "broker $1 at $KAFKA_HOST:$port" <<<"$2"
}

# Ready = a real metadata request answers, lists every broker, and no existing
# partition is leaderless (matters right after a restart).
kafka_ready() {
  local md n
  md=$(kafka_metadata "${1:-2}") || return 1
  for n in $(seq 1 "$KAFKA_BROKERS"); do
    broker_listed "$n" "$md" || return 1
  done
  ! grep -q 'leader -1' <<<"$md"
}

# Tail of what the current run of the node logged (not older runs), lines cut.
kafka_dump_logs() {
  local off=0 size
  off=$(cat "$NODE_HOME/launch.offset" 2>/dev/null || echo 0)
  size=$(stat -c %s "$NODE_SERVER_LOG" 2>/dev/null || echo 0)
  [ "$size" -ge "$off" ] || off=0   # rolled over since launch
  log "---- tail of ${NODE_SERVER_LOG#"$ROOT/"} (this run) ----"
  { tail -c +"$((off + 1))" "$NODE_SERVER_LOG" 2>/dev/null || true; } | tail -n 30 | cut -c1-400 >&2
  log "---- ${NODE_OUT#"$ROOT/"} (this run) ----"
  { awk '/^===== /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$NODE_OUT" 2>/dev/null || true; } \
    | tail -n 20 | cut -c1-400 >&2
}

# Fail if a node of this mode died (dumping its logs).
kafka_check_nodes_alive() {
  local node
  for node in $(kafka_nodes); do
    node_select "$node"
    if ! kafka_alive; then
      kafka_dump_logs
      die "$NODE_LABEL exited during startup"
    fi
  done
}

kafka_wait_ready() {
  local t0 deadline
  t0=$(now_us)
  deadline=$(( SECONDS + KAFKA_READY_TIMEOUT ))
  until kafka_ready 2; do
    kafka_check_nodes_alive
    if (( SECONDS >= deadline )); then
      for node in $(kafka_nodes); do node_select "$node"; kafka_dump_logs; done
      die "kafka not ready after ${KAFKA_READY_TIMEOUT}s (left running for inspection; dev/services.sh kafka-stop)"
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
  local rf=$(( KAFKA_BROKERS < 3 ? KAFKA_BROKERS : 3 )) extra=()
  [ "$KAFKA_BROKERS" = 1 ] || extra=(--config "min.insync.replicas=$KAFKA_MIN_ISR")
  for t in "${missing[@]}"; do
    if [ "$KAFKA_BROKERS" = 1 ]; then
      log "creating topic $t ($KAFKA_TOPIC_PARTITIONS partitions)"
    else
      log "creating topic $t ($KAFKA_TOPIC_PARTITIONS partitions, replication factor $rf, min.insync.replicas $KAFKA_MIN_ISR)"
    fi
    quietly kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
      --create --if-not-exists --topic "$t" \
      --partitions "$KAFKA_TOPIC_PARTITIONS" --replication-factor "$rf" "${extra[@]}" \
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

# Stop the nodes of the other mode (they share ports with this one's).
kafka_stop_other_mode() {
  local node
  for node in $(kafka_all_nodes); do
    case " $(kafka_nodes) " in *" $node "*) continue ;; esac
    node_select "$node"
    if kafka_alive; then
      log "stopping $NODE_LABEL (KAFKA_BROKERS=$KAFKA_BROKERS asked)"
      kafka_stop TERM
    fi
  done
}

kafka_launch_all() {
  local node
  kafka_stop_other_mode
  for node in $(kafka_nodes); do
    node_select "$node"
    kafka_launch
  done
}

kafka_start() { # launch + wait + topics
  ensure_kcat
  kafka_launch_all
  kafka_wait_ready
  kafka_ensure_topics
}

kafka_stop() { # $1 = TERM (clean shutdown) or KILL; stops the selected node
  local sig=${1:-TERM} pid
  if ! kafka_alive; then
    rm -f "$NODE_PID_FILE"
    log "$NODE_LABEL not running"
    return 0
  fi
  pid=$(kafka_pid)
  local t0
  t0=$(now_us)
  kill "-$sig" "$pid" 2>/dev/null || true
  local deadline=$(( SECONDS + KAFKA_STOP_TIMEOUT ))
  while proc_running "$pid"; do
    if (( SECONDS >= deadline )) && [ "$sig" != KILL ]; then
      log "$NODE_LABEL did not stop within ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sig=KILL
      deadline=$(( SECONDS + 10 ))
    elif (( SECONDS >= deadline )); then
      die "$NODE_LABEL pid $pid survived SIGKILL"
    fi
    sleep 0.1
  done
  # The leader thread can be a zombie while other JVM threads still hold the
  # sockets: also wait for the ports to be released.
  # Ports are taken from the config the node was launched with.
  local ports port
  ports=$(sed -n 's/^listeners=//p' "$NODE_CONF" 2>/dev/null | grep -o ':[0-9]*' | tr -d ':' || true)
  deadline=$(( SECONDS + 15 ))
  for port in $ports; do
    while port_in_use "$port"; do
      (( SECONDS < deadline )) || die "$NODE_LABEL port $port still in use 15s after pid $pid exited"
      sleep 0.1
    done
  done
  rm -f "$NODE_PID_FILE"
  log "$NODE_LABEL stopped (SIG$sig, pid $pid, $(elapsed_since "$t0"))"
}

# Stop every node either mode left running: brokers before the controller
# (a broker's controlled shutdown asks the controller to move its leaders).
kafka_stop_all() { # $1 = TERM or KILL
  local node
  for node in $(kafka_all_nodes); do
    node_select "$node"
    if kafka_alive; then
      kafka_stop "$1"
    else
      case " $(kafka_nodes) " in *" $node "*) kafka_stop "$1" ;; esac  # logs "not running"
    fi
  done
}

# Broker N of the cluster (or the single node for N=1 in single mode).
select_broker() {
  local n=${1:-}
  [[ "$n" =~ ^[1-9]$ ]] && [ "$n" -le "$KAFKA_BROKERS" ] \
    || die "broker number must be 1..$KAFKA_BROKERS (KAFKA_BROKERS=$KAFKA_BROKERS), got '${n}'"
  if [ "$KAFKA_BROKERS" = 1 ]; then node_select single; else node_select "broker$n"; fi
}

# Start broker N and wait until it serves metadata listing itself. Unlike kafka-start
# this does not wait for every partition to have a leader: with other brokers
# still down, some partitions may legitimately have none.
broker_start() {
  local n=$1 t0 deadline md
  ensure_kcat
  if [ "$KAFKA_BROKERS" != 1 ]; then
    node_select controller
    kafka_alive || die "the kafka controller is not running; use kafka-start"
  fi
  select_broker "$n"
  kafka_launch
  t0=$(now_us)
  deadline=$(( SECONDS + KAFKA_READY_TIMEOUT ))
  # Ask the broker itself: right after a SIGKILL the others still list the dead
  # incarnation until the controller fences it, but only a started broker answers.
  local own=$KAFKA_BOOTSTRAP
  [ "$KAFKA_BROKERS" = 1 ] || own="$KAFKA_HOST:$(broker_port "$n")"
  while :; do
    md=$(kcat -L -b "$own" -m 2 2>/dev/null) || md=
    broker_listed "$n" "$md" && break
    if ! kafka_alive; then kafka_dump_logs; die "$NODE_LABEL exited during startup"; fi
    if (( SECONDS >= deadline )); then
      kafka_dump_logs
      die "$NODE_LABEL not registered after ${KAFKA_READY_TIMEOUT}s"
    fi
    sleep 0.2
  done
  log "$NODE_LABEL registered (waited $(elapsed_since "$t0"))"
}

kafka_status() {
  local node rc=0 alive=0
  for node in $(kafka_nodes); do
    node_select "$node"
    if kafka_alive; then
      alive=1
      [ "$node" = single ] || echo "kafka:    $NODE_LABEL running (pid $(kafka_pid)) on ${NODE_LISTENERS#*://}"
    else
      [ "$node" = single ] || echo "kafka:    $NODE_LABEL stopped"
      rc=1
    fi
  done
  if [ "$alive" = 1 ]; then
    local what=running
    [ "$KAFKA_BROKERS" = 1 ] && what="running (pid $(kafka_pid))"
    if [ "$rc" = 0 ] && kafka_ready 2; then
      echo "kafka:    $what, ready at $KAFKA_BOOTSTRAP"
      return 0
    fi
    echo "kafka:    $what, NOT ready at $KAFKA_BOOTSTRAP"
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
  # Boot the broker JVM(s) first and set up PostgreSQL while they start.
  kafka_launch_all
  pg_start
  kafka_wait_ready
  kafka_ensure_topics
  log "all services up ($(elapsed_since "$t0"))"
  print_env
}

cmd_clean() {
  kafka_stop_all TERM
  pg_stop fast
  local base=''
  [ -s "$PG_BASE_FILE" ] && base=$(cat "$PG_BASE_FILE")
  if [ -n "$base" ] && [ "$base" != "$PG_STATE" ] && [[ "$base" == /tmp/provider-events-pg-* ]]; then
    rm -rf "$base"
  fi
  rm -rf "$KAFKA_DATA" "$KAFKA_CLUSTER_ID_FILE" "$KAFKA_CONF" "$KAFKA_CLUSTER_HOME" "$PG_STATE" \
    "$SETTINGS" "$LOG_DIR"
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
  kafka-start  start the broker(s) and wait until they answer metadata requests
  kafka-stop   SIGTERM every broker (controlled shutdown) and wait for exit
  kafka-kill   SIGKILL every broker (crash simulation) and wait for exit
  broker-start N  start broker N (1..KAFKA_BROKERS) and wait until it is registered
  broker-stop N   SIGTERM broker N (controlled shutdown); the others keep running
  broker-kill N   SIGKILL broker N (crash simulation)
  pg-start     start PostgreSQL and wait until ready
  pg-stop      stop PostgreSQL (pg_ctl -m fast)
  pg-kill      stop PostgreSQL like a crash (pg_ctl -m immediate)
  clean        down + delete Kafka/PostgreSQL data and logs (keeps jar cache)

env overrides: KAFKA_PORT (29092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1),
PG_PORT (55432); ports are remembered in .dev/settings.env.
KAFKA_BROKERS (1): 3 runs a cluster - a KRaft controller on KAFKA_CONTROLLER_PORT and
brokers on KAFKA_PORT, +2, +4; topics get replication factor 3 and
min.insync.replicas KAFKA_MIN_ISR (2). Remembered like the ports.
KAFKA_HEAP_OPTS (single node), KAFKA_BROKER_HEAP_OPTS (-Xms128m -Xmx384m),
KAFKA_CONTROLLER_HEAP_OPTS (-Xms64m -Xmx256m), KAFKA_READY_TIMEOUT (90),
KAFKA_TOPICS, KAFKA_TOPIC_PARTITIONS (6).
EOF
}

main() {
  local cmd=${1:-help}
  load_settings
  case "$cmd" in
    up)          take_lock; save_settings; cmd_up ;;
    down)        take_lock; kafka_stop_all TERM; pg_stop fast ;;
    status)      local rc=0; kafka_status || rc=1; pg_status || rc=1; return "$rc" ;;
    env)         print_env ;;
    kafka-start) take_lock; save_settings; kafka_start ;;
    kafka-stop)  take_lock; kafka_stop_all TERM ;;
    kafka-kill)  take_lock; kafka_stop_all KILL ;;
    broker-start) take_lock; select_broker "${2:-}"; broker_start "$2" ;;
    broker-stop)  take_lock; select_broker "${2:-}"; kafka_stop TERM ;;
    broker-kill)  take_lock; select_broker "${2:-}"; kafka_stop KILL ;;
    pg-start)    take_lock; save_settings; pg_start ;;
    pg-stop)     take_lock; pg_stop fast ;;
    pg-kill)     take_lock; pg_stop immediate ;;
    clean)       take_lock; cmd_clean ;;
    help|-h|--help) usage ;;
    *)           usage; die "unknown command: $cmd" ;;
  esac
}

main "$@"
