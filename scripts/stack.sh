#!/usr/bin/env bash
# The local stack without Docker: a single-node KRaft Apache Kafka broker (jars from Maven
# Central) and redis-server (Debian package), both on 127.0.0.1.
#
#   scripts/stack.sh up | down | status | install
#   scripts/stack.sh with CMD...   (CMD with the stack up; stopped afterwards unless it was up)
#
# Idempotent: `up` starts only what is not running, `down` stops only the processes this
# script started (by the pid in its pid file, after checking that pid is still ours).
# Everything lives under $SHOPSTREAM_STACK_DIR (default .stack/, git-ignored); the Kafka
# jars are cached under $SHOPSTREAM_CACHE so a second `up` needs no network.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${SHOPSTREAM_STACK_DIR:-$ROOT/.stack}"
CACHE="${SHOPSTREAM_CACHE:-$HOME/.cache/shopstream}"
KAFKA_VERSION="${SHOPSTREAM_KAFKA_VERSION:-3.9.1}"
KAFKA_PORT="${SHOPSTREAM_KAFKA_PORT:-9092}"
KAFKA_SASL_PORT="${SHOPSTREAM_KAFKA_SASL_PORT:-9094}"
CONTROLLER_PORT="${SHOPSTREAM_KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${SHOPSTREAM_REDIS_PORT:-6379}"
KAFKA_HEAP="${SHOPSTREAM_KAFKA_HEAP:--Xms256m -Xmx1g}"
KAFKA_LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {  # apt_install PACKAGE... (Debian/Ubuntu; once per run: apt-get update)
  command -v apt-get >/dev/null || die "cannot install $*: no apt-get here; install it by hand"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing $* from Debian packages"
  if [ "$APT_UPDATED" = 0 ]; then $sudo apt-get update -qq >/dev/null; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" \
    >/dev/null || die "apt-get install $* failed"
}

install_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  apt_install redis-server
}

java_major() {  # the major version of `java` on PATH (0 if none)
  command -v java >/dev/null || { echo 0; return 0; }
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1
}

install_java() {  # Java 17+ runs the broker: Debian's default JRE (17 on Debian 12, 21 on 13)
  [ "$(java_major)" -ge 17 ] 2>/dev/null && return 0
  apt_install default-jre-headless
  [ "$(java_major)" -ge 17 ] 2>/dev/null \
    || die "Java 17+ is needed to run the Kafka broker; $(java -version 2>&1 | head -1)"
}

install_kafka() {
  install_java
  [ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] && return 0
  command -v mvn >/dev/null || apt_install maven  # once, to fetch the Kafka jars
  log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central (once; cached in $KAFKA_LIBS)"
  local tmp; tmp="$(mktemp -d "$CACHE.XXXXXX" 2>/dev/null || { mkdir -p "$CACHE"; mktemp -d "$CACHE/tmp.XXXXXX"; })"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
    >"$tmp.mvn.log" 2>&1 || { cat "$tmp.mvn.log" >&2; die "mvn could not fetch the Kafka jars"; }
  rm -f "$tmp.mvn.log"
  mkdir -p "$(dirname "$KAFKA_LIBS")"
  rm -rf "$KAFKA_LIBS"; mv "$tmp" "$KAFKA_LIBS"
}

# ---------------------------------------------------------------------------------------
# process helpers: a pid file is trusted only while its process still looks like ours
# ---------------------------------------------------------------------------------------
pid_alive() {  # pid_alive PIDFILE PATTERN
  local pidfile="$1" pattern="$2" pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern"
}

stop_pid() {  # stop_pid NAME PIDFILE PATTERN
  local name="$1" pidfile="$2" pattern="$3" pid i
  if ! pid_alive "$pidfile" "$pattern"; then
    rm -f "$pidfile"; log "$name: not running"; return 0
  fi
  pid="$(cat "$pidfile")"
  kill -TERM "$pid"
  for i in $(seq 1 100); do
    pid_alive "$pidfile" "$pattern" || break
    sleep 0.2
  done
  if pid_alive "$pidfile" "$pattern"; then
    log "$name: still running after 20 s, sending SIGKILL"; kill -KILL "$pid" || true
  fi
  rm -f "$pidfile"; log "$name: stopped (pid $pid)"
}

wait_for() {  # wait_for NAME SECONDS COMMAND...
  local name="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.3
  done
  log "$name: ready"
}

# ---------------------------------------------------------------------------------------
# redis
# ---------------------------------------------------------------------------------------
REDIS_DIR="$STACK_DIR/redis"
REDIS_PID="$REDIS_DIR/redis.pid"

redis_up() {
  if pid_alive "$REDIS_PID" "redis-server"; then log "redis: already running on $REDIS_PORT"; return; fi
  install_redis
  mkdir -p "$REDIS_DIR"
  local auth=()
  [ -n "${SHOPSTREAM_REDIS_PASSWORD:-}" ] && auth=(--requirepass "$SHOPSTREAM_REDIS_PASSWORD")
  # Durable: the append-only file, fsynced every second (a restart keeps everything; a
  # power cut loses at most the last second, which the worker detects: docs/reliability.md).
  # SHOPSTREAM_REDIS_APPENDONLY=no runs it without persistence (the fault suite's data loss).
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes \
    --dir "$REDIS_DIR" --save '' --appendonly "${SHOPSTREAM_REDIS_APPENDONLY:-yes}" \
    --appendfsync everysec --daemonize yes \
    --pidfile "$REDIS_PID" --logfile "$REDIS_DIR/redis.log" "${auth[@]}"
  local cli=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")
  [ -n "${SHOPSTREAM_REDIS_PASSWORD:-}" ] && cli+=(--no-auth-warning -a "$SHOPSTREAM_REDIS_PASSWORD")
  wait_for "redis (127.0.0.1:$REDIS_PORT)" 20 "${cli[@]}" ping \
    || die "redis did not start; see $REDIS_DIR/redis.log"
}

# ---------------------------------------------------------------------------------------
# kafka (KRaft, single node: broker + controller in one process)
# ---------------------------------------------------------------------------------------
KAFKA_DIR="$STACK_DIR/kafka"
KAFKA_PID="$KAFKA_DIR/kafka.pid"

kafka_config() {
  mkdir -p "$KAFKA_DIR/data"
  cat >"$KAFKA_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_shopstream="${SHOPSTREAM_KAFKA_SASL_TEST_PASSWORD:-shopstream-secret}";
log.dirs=$KAFKA_DIR/data
num.partitions=4
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=1048588
log.retention.hours=168
EOF
  cat >"$KAFKA_DIR/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$KAFKA_DIR/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
EOF
}

kafka_java() {  # kafka_java MAINCLASS ARGS...
  java $KAFKA_HEAP -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}

kafka_ready() {
  grep -q "Kafka Server started" "$KAFKA_DIR/server.log" 2>/dev/null \
    && (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null
}

kafka_up() {
  if pid_alive "$KAFKA_PID" "kafka.Kafka"; then log "kafka: already running on $KAFKA_PORT"; return; fi
  install_kafka
  kafka_config
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    kafka_java kafka.tools.StorageTool format -t "shopstream-local-cluster-01" \
      -c "$KAFKA_DIR/server.properties" --ignore-formatted >"$KAFKA_DIR/format.log" 2>&1 \
      || die "formatting the Kafka storage failed; see $KAFKA_DIR/format.log"
  fi
  : >"$KAFKA_DIR/server.log"
  nohup java $KAFKA_HEAP -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
    >"$KAFKA_DIR/stdout.log" 2>&1 &
  echo $! >"$KAFKA_PID"
  wait_for "kafka (127.0.0.1:$KAFKA_PORT)" 90 kafka_ready \
    || die "kafka did not start in 90 s; see $KAFKA_DIR/server.log and $KAFKA_DIR/stdout.log"
}

status() {
  local rc=0
  if pid_alive "$KAFKA_PID" "kafka.Kafka"; then
    echo "kafka: running (pid $(cat "$KAFKA_PID"), 127.0.0.1:$KAFKA_PORT)"
  else echo "kafka: stopped"; rc=1; fi
  if pid_alive "$REDIS_PID" "redis-server"; then
    echo "redis: running (pid $(cat "$REDIS_PID"), 127.0.0.1:$REDIS_PORT)"
  else echo "redis: stopped"; rc=1; fi
  return $rc
}

down() {
  # the demo's worker first (scripts/demo.sh), then the services
  stop_pid "demo worker" "$STACK_DIR/demo/worker.pid" "shopstream worker"
  stop_pid kafka "$KAFKA_PID" "kafka.Kafka"; stop_pid redis "$REDIS_PID" "redis-server"
}

# `with CMD...`: run CMD with the stack up; stop the stack afterwards (also on failure or
# Ctrl-C) unless it was already running. Exits with CMD's status. (Functions that `down`
# calls must `return 0`, not a bare `return`: in an EXIT trap a bare `return` repeats the
# failing command's status, and `set -e` would then abort the clean-up half way.)
with_stack() {
  local was_running=0
  status >/dev/null 2>&1 && was_running=1
  if [ "$was_running" = 0 ]; then trap down EXIT; fi
  redis_up; kafka_up
  "$@"
}

case "${1:-}" in
  install) install_redis; install_kafka ;;  # idempotent: installs only what is missing
  up) redis_up; kafka_up ;;
  down) down ;;
  with) shift; with_stack "$@" ;;
  status) status ;;
  kafka-up) kafka_up ;;
  kafka-down) stop_pid kafka "$KAFKA_PID" "kafka.Kafka" ;;
  redis-up) redis_up ;;
  redis-down) stop_pid redis "$REDIS_PID" "redis-server" ;;
  *) echo "usage: $0 up|down|status|install|kafka-up|kafka-down|redis-up|redis-down|with CMD..." >&2
     exit 2 ;;
esac
