#!/usr/bin/env bash
# Flink standalone session cluster (one JobManager with the web UI, PE_TASKMANAGERS TaskManagers), run from the
# runtime that the PyPI apache-flink wheel ships ($FLINK_HOME = site-packages/pyflink).
# Config, logs, checkpoints and temp files live under $PE_RUN_PATH/flink.
#
#   deploy/flink.sh start | stop | status | logs
#   deploy/flink.sh kill-tm     SIGKILL this cluster's TaskManager(s) (failure drills, tests)
#   deploy/flink.sh start-tm    start TaskManagers up to PE_TASKMANAGERS (at least one) and wait until
#                               they registered: a standalone cluster never replaces a lost one by itself
set -euo pipefail
LOG_TAG=flink
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pe_config

[[ -x "$PE_VENV_PYTHON" ]] || die "no $PE_VENV_PYTHON: run 'make venv' first"
FLINK_HOME="$("$PE_VENV_PYTHON" -c 'import os, pyflink; print(os.path.dirname(pyflink.__file__))')"
FLINK_CONF_DIR="$PE_RUN_PATH/flink/conf"
FLINK_LOG_DIR="$PE_RUN_PATH/flink/log"
# lib/ of the wheel plus flink-python from opt/: thread mode's native CPython bridge (pemja) must be
# loaded once by the parent classloader, or every job after the first fails to load it on Java 17.
FLINK_LIB_DIR="$PE_RUN_PATH/flink/lib"
export FLINK_HOME FLINK_CONF_DIR FLINK_LOG_DIR FLINK_LIB_DIR PE_PYTHON="$PE_VENV_PYTHON"

# 0 when the REST API answers and at least one TaskManager with free or used slots is registered.
healthy() {
    "$PE_VENV_PYTHON" - "$PE_FLINK_REST_URL" <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/overview", timeout=2) as r:
        o = json.load(r)
except Exception:
    sys.exit(1)
sys.exit(0 if o.get("taskmanagers", 0) >= 1 and o.get("slots-total", 0) >= 1 else 1)
PY
}

render() {
    mkdir -p "$FLINK_CONF_DIR" "$FLINK_LOG_DIR" "$PE_RUN_PATH/flink/tmp" "$PE_RUN_PATH/flink/upload" \
        "$PE_RUN_PATH/flink/checkpoints" "$PE_RUN_PATH/flink/savepoints"
    cp "$FLINK_HOME"/conf/log4j*.properties "$FLINK_CONF_DIR/"
    rm -rf "$FLINK_LIB_DIR" && mkdir -p "$FLINK_LIB_DIR"
    ln -s "$FLINK_HOME"/lib/*.jar "$FLINK_HOME"/opt/flink-python-*.jar "$FLINK_LIB_DIR/"
    "$PE_VENV_PYTHON" "$PE_ROOT/deploy/render.py" "$PE_ROOT/deploy/conf/flink/config.yaml.template" \
        "$FLINK_CONF_DIR/config.yaml"
    printf '%s:%s\n' "$PE_FLINK_REST_HOST" "$PE_FLINK_REST_PORT" >"$FLINK_CONF_DIR/masters"
    printf '%s\n' "$PE_FLINK_REST_HOST" >"$FLINK_CONF_DIR/workers"
}

# Thread mode imports the job's Python modules once per TaskManager process and keeps them, so a
# TaskManager started before a code change would run the old code: fingerprint what it runs, and the
# cluster config it would render now (a changed setting, e.g. PE_METRICS_PORT, needs a restart too).
code_hash() {
    {
        cd "$PE_ROOT" && cat flink_jobs/*.py udfs/*.py schemas/* deploy/taskmanager_python/*.py
        "$PE_VENV_PYTHON" "$PE_ROOT/deploy/render.py" "$PE_ROOT/deploy/conf/flink/config.yaml.template" /dev/stdout
    } | sha256sum | cut -c1-16
}

# TaskManagers' Prometheus reporter ports: the 8 after the JobManager's (PE_METRICS_PORT); each
# TaskManager takes the first free one, so a replacement (start-tm) finds one too.
tm_metrics_ports() {
    printf '%s-%s' "$((PE_METRICS_PORT + 1))" "$((PE_METRICS_PORT + 8))"
}

# The reporter binds the wildcard address: a listener on its port on any address (e.g. another stack's
# JobManager) makes it fail, and Flink then runs on without metrics. Refuse to start instead.
check_metrics_port() {
    local busy
    if command -v ss >/dev/null; then
        busy="$(ss -Hltn "sport = :$PE_METRICS_PORT" 2>/dev/null | head -1)"
    elif port_open 127.0.0.1 "$PE_METRICS_PORT" || port_open "$PE_FLINK_REST_HOST" "$PE_METRICS_PORT"; then
        busy="in use"
    fi
    [[ -z "$busy" ]] || die "port $PE_METRICS_PORT (PE_METRICS_PORT, the Flink Prometheus reporter) is in use ($busy);" \
        "the reporter binds every address: give this stack another PE_METRICS_PORT (e.g. $((PE_METRICS_PORT + 100)))"
}

# Thread mode embeds CPython (pemja) in the TaskManager JVM. It starts from the base interpreter
# that the venv was made from, so the venv's packages must be put on its path explicitly; the
# sitecustomize in deploy/taskmanager_python preloads native extensions (see its docstring). The
# checkout comes first: its packages, not whatever a shared venv's editable install points at.
launch_tm() {
    PYTHONPATH="$PE_ROOT/deploy/taskmanager_python:$PE_ROOT:$("$PE_VENV_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
        "$FLINK_HOME/bin/taskmanager.sh" start -D "metrics.reporter.prom.port=$(tm_metrics_ports)" >/dev/null
}

# Pids of this cluster's live TaskManagers (from Flink's pid file, checked against the config dir so
# a recycled pid or another cluster's TaskManager is never touched).
tm_pids() {
    local pidfile="$PE_RUN_PATH/flink/flink--taskexecutor.pid" p
    [[ -f "$pidfile" ]] || return 0
    while read -r p || [[ -n "$p" ]]; do  # Flink writes the last line without a newline
        [[ "$p" =~ ^[0-9]+$ && -r /proc/$p/cmdline ]] || continue
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$FLINK_CONF_DIR" && echo "$p"
    done <"$pidfile"
    return 0
}

# Ids of the TaskManagers registered at the JobManager, one per line.
tm_ids() {
    "$PE_VENV_PYTHON" - "$PE_FLINK_REST_URL" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/taskmanagers", timeout=5) as r:
    for tm in json.load(r)["taskmanagers"]:
        print(tm["id"])
PY
}

kill_tm() {
    local pids
    mapfile -t pids < <(tm_pids)
    ((${#pids[@]})) || die "no live TaskManager of this cluster"
    kill -KILL "${pids[@]}"
    log "killed TaskManager pid(s) ${pids[*]}"
}

# Starts TaskManagers until PE_TASKMANAGERS are alive (at least one): after kill-tm, the cluster's
# slots again.
start_tm() {
    local before deadline live missing i
    [[ -d "$FLINK_CONF_DIR" ]] || die "the cluster was never started here: deploy/flink.sh start"
    before="$(tm_ids)" || die "the JobManager does not answer at $PE_FLINK_REST_URL"
    live="$(tm_pids | wc -l)"
    missing=$((PE_TASKMANAGERS - live))
    ((missing >= 1)) || missing=1
    for ((i = 0; i < missing; i++)); do
        launch_tm
    done
    deadline=$((SECONDS + 120))
    # registered = an id the JobManager did not list before (a dead TaskManager may still be listed
    # until its heartbeat times out)
    until (($(comm -13 <(sort <<<"$before") <(tm_ids | sort) | grep -c .) >= missing)); do
        if ((SECONDS > deadline)); then
            log "ERROR: $missing new TaskManager(s) did not register within 120 s"
            for f in "$FLINK_LOG_DIR"/*taskexecutor*.log; do log_tail "$f" 30; done
            return 1
        fi
        sleep 0.5
    done
    log "$missing TaskManager(s) registered"
}

start() {
    if healthy; then
        if [[ "$(cat "$PE_RUN_PATH/flink/code.sha" 2>/dev/null)" == "$(code_hash)" ]]; then
            log "already running: $PE_FLINK_REST_URL"
            return 0
        fi
        log "the job's Python code changed since the TaskManager started; restarting Flink"
        stop
    elif pgrep -f "$FLINK_CONF_DIR" >/dev/null; then
        log "a half-alive cluster is around (e.g. a TaskManager died); restarting Flink"
        stop
    fi
    check_metrics_port
    render
    log "starting JobManager + $PE_TASKMANAGERS TaskManager(s) x $PE_TASKMANAGER_SLOTS slot(s) (FLINK_HOME=$FLINK_HOME)"
    # start-cluster.sh would ssh to the workers; start the daemons directly instead.
    "$FLINK_HOME/bin/jobmanager.sh" start >/dev/null
    local i
    for ((i = 0; i < PE_TASKMANAGERS; i++)); do
        launch_tm
    done
    local deadline=$((SECONDS + 120))
    until healthy && (($(tm_ids | wc -l) >= PE_TASKMANAGERS)); do
        if ((SECONDS > deadline)); then
            log "ERROR: Flink did not become healthy at $PE_FLINK_REST_URL within 120 s"
            for f in "$FLINK_LOG_DIR"/*.log; do log_tail "$f" 30; done
            return 1
        fi
        sleep 1
    done
    code_hash >"$PE_RUN_PATH/flink/code.sha"
    log "healthy: web UI at $PE_FLINK_REST_URL, metrics at http://$PE_FLINK_REST_HOST:$PE_METRICS_PORT/metrics (JobManager)"
}

stop() {
    [[ -d "$FLINK_CONF_DIR" ]] || render
    "$FLINK_HOME/bin/taskmanager.sh" stop-all >/dev/null 2>&1 || true
    "$FLINK_HOME/bin/jobmanager.sh" stop-all >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 30))
    while pgrep -f "$FLINK_CONF_DIR" >/dev/null; do
        if ((SECONDS > deadline)); then
            log "killing leftover Flink processes"
            pkill -9 -f "$FLINK_CONF_DIR" || true
            break
        fi
        sleep 1
    done
    log "stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) if healthy; then echo "flink: running ($PE_FLINK_REST_URL)"; else echo "flink: stopped"; exit 1; fi ;;
    logs) for f in "$FLINK_LOG_DIR"/*.log; do log_tail "$f" "${2:-40}"; done ;;
    kill-tm) kill_tm ;;
    start-tm) start_tm ;;
    *) echo "usage: $0 start|stop|status|logs|kill-tm|start-tm" >&2; exit 2 ;;
esac
