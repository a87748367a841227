#!/usr/bin/env bash
# Single-node Cassandra 5.0 for the local stack, run from the Maven Central jars of
# deploy/maven/cassandra/pom.xml (java -cp "lib/*" org.apache.cassandra.service.CassandraDaemon).
#
#   deploy/cassandra.sh fetch      copy the jars into $PE_RUN_PATH/lib/cassandra (once per pom version)
#   deploy/cassandra.sh start      fetch if needed, start, wait until a CQL query succeeds (180 s);
#                                  no-op when already running
#   deploy/cassandra.sh stop       SIGTERM (Cassandra drains itself), SIGKILL after 90 s; fine if stopped
#   deploy/cassandra.sh status     "running ..." (exit 0) or "stopped" (exit 1)
#   deploy/cassandra.sh logs [-f|N]  last N (200) lines of the node's log, or follow it
#
# Address = first of PE_CASSANDRA_HOSTS, ports PE_CASSANDRA_PORT (CQL) and PE_CASSANDRA_STORAGE_PORT,
# heap PE_CASSANDRA_HEAP_MB; everything under $PE_RUN_PATH/cassandra (conf/, data/,
# logs/cassandra.log, cassandra.pid). JMX is off (no port to collide with; nodetool does not work).
# Secure stack: PE_CASSANDRA_USERNAME set turns on PasswordAuthenticator (that role is created as a
# superuser with the password of PE_CASSANDRA_PASSWORD_FILE, generated if missing; the default
# cassandra/cassandra login is disabled), PE_CASSANDRA_SSL_CA_FILE set turns on TLS for clients (server
# certificate from that CA, created if missing); state under $PE_RUN_PATH/cassandra-secure.
# Values come from `python3 -m flink_jobs.config --shell`; override with PE_* environment variables.
# CASSANDRA_EXTRA_JVM_OPTS: extra JVM options appended at start (e.g. -XX:NativeMemoryTracking=summary).
# A node of a local multi-node ring (deploy/cassandra_ring.sh): CASSANDRA_NODE_DIR replaces the state
# directory, CASSANDRA_SEEDS (host:storage_port,...) the node's own address as the only seed, and
# CASSANDRA_INITIAL_TOKEN the single node's token 0.
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/lib.sh
source "$DEPLOY_DIR/lib.sh"
LOG_TAG=cassandra
pe_config

POM="$DEPLOY_DIR/maven/cassandra/pom.xml"
CONF_SRC="$DEPLOY_DIR/conf/cassandra"
LIB="$PE_RUN_PATH/lib/cassandra"
if [[ -n "$PE_CASSANDRA_USERNAME$PE_CASSANDRA_SSL_CA_FILE" ]]; then
    SECURE=1 DIR="$PE_RUN_PATH/cassandra-secure"
else
    SECURE=0 DIR="$PE_RUN_PATH/cassandra"
fi
DIR="${CASSANDRA_NODE_DIR:-$DIR}"
CONF="$DIR/conf/cassandra.yaml"
DATA="$DIR/data"
PIDFILE="$DIR/cassandra.pid"
LOGFILE="$DIR/logs/cassandra.log"
HOST="$(host_of "$PE_CASSANDRA_HOSTS")"
PORT="$PE_CASSANDRA_PORT"
STORAGE_PORT="$PE_CASSANDRA_STORAGE_PORT"
SEEDS="${CASSANDRA_SEEDS:-$HOST:$STORAGE_PORT}"
INITIAL_TOKEN="${CASSANDRA_INITIAL_TOKEN:-0}"
HEAP_MB="$PE_CASSANDRA_HEAP_MB"
START_TIMEOUT_S=180
STOP_TIMEOUT_S=90

fetch() {
    mvn_fetch "$POM" "$LIB" cassandra
}

jvm_opts() {
    local jamm
    # The distribution's options file, without comments and blank lines.
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$CONF_SRC/jvm17-server.options"
    printf '%s\n' \
        "-Xms${HEAP_MB}m" "-Xmx${HEAP_MB}m" \
        "-XX:HeapDumpPath=$DIR/logs" \
        "-XX:ErrorFile=$DIR/logs/hs_err_pid%p.log" \
        "-Djava.io.tmpdir=$DIR/tmp" \
        "-Dcassandra.config=file://$CONF" \
        "-Dcassandra.storagedir=$DATA" \
        "-Dcassandra.logdir=$DIR/logs" \
        "-Dcassandra.triggers_dir=$DIR/triggers" \
        "-Dlogback.configurationFile=$CONF_SRC/logback.xml" \
        -Dcassandra-foreground=yes \
        -Dcassandra.skip_wait_for_gossip_to_settle=0 \
        -Dcassandra.ring_delay_ms=1000 \
        -Dcassandra.superuser_setup_delay_ms=0
    # As bin/cassandra does: jamm as agent, so memtable/cache sizes are measured, not guessed.
    jamm="$(find "$LIB" -maxdepth 1 -name 'jamm-*.jar' | head -n 1)"
    if [[ -n "$jamm" ]]; then
        printf '%s\n' "-javaagent:$jamm"
    fi
}

render_config() {
    mkdir -p "$DIR/conf" "$DIR/logs" "$DIR/tmp" "$DIR/triggers" "$DATA"
    chmod 700 "$DIR/conf"
    local auth=AllowAllAuthenticator tls="# client connections: plaintext" ca keystore="$DIR/conf/server.p12"
    if [[ -n "$PE_CASSANDRA_USERNAME" ]]; then
        auth=PasswordAuthenticator
        read_secret_ref "$PE_CASSANDRA_PASSWORD_FILE" >/dev/null  # generates a missing password file
    fi
    if [[ -n "$PE_CASSANDRA_SSL_CA_FILE" ]]; then
        ca="$(abs_path "$PE_CASSANDRA_SSL_CA_FILE")"
        ensure_ca "$ca"
        [[ -s "$keystore" ]] || server_keystore "$ca" "$HOST" "$keystore" "$DIR/conf/keystore-password"
        # optional: false -> the native port refuses plaintext clients
        tls="$(printf '%s\n' "client_encryption_options:" "  enabled: true" "  optional: false" \
            "  keystore: $keystore" "  keystore_password: $(<"$DIR/conf/keystore-password")" \
            "  store_type: PKCS12" "  require_client_auth: false")"
    fi
    (umask 077 && render_template "$CONF_SRC/cassandra.yaml.template" "$CONF" \
        "HOST=$HOST" "SEEDS=$SEEDS" "INITIAL_TOKEN=$INITIAL_TOKEN" "NATIVE_PORT=$PORT" "STORAGE_PORT=$STORAGE_PORT" "DATA_DIR=$DATA" \
        "AUTHENTICATOR=$auth" "CLIENT_ENCRYPTION=$tls")
}

# `SELECT release_version FROM system.local` through the project's cassandra-driver; without the
# virtual environment, fall back to Cassandra's own "listening for CQL clients" log line.
cql_ok() {
    if ((SECURE)); then
        # the project's driver settings (login, TLS); creates the job's role on the first start
        (cd "$PE_ROOT" && "$PE_VENV_PYTHON" -m tools.secure_stack cassandra-ready 2>/dev/null)
    elif [[ -x "$PE_VENV_PYTHON" ]] && "$PE_VENV_PYTHON" -c 'import cassandra' 2>/dev/null; then
        "$PE_VENV_PYTHON" - "$HOST" "$PORT" <<'PY' 2>/dev/null
import sys
from cassandra.cluster import Cluster

cluster = Cluster([sys.argv[1]], port=int(sys.argv[2]), connect_timeout=5,
                  control_connection_timeout=5)
try:
    row = cluster.connect().execute("SELECT release_version FROM system.local", timeout=5).one()
    print(row.release_version)
finally:
    cluster.shutdown()
PY
    else
        grep -q 'Starting listening for CQL clients' "$LOGFILE" 2>/dev/null
    fi
}

healthy() {
    port_open "$HOST" "$PORT" && cql_ok >/dev/null
}

# Wait (up to the rest of START_TIMEOUT_S since $1) for the CQL port, then for a CQL answer.
wait_healthy() {
    local t0="$1" left version
    left=$((START_TIMEOUT_S - (SECONDS - t0)))
    wait_for_port "$HOST" "$PORT" "$((left > 1 ? left : 1))" cassandra "$LOGFILE" "$PIDFILE" \
        || return 1
    until version="$(cql_ok)"; do
        if ! pid_alive "$PIDFILE"; then
            log "ERROR: cassandra exited during startup"
            log_tail "$LOGFILE" 40
            return 1
        fi
        if ((SECONDS - t0 >= START_TIMEOUT_S)); then
            log "ERROR: cassandra listens on $HOST:$PORT but answered no CQL query within ${START_TIMEOUT_S}s"
            log_tail "$LOGFILE" 40
            return 1
        fi
        sleep 1
    done
    [[ -z "$version" ]] || log "release_version $version"
}

start() {
    start_jvm_server cassandra "$PORT $STORAGE_PORT" "${CASSANDRA_EXTRA_JVM_OPTS:-}" \
        "storage $STORAGE_PORT, heap ${HEAP_MB} MiB, data in $DATA" org.apache.cassandra.service.CassandraDaemon
}

status() {
    local pid
    if pid="$(pid_of "$PIDFILE")"; then
        if port_open "$HOST" "$PORT"; then
            echo "cassandra: running (pid $pid, $HOST:$PORT, rss $(rss_mib "$pid") MiB)"
            return 0
        fi
        echo "cassandra: process $pid alive but $HOST:$PORT not listening (starting or failing)"
        return 1
    fi
    echo "cassandra: stopped"
    return 1
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    fetch) fetch ;;
    start) start ;;
    stop) stop_pidfile "$PIDFILE" cassandra "$STOP_TIMEOUT_S" ;;
    status) status ;;
    logs) show_logs "$LOGFILE" "$@" ;;
    *) usage ;;
esac
