#!/usr/bin/env bash
# Schema registry for the local stack: Apicurio Registry (Maven Central's io.apicurio:apicurio-registry-app
# distribution, version pinned below), in-memory storage, serving the Confluent-compatible API that
# producers with the Confluent serializers and the job's event_format=confluent use
# (PE_SCHEMA_REGISTRY_URL = http://HOST:PORT/apis/ccompat/v7). README "Schema registry".
#
#   deploy/registry.sh install   unpack the distribution into $PE_RUN_PATH/lib/registry (mvn; the
#                                archive stays cached in ~/.m2)
#   deploy/registry.sh start     install if needed, start, wait until /health/ready answers (120 s)
#   deploy/registry.sh stop | status | logs [-f|N]
#
# Listens on PE_SCHEMA_REGISTRY_HOST:PE_SCHEMA_REGISTRY_PORT; log under $PE_RUN_PATH/registry.
# In-memory storage: a restart forgets every schema and its id (producers re-register on their next
# send; the job caches the ids it already resolved). PE_SCHEMA_REGISTRY=1 make up starts it with the stack.
# REGISTRY_EXTRA_JVM_OPTS: extra JVM options appended at start.
set -euo pipefail
LOG_TAG=registry
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pe_config

# 2.6.x: the 3.x distributions need Java 21, the stack runs on Java 17.
VERSION=2.6.13.Final
ARTIFACT="io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all"
LIB="$PE_RUN_PATH/lib/registry"
DIR="$PE_RUN_PATH/registry"
PIDFILE="$DIR/registry.pid"
LOGFILE="$DIR/registry.log"
HOST="$PE_SCHEMA_REGISTRY_HOST"
PORT="$PE_SCHEMA_REGISTRY_PORT"
URL="http://$HOST:$PORT"
START_TIMEOUT_S=120
STOP_TIMEOUT_S=30

install() {
    local marker="$LIB/.complete" out
    if [[ -f "$marker" && "$(<"$marker")" == "$VERSION" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found: Maven is needed to fetch the registry"
    log "fetching $ARTIFACT with Maven into $LIB"
    rm -rf "$LIB"
    mkdir -p "$LIB"
    # run outside the repository: no project pom may take part; the plugin version is pinned
    if ! out="$(cd "$LIB" && mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.8.1:unpack \
        -Dartifact="$ARTIFACT" -DoutputDirectory="$LIB" 2>&1)"; then
        printf '%s\n' "$out" >&2
        rm -rf "$LIB"
        die "mvn could not fetch $ARTIFACT"
    fi
    [[ -f "$LIB/apicurio-registry-app-$VERSION-runner.jar" ]] || die "no runner jar in $LIB"
    printf '%s\n' "$VERSION" >"$marker"
    log "installed Apicurio Registry $VERSION ($(du -sh "$LIB" | cut -f1)) in $LIB"
}

healthy() {
    "$PE_VENV_PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$URL/health/ready" >/dev/null 2>&1
}

start() {
    local t0 pid java
    mkdir -p "$DIR"
    if pid="$(pid_of "$PIDFILE")" && healthy; then
        log "already running (pid $pid): $URL"
        return 0
    fi
    port_open "$HOST" "$PORT" && die "$HOST:$PORT is already in use by a process this script did not start"
    install
    rotate_log "$LOGFILE"
    java="$(java_bin)"
    local extra=()
    read -ra extra <<<"${REGISTRY_EXTRA_JVM_OPTS:-}"
    t0=$SECONDS
    # C1 only and a small heap: a test registry holds a handful of schemas; C1 halves the start time
    # on two cores. The DIR in a system property lets pid_of recognise the process as ours.
    launch_bg "$PIDFILE" "$LOGFILE" "$DIR" "$java" -Xms64m -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        "-Djava.io.tmpdir=$DIR" "-Dpe.run.dir=$DIR" \
        "-Dquarkus.http.host=$HOST" "-Dquarkus.http.port=$PORT" \
        -Dquarkus.log.console.color=false "${extra[@]}" \
        -jar "$LIB/apicurio-registry-app-$VERSION-runner.jar"
    until healthy; do
        if ! pid_alive "$PIDFILE"; then
            log_tail "$LOGFILE" 30
            die "the registry exited during start-up; log: $LOGFILE"
        fi
        if ((SECONDS - t0 > START_TIMEOUT_S)); then
            log_tail "$LOGFILE" 30
            stop_pidfile "$PIDFILE" registry "$STOP_TIMEOUT_S" || true
            die "the registry was not ready at $URL within ${START_TIMEOUT_S}s"
        fi
        sleep 0.5
    done
    pid="$(<"$PIDFILE")"
    log "ready after $((SECONDS - t0)) s (pid $pid, rss $(rss_mib "$pid") MiB): $PE_SCHEMA_REGISTRY_URL"
}

status() {
    local pid
    if pid="$(pid_of "$PIDFILE")" && healthy; then
        echo "registry: running (pid $pid, $URL, rss $(rss_mib "$pid") MiB)"
        return 0
    fi
    echo "registry: stopped"
    return 1
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    install) install ;;
    start) start ;;
    stop) stop_pidfile "$PIDFILE" registry "$STOP_TIMEOUT_S" ;;
    status) status ;;
    logs) show_logs "$LOGFILE" "$@" ;;
    *) echo "usage: $0 install|start|stop|status|logs" >&2; exit 2 ;;
esac
