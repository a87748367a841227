#!/usr/bin/env bash
# Prometheus for the local stack: scrapes the Flink reporters (JobManager on PE_METRICS_PORT, TaskManagers
# on the 8 ports after it) with the alert rules of deploy/monitoring/alerts.yml; listens on
# PE_FLINK_REST_HOST:PE_PROMETHEUS_PORT; data under $PE_RUN_PATH/prometheus.
#
#   deploy/prometheus.sh install   Debian's prometheus package (ships promtool) unless both are on PATH;
#                                  needs root; the .deb files are kept in PE_APT_CACHE
#                                  (default ~/.cache/profile-engine/apt) for the next fresh machine
#   deploy/prometheus.sh start | stop | status | logs [-f]
#   deploy/prometheus.sh check     promtool check rules (alerts.yml) and check config (rendered)
#
# `make monitor` (or PE_PROMETHEUS=1 make up) installs and starts it.
set -euo pipefail
LOG_TAG=prometheus
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pe_config

DIR="$PE_RUN_PATH/prometheus"
PIDFILE="$DIR/prometheus.pid"
LOGFILE="$DIR/prometheus.log"
CONFIG="$DIR/prometheus.yml"
HOST="$PE_FLINK_REST_HOST"
PORT="$PE_PROMETHEUS_PORT"
URL="http://$HOST:$PORT"
APT_CACHE="${PE_APT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/profile-engine/apt}"

installed() {
    command -v prometheus >/dev/null && command -v promtool >/dev/null
}

install() {
    if installed; then
        log "installed: $(prometheus --version 2>&1 | head -1)"
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "prometheus is not installed and this is not root: run 'apt-get install prometheus' as root"
    command -v apt-get >/dev/null || die "no apt-get: install Prometheus 2.x (prometheus and promtool on PATH) by hand"
    mkdir -p "$APT_CACHE/partial"
    # The package's postinst would start a system Prometheus on 0.0.0.0:9090 where services can start;
    # a policy-rc.d that forbids it is put in place only for this install, and only if none exists.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    # Own archive dir: Debian images delete /var/cache/apt/archives/*.deb after each install, and a
    # cache that survives lets a fresh machine reuse them (the lists still come from apt-get update).
    local apt=(apt-get -y -q --no-install-recommends -o "Dir::Cache::Archives=$APT_CACHE")
    local rc=0
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install prometheus >"$DIR/install.log" 2>&1; then
        log "installing from the current package lists failed; apt-get update, then again"
        { apt-get -q update && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install prometheus; } >>"$DIR/install.log" 2>&1 \
            || rc=$?
    fi
    ((made_policy)) && rm -f "$policy"
    if ((rc)) || ! installed; then
        log_tail "$DIR/install.log" 30
        die "apt-get could not install prometheus (log: $DIR/install.log)"
    fi
    log "installed $(prometheus --version 2>&1 | head -1); .deb files kept in $APT_CACHE"
}

healthy() {
    "$PE_VENV_PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$URL/-/ready" \
        >/dev/null 2>&1
}

render() {
    mkdir -p "$DIR/data"
    (cd "$PE_ROOT" && "$PE_VENV_PYTHON" -m tools.monitoring render-prometheus --out "$CONFIG") \
        || die "could not render $CONFIG"
}

start() {
    mkdir -p "$DIR"
    install
    if pid_alive "$PIDFILE" && healthy; then
        log "already running: $URL"
        return 0
    fi
    render
    promtool check config "$CONFIG" >/dev/null || die "promtool rejects $CONFIG"
    rotate_log "$LOGFILE"
    launch_bg "$PIDFILE" "$LOGFILE" "$DIR" prometheus --config.file="$CONFIG" --storage.tsdb.path="$DIR/data" \
        --storage.tsdb.retention.time=2d --web.listen-address="$HOST:$PORT" --web.enable-lifecycle
    local deadline=$((SECONDS + 60))
    until healthy; do
        if ! pid_alive "$PIDFILE" || ((SECONDS > deadline)); then
            log_tail "$LOGFILE" 30
            die "prometheus did not become ready at $URL"
        fi
        sleep 0.5
    done
    log "ready: $URL (targets: $URL/targets, alerts: $URL/alerts)"
}

check() {
    install
    promtool check rules "$PE_ROOT/deploy/monitoring/alerts.yml"
    render
    promtool check config "$CONFIG"
}

case "${1:-}" in
    install) mkdir -p "$DIR" && install ;;
    start) start ;;
    stop) stop_pidfile "$PIDFILE" prometheus 30 ;;
    status) if pid_alive "$PIDFILE" && healthy; then echo "prometheus: running ($URL)"; else echo "prometheus: stopped"; exit 1; fi ;;
    logs) shift; show_logs "$LOGFILE" "$@" ;;
    check) check ;;
    *) echo "usage: $0 install|start|stop|status|logs|check" >&2; exit 2 ;;
esac
