#!/usr/bin/env bash
# A local multi-node Cassandra ring (one datacenter) for checks that one node cannot show: token-aware
# routing (`make ring-check`). Opt-in, never part of `make up`/`make test`: N JVMs cost ~0.6 GiB and a
# start of ~30 s each on a 2-core machine.
#
#   deploy/cassandra_ring.sh up       start the nodes one after the other (no-op for a running one)
#   deploy/cassandra_ring.sh down     stop them
#   deploy/cassandra_ring.sh status   one line per node
#   deploy/cassandra_ring.sh hosts    the contact points, comma separated
#
# Node i (0..N-1, N = CASSANDRA_RING_NODES, default 3) listens on the first address of
# PE_CASSANDRA_HOSTS with i added to its last octet (127.0.0.3 -> .3 .4 .5), on ports
# PE_CASSANDRA_PORT + 100 and PE_CASSANDRA_STORAGE_PORT + 100, so the stack's own node on the first
# address keeps its ports; heap CASSANDRA_RING_HEAP_MB (default 512); state in $PE_RUN_PATH/ring/node<i>.
# Tokens are evenly spaced (one per node), node 0 is the seed; deploy/cassandra.sh runs each node.
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/lib.sh
source "$DEPLOY_DIR/lib.sh"
LOG_TAG=ring
pe_config

NODES="${CASSANDRA_RING_NODES:-3}"
HEAP_MB="${CASSANDRA_RING_HEAP_MB:-512}"
BASE="$(host_of "$PE_CASSANDRA_HOSTS")"
PORT=$((PE_CASSANDRA_PORT + 100))
STORAGE_PORT=$((PE_CASSANDRA_STORAGE_PORT + 100))
[[ "$BASE" =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.([0-9]+)$ ]] || die "the ring needs an IPv4 first Cassandra host, not $BASE"
PREFIX="${BASH_REMATCH[1]}"
FIRST="${BASH_REMATCH[2]}"
((FIRST + NODES - 1 <= 254)) || die "$NODES nodes from $BASE run past .254"

host() { echo "$PREFIX.$((FIRST + $1))"; }

# Murmur3 tokens evenly spaced over [-2^63, 2^63): node i owns the i-th Nth of the ring
token() { python3 -c "print(-2**63 + $1 * 2**64 // $NODES)"; }

node() {
    local i="$1"
    shift
    PE_CASSANDRA_HOSTS="$(host "$i")" PE_CASSANDRA_PORT="$PORT" PE_CASSANDRA_STORAGE_PORT="$STORAGE_PORT" \
        PE_CASSANDRA_HEAP_MB="$HEAP_MB" CASSANDRA_NODE_DIR="$PE_RUN_PATH/ring/node$i" \
        CASSANDRA_SEEDS="$(host 0):$STORAGE_PORT" CASSANDRA_INITIAL_TOKEN="$(token "$i")" \
        bash "$DEPLOY_DIR/cassandra.sh" "$@"
}

hosts() {
    local i out=()
    for ((i = 0; i < NODES; i++)); do out+=("$(host "$i")"); done
    (IFS=,; echo "${out[*]}")
}

up() {
    local i t0=$SECONDS
    # one at a time: a node joins a ring whose seed already answers
    for ((i = 0; i < NODES; i++)); do node "$i" start; done
    log "ring of $NODES up in $((SECONDS - t0)) s: $(hosts) port $PORT"
}

down() {
    local i rc=0
    for ((i = NODES - 1; i >= 0; i--)); do node "$i" stop || rc=1; done
    return $rc
}

status() {
    local i rc=0
    for ((i = 0; i < NODES; i++)); do node "$i" status || rc=1; done
    return $rc
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    hosts) hosts ;;
    *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
