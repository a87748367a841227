#!/usr/bin/env bash
# `make test`: set up, start the real stack, run unit + integration tests, stop what was started
# (also when a test fails). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
t0=$SECONDS
make -s venv jars
.venv/bin/python -m model_export.train --if-missing
started=0
cleanup() {
    if ((started)); then bash deploy/stack.sh down || true; fi
}
trap cleanup EXIT
started=1
# tests/integration/test_schema_registry.py needs the schema registry
PE_SCHEMA_REGISTRY="${PE_SCHEMA_REGISTRY:-1}" bash deploy/stack.sh up
.venv/bin/python -m pytest -ra tests "$@"
echo "make test: done in $((SECONDS - t0)) s"
