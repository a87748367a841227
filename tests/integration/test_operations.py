"""Operations as commands, on the real cluster: a user's file replayed with `tools.replay --file` (a bad line
reported and skipped), then `flink_jobs.submit start`, `stop --savepoint`, `start --from-savepoint` and
`rescale 2`, each run as a user runs it (a subprocess, settings from a YAML --config file) and each checked
for what it prints. Events arrive between the steps; at the end every event has exactly one prediction
and every profile equals the offline replay, so no step lost or doubled state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flink_jobs import submit
from flink_jobs.config import ROOT, Config
from tools import replay
from tools.kafka_io import AvroCodec, collect
from udfs import schemas
from udfs.profile import Event

from .conftest import isolated
from .drills import assert_exact, decode, offline

PART = 400  # events per step; 3 steps
OVERRIDES = ("topic_events", "topic_predictions", "topic_dlq", "topic_late", "topic_models", "topic_shadow_scores",
             "consumer_group", "cassandra_keyspace", "checkpoint_interval_ms")


@pytest.fixture(scope="module")
def cfg() -> Iterator[Config]:
    with isolated() as c:
        yield c


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    """What one step leaves for the next (the tests run in file order, as the operations would)."""
    return {"published": []}


@pytest.fixture(scope="module")
def config_file(cfg: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's isolated settings as a --config file; the stack's address comes from PE_* env."""
    path = tmp_path_factory.mktemp("ops") / "profile-engine.yaml"
    path.write_text(yaml.safe_dump({k: getattr(cfg, k) for k in OVERRIDES}))
    return path


@pytest.fixture(scope="module")
def events(cfg: Config) -> list[Event]:
    return replay.load(cfg, "taobao-head", 3 * PART)


@pytest.fixture(scope="module", autouse=True)
def cancel_leftover(cfg: Config, state: dict[str, Any]) -> Iterator[None]:
    yield
    job_id = state.get("job")
    if job_id and submit.job_state(cfg, job_id) in ("RUNNING", "CREATED", "RESTARTING"):
        submit.cancel(cfg, job_id)


def run(module: str, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout_s)


def printed(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """The `key: value` lines a submit command prints."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def predictions(cfg: Config, n: int) -> list[dict[str, Any]]:
    msgs = collect(cfg, cfg.topic_predictions, n, timeout_s=300, settle_s=3)
    return decode(msgs, schemas.PREDICTION)


def assert_savepoint(path: str) -> None:
    local = Path(path.removeprefix("file:").removeprefix("//"))
    assert (local / "_metadata").is_file(), f"no savepoint at {path}"


def test_replay_file_publishes_the_good_lines_and_reports_the_bad_one(cfg, config_file, events, state, tmp_path):
    part = events[:PART]
    path = tmp_path / "my-events.jsonl"
    lines = [json.dumps(e._asdict()) for e in part]
    # line 101 is broken: a negative price (the schema's x-min is 0)
    lines.insert(100, json.dumps({**part[0]._asdict(), "event_id": "bad-price", "price": -3.0}))
    path.write_text("\n".join(lines) + "\n")
    proc = run("tools.replay", "--file", str(path), "--no-progress", "--config", str(config_file))
    assert proc.returncode == 1, proc.stderr  # a line was skipped
    assert f"{path}:101: skipped: price=-3.0 below the minimum 0" in proc.stderr
    assert f"{PART + 1} records, {PART} replayed to {cfg.topic_events}, 1 bad lines skipped" in proc.stdout
    codec = AvroCodec(schemas.EVENT)
    got = [codec.decode(m.value()) for m in collect(cfg, cfg.topic_events, PART, timeout_s=60, settle_s=2)]
    assert sorted(g["event_id"] for g in got) == sorted(e.event_id for e in part)
    # timestamp-millis decodes to a datetime
    assert {g["event_id"]: round(g["event_time"].timestamp() * 1000) for g in got} == {
        e.event_id: e.event_time for e in part
    }
    state["published"] += part


def test_start_prints_the_job_and_its_link(cfg, config_file, state):
    out = printed(run("flink_jobs.submit", "start", "--config", str(config_file)))
    job_id = out["job id"]
    state["job"] = job_id
    assert out["web UI"] == f"{cfg.flink_rest_url}/#/job/running/{job_id}/overview" and out["parallelism"] == "1"
    assert submit.job_state(cfg, job_id) == "RUNNING"
    assert len(predictions(cfg, PART)) == PART
    # a second start would read the same topics twice: refused
    again = run("flink_jobs.submit", "start", "--config", str(config_file))
    assert again.returncode == 2 and f"already runs ({job_id})" in again.stderr


def test_stop_with_savepoint_prints_the_savepoint(cfg, config_file, state):
    job_id = state["job"]
    out = printed(run("flink_jobs.submit", "stop", "--savepoint", "--job-id", job_id, "--config", str(config_file)))
    assert out["job id"] == job_id and out["state"] == "FINISHED"
    assert out["web UI"] == f"{cfg.flink_rest_url}/#/job/completed/{job_id}/overview"
    assert_savepoint(out["savepoint"])
    state["savepoint"] = out["savepoint"]


def test_start_from_savepoint_continues_the_state(cfg, config_file, events, state):
    part = events[PART:2 * PART]
    replay.publish(cfg, part, progress=False)  # arrives while no job runs
    state["published"] += part
    out = printed(run("flink_jobs.submit", "start", "--from-savepoint", state["savepoint"],
                      "--config", str(config_file)))
    assert out["savepoint"] == state["savepoint"] and out["job id"] != state["job"]
    state["job"] = out["job id"]
    assert submit.job_state(cfg, out["job id"]) == "RUNNING"
    assert len(predictions(cfg, 2 * PART)) == 2 * PART


def test_rescale_restarts_from_a_savepoint_at_the_new_parallelism(cfg, config_file, events, state):
    part = events[2 * PART:]
    old = state["job"]
    out = printed(run("flink_jobs.submit", "rescale", "2", "--job-id", old, "--config", str(config_file)))
    assert out["stopped job"] == old and out["parallelism"] == "1 -> 2"
    assert_savepoint(out["savepoint"])
    new = out["job id"]
    state["job"] = new
    assert out["web UI"] == f"{cfg.flink_rest_url}/#/job/running/{new}/overview"
    # every vertex at 2 but the models source and the control fan-out: one sender, by design (with
    # the popularity stage as a second input the fan-out is a vertex of its own)
    vertices = {v["name"]: v["parallelism"] for v in submit.rest(cfg, f"/jobs/{new}")["vertices"]}
    single = [n for n in vertices if "control fan-out" in n or cfg.topic_models in n]
    assert {p for name, p in vertices.items() if name not in single} == {2}, vertices
    assert any("control fan-out" in n for n in single) and {vertices[n] for n in single} == {1}, vertices
    replay.publish(cfg, part, progress=False)
    state["published"] += part
    # exactly one prediction per event over all three jobs, and profiles as if nothing had stopped
    preds = predictions(cfg, 3 * PART)
    assert_exact(cfg, offline(cfg, state["published"]), preds)


def test_status_prints_state_parallelism_and_counters(cfg, config_file, state):
    deadline = time.monotonic() + 60
    while True:
        out = printed(run("flink_jobs.submit", "status", "--job-id", state["job"], "--config", str(config_file)))
        # the counters restart with each job: the rescaled one applied the last part (the REST API's
        # metric values trail by a few seconds)
        if float(out.get("metric events_applied", -1)) == PART or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert out["job id"] == state["job"] and out["state"] == "RUNNING" and out["parallelism"] == "2"
    assert float(out["metric events_applied"]) == PART, out


def test_rescale_beyond_the_cluster_is_refused_before_stopping(cfg, config_file, state):
    slots = submit.cluster_slots(cfg)
    proc = run("flink_jobs.submit", "rescale", str(slots + 1), "--job-id", state["job"], "--config", str(config_file))
    assert proc.returncode == 2 and f"the cluster has {slots}" in proc.stderr
    assert submit.job_state(cfg, state["job"]) == "RUNNING"
