# The front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
GLUE_JAR := jvm/target/profile-engine-glue-0.1.0.jar
# a config file (PE_CONFIG_FILE) needs PyYAML: the venv's python once it exists
CONF_PY := $(if $(and $(PE_CONFIG_FILE),$(wildcard $(PY))),$(PY),python3)
RUN := $(shell $(CONF_PY) -m flink_jobs.config --shell | sed -n 's/^export PE_RUN_PATH=//p')
# an invalid configuration leaves RUN empty: never let `rm` run on paths under /
NEED_RUN = @test -n "$(RUN)" || { echo "the configuration is invalid: $(CONF_PY) -m flink_jobs.config --check" >&2; exit 1; }
PYTEST_ARGS ?=
BENCH_ARGS ?=

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

venv: $(VENV_STAMP) ## create .venv from the pinned requirements (one resolver run)
$(VENV_STAMP): requirements.txt requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q -r requirements.txt -c requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

jars: $(RUN)/lib/flink/.built ## build the JVM glue and fetch the Kafka connector (mvn, cached in ~/.m2)
$(RUN)/lib/flink/.built: jvm/pom.xml $(shell find jvm/src -name '*.java')
	$(NEED_RUN)
	cd jvm && mvn -q -B package
	mkdir -p $(RUN)/lib/flink && rm -f $(RUN)/lib/flink/*.jar
	cp $(GLUE_JAR) jvm/target/lib/*.jar $(RUN)/lib/flink/
	touch $@

up: venv jars ## start Kafka, Cassandra and Flink (web UI on :8081), create topics and tables
	bash deploy/stack.sh up

down: ## stop everything the stack started (data stays in the run dir)
	bash deploy/stack.sh down

clean: down ## stop and delete all runtime state (.run, artifacts)
	$(NEED_RUN)
	rm -rf $(RUN) artifacts

monitor: up ## start Prometheus on the stack's address (:9090; installs Debian's package as root if missing)
	bash deploy/prometheus.sh start

model: venv ## train, evaluate and export the ONNX model if none is present
	$(PY) -m model_export.train --if-missing

train: venv ## retrain the model (writes artifacts/: ONNX, model card, plots)
	$(PY) -m model_export.train

submit: up model ## (re)submit the profile job to the local cluster
	$(PY) -m flink_jobs.submit start --replace

demo: ## ONE COMMAND: set up, start the stack, train, submit the job, replay real data, show results
	bash deploy/demo.sh

test: ## ONE COMMAND: set up, run unit + integration tests against real Kafka/Cassandra/Flink, stop
	bash deploy/test.sh $(PYTEST_ARGS)

bench: up model ## benchmark: this vs the previous version, JVM floor, Python ceiling; latency (~35 min; bench/results/)
	$(PY) -m bench.bench_pipeline $(BENCH_ARGS)

ring-check: venv jars ## opt-in: a local 3-node Cassandra ring, the sink's token-aware routing checked on it, ring stopped (~4 min)
	bash deploy/cassandra_ring.sh up
	set -o pipefail; $(PY) -m tests.integration.test_cassandra_routing --ring | tee $(RUN)/ring-check.log; \
	rc=$$?; bash deploy/cassandra_ring.sh down; exit $$rc

unit: venv ## unit tests only (no servers)
	$(PY) -m pytest -q tests/unit

lint: venv ## ruff
	$(PY) -m ruff check .

.PHONY: help venv jars up down clean monitor model train submit demo test bench ring-check unit lint
