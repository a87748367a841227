#!/usr/bin/env bash
# Single-node Kafka (KRaft: broker + controller in one JVM) for the local stack, run from the
# Maven Central jars of deploy/maven/kafka/pom.xml.
#
#   deploy/kafka.sh fetch      copy the jars into $PE_RUN_PATH/lib/kafka (once per pom version)
#   deploy/kafka.sh start      fetch if needed, format storage on first start, start, wait until a
#                              metadata request succeeds (60 s); no-op when already running
#   deploy/kafka.sh stop       SIGTERM (controlled shutdown), SIGKILL after 60 s; fine if stopped
#   deploy/kafka.sh status     "running ..." (exit 0) or "stopped" (exit 1)
#   deploy/kafka.sh logs [-f|N]  last N (200) lines of the broker log, or follow it
#
# Listener host:port = first entry of PE_KAFKA_BOOTSTRAP, controller port = PE_KAFKA_CONTROLLER_PORT,
# everything else under $PE_RUN_PATH/kafka (config/, data/, logs/kafka.log, kafka.pid, cluster.id).
# Secure stack: PE_KAFKA_SECURITY_PROTOCOL=SASL_SSL gives a SASL_SSL listener (SCRAM-SHA-512, TLS with
# a certificate of the CA at PE_KAFKA_SSL_CA_FILE, created if missing) and the SCRAM user
# PE_KAFKA_SASL_USERNAME with the password of PE_KAFKA_SASL_PASSWORD_FILE (generated if missing), state
# under $PE_RUN_PATH/kafka-secure. README "Security".
# Values come from `python3 -m flink_jobs.config --shell`; override with PE_* environment variables.
# KAFKA_EXTRA_JVM_OPTS: extra JVM options appended at start (e.g. -XX:NativeMemoryTracking=summary).
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/lib.sh
source "$DEPLOY_DIR/lib.sh"
LOG_TAG=kafka
pe_config

POM="$DEPLOY_DIR/maven/kafka/pom.xml"
TEMPLATE="$DEPLOY_DIR/conf/kafka/server.properties.template"
FEATURES="$DEPLOY_DIR/conf/kafka/features.properties"
LOG4J2_CONF="$DEPLOY_DIR/conf/kafka/log4j2.properties"
LIB="$PE_RUN_PATH/lib/kafka"
case "$PE_KAFKA_SECURITY_PROTOCOL" in
    PLAINTEXT) SECURE=0 DIR="$PE_RUN_PATH/kafka" ;;
    SASL_SSL) SECURE=1 DIR="$PE_RUN_PATH/kafka-secure" ;;
    *) die "the local broker runs PLAINTEXT or SASL_SSL, not $PE_KAFKA_SECURITY_PROTOCOL" ;;
esac
CONF="$DIR/config/server.properties"
DATA="$DIR/data"
PIDFILE="$DIR/kafka.pid"
LOGFILE="$DIR/logs/kafka.log"
HOST="$(host_of "$PE_KAFKA_BOOTSTRAP")"
PORT="$(port_of "$PE_KAFKA_BOOTSTRAP")"
CONTROLLER_PORT="$PE_KAFKA_CONTROLLER_PORT"
START_TIMEOUT_S=60
STOP_TIMEOUT_S=60
HEAP=512m

fetch() {
    mvn_fetch "$POM" "$LIB" kafka
}

jvm_opts() {
    printf '%s\n' \
        "-Xms$HEAP" "-Xmx$HEAP" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 \
        -Djava.awt.headless=true \
        "-XX:ErrorFile=$DIR/logs/hs_err_pid%p.log" \
        "-Djava.io.tmpdir=$DIR/tmp" \
        "-Dkafka.logs.dir=$DIR/logs" \
        "-Dlog4j2.configurationFile=$LOG4J2_CONF" \
        -Dlog4j2.shutdownHookEnabled=false
}

ADMIN_PASSWORD_FILE="$DIR/config/admin-password"
KEYSTORE="$DIR/config/server.p12"
KEYSTORE_PASSWORD_FILE="$DIR/config/keystore-password"

# The SASL_SSL listener's settings. The broker's own SCRAM user (inter-broker: the transaction
# coordinator sends its markers to the partition leader over it, even on one node) is "admin"; it
# trusts the local CA. Passwords land only in this mode-600 file, never on a command line.
security_block() {
    local ca
    ca="$(abs_path "$PE_KAFKA_SSL_CA_FILE")"
    ensure_ca "$ca"
    [[ -s "$KEYSTORE" ]] || server_keystore "$ca" "$HOST" "$KEYSTORE" "$KEYSTORE_PASSWORD_FILE"
    ensure_secret_file "$ADMIN_PASSWORD_FILE"
    printf '%s\n' \
        "sasl.enabled.mechanisms=SCRAM-SHA-512" \
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512" \
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$(<"$ADMIN_PASSWORD_FILE")\";" \
        "ssl.keystore.type=PKCS12" \
        "ssl.keystore.location=$KEYSTORE" \
        "ssl.keystore.password=$(<"$KEYSTORE_PASSWORD_FILE")" \
        "ssl.key.password=$(<"$KEYSTORE_PASSWORD_FILE")" \
        "ssl.truststore.type=PEM" \
        "ssl.truststore.location=$ca" \
        "ssl.client.auth=none" \
        "# controller listener: mutual TLS (SCRAM cannot authenticate brokers to controllers)" \
        "listener.name.controller.ssl.client.auth=required"
}

render_config() {
    local listener=PLAINTEXT controller=PLAINTEXT security="# plaintext"
    mkdir -p "$DIR/config" "$DIR/logs" "$DIR/tmp" "$DATA"
    chmod 700 "$DIR/config"
    if ((SECURE)); then
        listener=SASL_SSL controller=SSL
        security="$(security_block)"
    fi
    (umask 077 && render_template "$TEMPLATE" "$CONF" \
        "HOST=$HOST" "BROKER_PORT=$PORT" "CONTROLLER_PORT=$CONTROLLER_PORT" "LOG_DIRS=$DATA" \
        "LISTENER=$listener" "CONTROLLER_PROTOCOL=$controller" "SECURITY=$security")
}

# `--feature NAME=LEVEL` for every pinned feature of $FEATURES (comments and blank lines skipped).
feature_args() {
    local line
    while IFS= read -r line; do
        line="${line%%#*}"
        line="${line//[[:space:]]/}"
        if [[ -n "$line" ]]; then
            printf '%s\n' --feature "$line"
        fi
    done <"$FEATURES"
}

# Format the KRaft storage once, with a random cluster id kept in $DIR/cluster.id and the feature
# levels pinned in $FEATURES (a later broker upgrade then cannot change them silently).
format_storage() {
    local cluster_id java opts
    [[ -f "$DATA/meta.properties" ]] && return 0
    if [[ ! -s "$DIR/cluster.id" ]]; then
        # Kafka's Uuid text form: URL-safe base64 of 16 random bytes, no padding, not starting with '-'.
        python3 -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break' >"$DIR/cluster.id"
    fi
    cluster_id="$(<"$DIR/cluster.id")"
    java="$(java_bin)"
    mapfile -t opts < <(jvm_opts)
    log "formatting KRaft storage in $DATA (cluster id $cluster_id)"
    # SCRAM users go in with the format; main class and arguments come from a mode-600 java @argfile,
    # so the passwords are not on the command line (the launcher expands it, /proc shows "@file").
    local argfile="$DIR/config/format.args" admin_pw user_pw
    (umask 077 && printf '%s\n' kafka.tools.StorageTool format -t "$cluster_id" -c "$CONF" >"$argfile")
    feature_args >>"$argfile"
    if ((SECURE)); then
        admin_pw="$(<"$ADMIN_PASSWORD_FILE")"
        user_pw="$(read_secret_ref "$PE_KAFKA_SASL_PASSWORD_FILE")"
        [[ -n "$admin_pw" && -n "$user_pw" ]] || die "empty SCRAM password"
        printf '%s\n' --add-scram "SCRAM-SHA-512=[name=admin,password=$admin_pw]" \
            --add-scram "SCRAM-SHA-512=[name=$PE_KAFKA_SASL_USERNAME,password=$user_pw]" >>"$argfile"
    fi
    if ! "$java" "${opts[@]}" -cp "$LIB/*" "@$argfile" >>"$LOGFILE" 2>&1; then
        rm -f "$argfile"
        log_tail "$LOGFILE" 40
        die "formatting the Kafka storage failed"
    fi
    rm -f "$argfile"
}

# A metadata request through the project's Python client (the real health check); without the
# virtual environment, fall back to the broker's own "started" log line.
metadata_ok() {
    if [[ -x "$PE_VENV_PYTHON" ]] && "$PE_VENV_PYTHON" -c 'import confluent_kafka' 2>/dev/null; then
        # the project's client settings (TLS/SASL as configured): proves the secure listener works too
        (cd "$PE_ROOT" && "$PE_VENV_PYTHON" - "$HOST:$PORT" <<'PY' 2>/dev/null)
import sys
from flink_jobs.config import Config
from tools.kafka_io import admin

cfg = Config.from_env(overrides={"kafka_bootstrap": sys.argv[1]})
md = admin(cfg, **{"socket.timeout.ms": 3000}).list_topics(timeout=5)
sys.exit(0 if md.brokers and md.controller_id >= 0 else 1)
PY
    else
        grep -q 'Kafka Server started' "$LOGFILE" 2>/dev/null
    fi
}

healthy() {
    port_open "$HOST" "$PORT" && metadata_ok
}

# Wait (up to the rest of START_TIMEOUT_S since $1) for the port, then for a metadata answer.
wait_healthy() {
    local t0="$1" left
    left=$((START_TIMEOUT_S - (SECONDS - t0)))
    wait_for_port "$HOST" "$PORT" "$((left > 1 ? left : 1))" kafka "$LOGFILE" "$PIDFILE" || return 1
    until metadata_ok; do
        if ! pid_alive "$PIDFILE"; then
            log "ERROR: kafka exited during startup"
            log_tail "$LOGFILE" 40
            return 1
        fi
        if ((SECONDS - t0 >= START_TIMEOUT_S)); then
            log "ERROR: kafka listens on $HOST:$PORT but answered no metadata request within ${START_TIMEOUT_S}s"
            log_tail "$LOGFILE" 40
            return 1
        fi
        sleep 1
    done
}

before_launch() {
    format_storage
}

start() {
    start_jvm_server kafka "$PORT $CONTROLLER_PORT" "${KAFKA_EXTRA_JVM_OPTS:-}" \
        "controller $CONTROLLER_PORT, data in $DATA" kafka.Kafka "$CONF"
}

status() {
    local pid
    if pid="$(pid_of "$PIDFILE")"; then
        if port_open "$HOST" "$PORT"; then
            echo "kafka: running (pid $pid, $HOST:$PORT, rss $(rss_mib "$pid") MiB)"
            return 0
        fi
        echo "kafka: process $pid alive but $HOST:$PORT not listening (starting or failing)"
        return 1
    fi
    echo "kafka: stopped"
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
    stop) stop_pidfile "$PIDFILE" kafka "$STOP_TIMEOUT_S" ;;
    status) status ;;
    logs) show_logs "$LOGFILE" "$@" ;;
    *) usage ;;
esac
