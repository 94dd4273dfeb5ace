#!/usr/bin/env bash
# Local orion-etl stack without Docker: PostgreSQL (own initdb cluster, wal_level=logical),
# Apache Kafka (single KRaft node) and a Kafka Connect distributed worker with the Debezium
# PostgreSQL connector. The JVM parts are the real Apache/Debezium artifacts, resolved from
# Maven Central by scripts/stack/pom-*.xml and cached under $ORION_STACK_HOME/lib.
#
#   scripts/stack.sh setup    fetch everything (the only step that downloads)
#   scripts/stack.sh up       setup if needed, start all services, wait until healthy (idempotent)
#   scripts/stack.sh down     stop all services (data kept); `down --purge` also deletes data
#   scripts/stack.sh status   one line per service; exit 0 only when all are healthy
#   scripts/stack.sh env      print the environment variables that point orion-etl at this stack
#   scripts/stack.sh restart-service postgres|kafka|connect   clean stop + start (reliability tests)
#   scripts/stack.sh kill-service postgres|kafka              hard kill (immediate / -9) + start
#
# Ports and paths are configurable through the environment (defaults in parentheses):
#   ORION_STACK_HOME (.stack in the repository)    ORION_STACK_PG_PORT (55432)
#   ORION_STACK_KAFKA_PORT (19092)                 ORION_STACK_CONTROLLER_PORT (19093)
#   ORION_STACK_CONNECT_PORT (18083)               ORION_STACK_TIMEOUT (180 seconds per service)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOME_DIR="${ORION_STACK_HOME:-$REPO/.stack}"
PG_PORT="${ORION_STACK_PG_PORT:-55432}"
KAFKA_PORT="${ORION_STACK_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${ORION_STACK_CONTROLLER_PORT:-19093}"
CONNECT_PORT="${ORION_STACK_CONNECT_PORT:-18083}"
TIMEOUT="${ORION_STACK_TIMEOUT:-180}"
PG_BIN="${ORION_STACK_PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_SUPERUSER_PASSWORD="${ORION_STACK_PG_PASSWORD:-orion-stack-pw}"

LIB="$HOME_DIR/lib"
LOGS="$HOME_DIR/logs"
RUN="$HOME_DIR/run"
PGDATA="$HOME_DIR/pgdata"
KAFKA_DATA="$HOME_DIR/kafka-data"
CONF="$HOME_DIR/conf"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

as_postgres() {
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# ---------------------------------------------------------------- setup (downloads)
setup() {
  command -v java >/dev/null || die "java (17+) is required"
  command -v mvn >/dev/null || die "maven is required"
  [ -x "$PG_BIN/initdb" ] || die "PostgreSQL 15 server binaries not found in $PG_BIN"
  mkdir -p "$LIB" "$LOGS" "$RUN" "$CONF"
  local stamp="$LIB/.resolved-$(cat "$REPO"/scripts/stack/pom-*.xml | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ]; then return 0; fi
  log "resolving Apache Kafka + Kafka Connect from Maven Central (cached in ~/.m2)"
  rm -rf "$LIB/kafka" "$LIB/plugins"
  mvn -q -B -f "$REPO/scripts/stack/pom-kafka.xml" dependency:copy-dependencies \
    -DoutputDirectory="$LIB/kafka" -DincludeScope=runtime >"$LOGS/maven.log" 2>&1 \
    || { tail -20 "$LOGS/maven.log" >&2; die "maven could not resolve Kafka (see $LOGS/maven.log)"; }
  log "resolving the Debezium PostgreSQL connector plugin"
  mvn -q -B -f "$REPO/scripts/stack/pom-debezium.xml" dependency:copy-dependencies \
    -DoutputDirectory="$LIB/plugins/debezium-connector-postgres" -DincludeScope=runtime >>"$LOGS/maven.log" 2>&1 \
    || { tail -20 "$LOGS/maven.log" >&2; die "maven could not resolve Debezium (see $LOGS/maven.log)"; }
  rm -f "$LIB"/.resolved-*
  touch "$stamp"
}

# ---------------------------------------------------------------- health probes
pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
kafka_ready() {
  port_open "$KAFKA_PORT" || return 1
  java -cp "$LIB/kafka/*" -Dlog4j2.configurationFile="$CONF/log4j2-tools.properties" \
    org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    >/dev/null 2>&1
}
connect_ready() {
  curl -fsS "http://127.0.0.1:$CONNECT_PORT/connector-plugins" 2>/dev/null \
    | grep -q 'io.debezium.connector.postgresql.PostgresConnector'
}
pid_alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

wait_for() {  # name probe-function
  local name="$1" probe="$2" waited=0
  until "$probe"; do
    if [ "$waited" -ge "$TIMEOUT" ]; then
      log "$name did not become healthy within ${TIMEOUT}s; last log lines:"
      tail -30 "$LOGS/$name.log" >&2 || true
      die "$name failed to start"
    fi
    if [ "$name" != postgres ] && ! pid_alive "$name"; then
      tail -30 "$LOGS/$name.log" >&2 || true
      die "$name exited during start-up (log: $LOGS/$name.log)"
    fi
    sleep 1; waited=$((waited + 1))
  done
  log "$name healthy"
}

# ---------------------------------------------------------------- PostgreSQL
write_log4j() {
  cat >"$CONF/log4j2.properties" <<'EOF'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRefs = stdout
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
EOF
  cat >"$CONF/log4j2-tools.properties" <<'EOF'
status = error
rootLogger.level = ERROR
EOF
}

start_postgres() {
  if pg_ready; then log "postgres already running on $PG_PORT"; return 0; fi
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    log "initdb $PGDATA"
    mkdir -p "$PGDATA"
    local pwfile="$HOME_DIR/.pgpass-init"
    printf '%s\n' "$PG_SUPERUSER_PASSWORD" >"$pwfile"
    if [ "$(id -u)" = "0" ]; then chown -R postgres:postgres "$PGDATA" "$pwfile"; fi
    chmod 700 "$PGDATA"
    as_postgres "$PG_BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$pwfile" -A scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$LOGS/initdb.log" 2>&1 || { cat "$LOGS/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
    cat >>"$PGDATA/postgresql.conf" <<EOF
# orion-etl local stack
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$RUN'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_connections = 200
shared_buffers = 512MB
max_wal_size = 4GB
fsync = on
synchronous_commit = on
log_min_messages = warning
EOF
    cat >"$PGDATA/pg_hba.conf" <<'EOF'
local   all          all                   scram-sha-256
host    all          all   127.0.0.1/32    scram-sha-256
host    replication  all   127.0.0.1/32    scram-sha-256
EOF
  fi
  mkdir -p "$RUN"; touch "$LOGS/postgres.log"
  if [ "$(id -u)" = "0" ]; then chown postgres:postgres "$RUN" "$LOGS/postgres.log"; chmod 755 "$RUN"; fi
  as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$LOGS/postgres.log" -w -t "$TIMEOUT" start >/dev/null \
    || { tail -20 "$LOGS/postgres.log" >&2; die "postgres failed to start"; }
  wait_for postgres pg_ready
}

stop_postgres() {
  if [ -f "$PGDATA/postmaster.pid" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
    log "postgres stopped"
  fi
}

# ---------------------------------------------------------------- Kafka (KRaft)
start_kafka() {
  if pid_alive kafka && port_open "$KAFKA_PORT"; then log "kafka already running on $KAFKA_PORT"; return 0; fi
  cat >"$CONF/kafka.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=10485760
log.retention.hours=168
EOF
  if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
    mkdir -p "$KAFKA_DATA"
    local cluster_id
    cluster_id="$(java -cp "$LIB/kafka/*" -Dlog4j2.configurationFile="$CONF/log4j2-tools.properties" \
      kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    java -cp "$LIB/kafka/*" -Dlog4j2.configurationFile="$CONF/log4j2-tools.properties" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$CONF/kafka.properties" \
      >"$LOGS/kafka-format.log" 2>&1 || { cat "$LOGS/kafka-format.log" >&2; die "kafka storage format failed"; }
  fi
  nohup java -Xms256m -Xmx1g -XX:+UseG1GC -cp "$LIB/kafka/*" \
    -Dlog4j2.configurationFile="$CONF/log4j2.properties" \
    kafka.Kafka "$CONF/kafka.properties" >"$LOGS/kafka.log" 2>&1 &
  echo $! >"$RUN/kafka.pid"
  wait_for kafka kafka_ready
}

# ---------------------------------------------------------------- Kafka Connect + Debezium
start_connect() {
  if pid_alive connect && connect_ready; then log "connect already running on $CONNECT_PORT"; return 0; fi
  cat >"$CONF/connect.properties" <<EOF
bootstrap.servers=127.0.0.1:$KAFKA_PORT
group.id=orion-connect
listeners=http://127.0.0.1:$CONNECT_PORT
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$CONNECT_PORT
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=true
value.converter.schemas.enable=true
config.storage.topic=_orion_connect_configs
offset.storage.topic=_orion_connect_offsets
status.storage.topic=_orion_connect_status
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.flush.interval.ms=1000
plugin.path=$LIB/plugins
plugin.discovery=hybrid_warn
# Secrets can be passed by reference (\${env:VAR} / \${file:/path:key}) instead of inline.
config.providers=env,file
config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider
config.providers.file.class=org.apache.kafka.common.config.provider.FileConfigProvider
EOF
  nohup java -Xms256m -Xmx1g -XX:+UseG1GC -cp "$LIB/kafka/*" \
    -Dlog4j2.configurationFile="$CONF/log4j2.properties" \
    org.apache.kafka.connect.cli.ConnectDistributed "$CONF/connect.properties" >"$LOGS/connect.log" 2>&1 &
  echo $! >"$RUN/connect.pid"
  wait_for connect connect_ready
}

stop_java() {
  local name="$1"
  if pid_alive "$name"; then
    local pid; pid="$(cat "$RUN/$name.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    log "$name stopped"
  fi
  rm -f "$RUN/$name.pid"
}

# ---------------------------------------------------------------- databases for orion-etl
ensure_databases() {
  export PGPASSWORD="$PG_SUPERUSER_PASSWORD"
  local psql=(psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
  for db in orion_source orion_warehouse; do
    if [ "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
      "${psql[@]}" -c "CREATE DATABASE $db" && log "created database $db"
    fi
  done
}

print_env() {
  cat <<EOF
export ORION_ETL_SOURCE__HOST=127.0.0.1
export ORION_ETL_SOURCE__PORT=$PG_PORT
export ORION_ETL_WAREHOUSE__HOST=127.0.0.1
export ORION_ETL_WAREHOUSE__PORT=$PG_PORT
export ORION_ETL_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
export ORION_ETL_CONNECT__URL=http://127.0.0.1:$CONNECT_PORT
EOF
  if [ -n "${ORION_STACK_PG_PASSWORD:-}" ]; then
    printf 'export ORION_ETL_SOURCE__PASSWORD=%q\nexport ORION_ETL_WAREHOUSE__PASSWORD=%q\n' \
      "$PG_SUPERUSER_PASSWORD" "$PG_SUPERUSER_PASSWORD"
  fi
}

status() {
  local rc=0
  if pg_ready; then echo "postgres  up    127.0.0.1:$PG_PORT"; else echo "postgres  down  127.0.0.1:$PG_PORT"; rc=1; fi
  if pid_alive kafka && kafka_ready; then echo "kafka     up    127.0.0.1:$KAFKA_PORT"; else echo "kafka     down  127.0.0.1:$KAFKA_PORT"; rc=1; fi
  if pid_alive connect && connect_ready; then echo "connect   up    http://127.0.0.1:$CONNECT_PORT (Debezium PostgreSQL plugin loaded)"; else echo "connect   down  http://127.0.0.1:$CONNECT_PORT"; rc=1; fi
  echo "logs      $LOGS"
  return $rc
}

case "${1:-}" in
  setup) setup ;;
  up)
    setup; write_log4j
    start_postgres; ensure_databases
    start_kafka; start_connect
    status ;;
  down)
    stop_java connect; stop_java kafka; stop_postgres
    if [ "${2:-}" = "--purge" ]; then rm -rf "$PGDATA" "$KAFKA_DATA" "$RUN"; log "data purged"; fi ;;
  restart-service)  # used by reliability tests: restart one service in place
    case "${2:-}" in
      postgres) stop_postgres; start_postgres ;;
      kafka) stop_java kafka; start_kafka ;;
      connect) stop_java connect; start_connect ;;
      *) die "usage: $0 restart-service postgres|kafka|connect" ;;
    esac ;;
  kill-service)  # used by reliability tests: hard kill (no clean shutdown), then start again
    case "${2:-}" in
      postgres)
        if [ -f "$PGDATA/postmaster.pid" ]; then
          as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
          log "postgres killed (immediate shutdown)"
        fi
        start_postgres ;;
      kafka)
        if pid_alive kafka; then kill -9 "$(cat "$RUN/kafka.pid")" 2>/dev/null || true; log "kafka killed -9"; fi
        rm -f "$RUN/kafka.pid"
        for _ in $(seq 1 40); do port_open "$KAFKA_PORT" || break; sleep 0.25; done
        start_kafka ;;
      *) die "usage: $0 kill-service postgres|kafka" ;;
    esac ;;
  status) status ;;
  env) print_env ;;
  *) echo "usage: $0 setup|up|down [--purge]|status|env|restart-service NAME|kill-service NAME" >&2; exit 2 ;;
esac
