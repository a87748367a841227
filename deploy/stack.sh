#!/usr/bin/env bash
# The whole local stack: Kafka (KRaft), Cassandra and the Flink session cluster, all on loopback,
# all state under the run dir; then the topics and tables of schemas/. With PE_PROMETHEUS=1 also a
# Prometheus scraping Flink with the alert rules (deploy/prometheus.sh; `make monitor` does the same).
# With PE_SCHEMA_REGISTRY=1 also the schema registry (deploy/registry.sh; event_format=confluent needs it).
#
#   deploy/stack.sh up | down | status
set -euo pipefail
LOG_TAG=stack
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/lib.sh
source "$here/lib.sh"
pe_config

up() {
    local t0=$SECONDS
    # Cassandra is the slow one: start it and Kafka side by side.
    bash "$here/cassandra.sh" start &
    local cass=$! registry=
    if [[ "${PE_SCHEMA_REGISTRY:-0}" == 1 ]]; then
        bash "$here/registry.sh" start &
        registry=$!
    fi
    bash "$here/kafka.sh" start
    bash "$here/flink.sh" start
    wait "$cass" || die "Cassandra did not start (bash deploy/cassandra.sh logs)"
    if [[ -n "$registry" ]]; then
        wait "$registry" || die "the schema registry did not start (bash deploy/registry.sh logs)"
    fi
    (cd "$PE_ROOT" && "$PE_VENV_PYTHON" -m tools.setup_stack)
    if [[ "${PE_PROMETHEUS:-0}" == 1 ]]; then
        bash "$here/prometheus.sh" start
    fi
    log "stack up in $((SECONDS - t0)) s: Kafka $PE_KAFKA_BOOTSTRAP, Cassandra $PE_CASSANDRA_HOSTS:$PE_CASSANDRA_PORT, Flink UI $PE_FLINK_REST_URL"
}

down() {
    local rc=0
    bash "$here/prometheus.sh" stop || rc=1
    bash "$here/registry.sh" stop || rc=1
    bash "$here/flink.sh" stop || rc=1
    bash "$here/kafka.sh" stop || rc=1
    bash "$here/cassandra.sh" stop || rc=1
    return $rc
}

status() {
    local rc=0
    bash "$here/kafka.sh" status || rc=1
    bash "$here/cassandra.sh" status || rc=1
    bash "$here/flink.sh" status || rc=1
    # optional: reported, never a failure
    bash "$here/prometheus.sh" status || true
    bash "$here/registry.sh" status || true
    return $rc
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
