"""Helpers of the failure drills (test_reliability.py): a live tap on the predictions topic, the
stack's deploy scripts, Flink REST probes, and the exact end-state check against the offline replay."""

from __future__ import annotations

import collections
import functools
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from flink_jobs import submit
from flink_jobs.cassandra_store import CassandraStore
from flink_jobs.config import ROOT, Config
from tools.kafka_io import AvroCodec, collect, consumer, end_offsets
from udfs import schemas
from udfs.engine import replay_batches
from udfs.prediction import PREDICTION_FIELDS, score_batch
from udfs.profile import Event, Outcome
from udfs.scorer import OnnxScorer
from udfs.segmenter import OnnxSegmenter

DEPLOY = ROOT / "deploy"


def deploy(script: str, *args: str, timeout_s: float = 300.0) -> float:
    """Run deploy/<script> with the same PE_* environment; returns its duration in seconds."""
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(DEPLOY / script), *args], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"deploy/{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.monotonic() - t0


class Tap:
    """Reads the predictions topic (read_committed) from the beginning in a background thread and
    remembers when each record arrived, so a test can wait for progress and time a recovery."""

    def __init__(self, cfg: Config, topic: str) -> None:
        self.messages: list[Any] = []
        self.arrivals: list[float] = []
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        # log_level 2: no line per refused reconnect while a drill has the broker down
        self._consumer = consumer(cfg, log_level=2)
        meta = self._consumer.list_topics(topic, timeout=10).topics[topic]
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for msg in self._consumer.consume(num_messages=5000, timeout=0.2):
                    if msg.error():
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            continue
                        # the broker is away during a broker drill: the client reconnects by itself
                        if msg.error().retriable() or msg.error().code() == KafkaError._TRANSPORT:
                            continue
                        raise RuntimeError(msg.error())
                    self.messages.append(msg)
                    self.arrivals.append(time.monotonic())
        except BaseException as exc:  # surfaced by wait()/close()
            self._error = exc

    @property
    def count(self) -> int:
        if self._error:
            raise self._error
        return len(self.messages)

    def wait(self, n: int, timeout_s: float, what: str = "") -> None:
        deadline = time.monotonic() + timeout_s
        while self.count < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count} of {n} predictions after {timeout_s:.0f} s {what}")
            time.sleep(0.25)

    def first_after(self, t: float) -> Optional[float]:
        return next((a for a in self.arrivals if a > t), None)

    def close(self, settle_s: float = 0.0) -> list[Any]:
        time.sleep(settle_s)  # catch surplus records (duplicates would show up here)
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
        if self._error:
            raise self._error
        return self.messages


def metric(cfg: Config, job_id: str, name: str) -> Optional[float]:
    """One of the job's own metrics, summed over subtasks (None while the job restarts and reports
    none)."""
    try:
        return submit.job_metrics(cfg, job_id).get(name)
    except Exception:  # noqa: BLE001 - the job may be restarting: no metrics then
        return None


def all_running(cfg: Config, job_id: str) -> bool:
    detail = submit.rest(cfg, f"/jobs/{job_id}")
    return detail["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in detail["vertices"])


def wait_recovered(cfg: Config, job_id: str, since: float, timeout_s: float = 300.0) -> tuple[float, bool]:
    """Wait until the job left RUNNING (or a vertex did) and every task runs again; returns the time
    when it did and whether an outage of the job was seen at all."""
    deadline = time.monotonic() + timeout_s
    saw_outage = False
    while time.monotonic() < deadline:
        try:
            running = all_running(cfg, job_id)
        except Exception:  # noqa: BLE001 - REST hiccup while the cluster recovers
            running = False
        if not running:
            saw_outage = True
            state = submit.job_state(cfg, job_id)
            if state in ("FAILED", "CANCELED", "FINISHED"):
                raise AssertionError(f"job {job_id} ended {state}: {submit.exceptions(cfg, job_id)}")
        elif saw_outage:
            return time.monotonic(), True
        time.sleep(0.25)
    raise TimeoutError(f"job {job_id} not running again {timeout_s:.0f} s after {since:.0f}")


def restored_checkpoint(cfg: Config, job_id: str) -> Optional[dict[str, Any]]:
    return (submit.rest(cfg, f"/jobs/{job_id}/checkpoints").get("latest") or {}).get("restored")


def kill_and_replace_taskmanager(cfg: Config, job_id: str) -> None:
    """SIGKILL the cluster's TaskManagers, start replacements, and wait until the job ran again from a
    checkpoint (a standalone cluster never replaces a TaskManager by itself)."""
    t_kill = time.monotonic()
    deploy("flink.sh", "kill-tm")
    deploy("flink.sh", "start-tm")
    wait_recovered(cfg, job_id, t_kill)
    assert restored_checkpoint(cfg, job_id) is not None, "the job did not restore from a checkpoint"


def exception_history(cfg: Config, job_id: str) -> list[dict[str, Any]]:
    return submit.rest(cfg, f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]


# --- the exact end state ---------------------------------------------------------------------------


@dataclass
class Expected:
    """The offline replay of what was published, the job's ground truth."""

    applied: list[Event]
    scores: dict[str, float]
    vectors: dict[str, list[float]]
    views: dict[str, dict[str, Any]]  # event_id -> the tags (lifecycle, value_tier) after it
    final_view: dict[str, dict[str, Any]]  # user -> profile view after the user's last event
    final_vector: dict[str, list[float]]
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    erased: set[str] = field(default_factory=set)  # ids of applied events whose user was erased later
    late: collections.Counter = field(default_factory=collections.Counter)  # event id -> times late
    duplicates: collections.Counter = field(default_factory=collections.Counter)  # event id -> copies


def offline(cfg: Config, published: Sequence[Event]) -> Expected:
    """The offline replay through the job's own batch engine (udfs.engine), with the real models."""
    scorer = OnnxScorer(str(cfg.model_file), provider="cpu")
    segmenter = OnnxSegmenter(str(cfg.segments_file), provider="cpu")
    outcomes_list, preds, rows, _ = replay_batches(
        list(published), functools.partial(score_batch, scorer, segmenter), cfg.profile_settings(),
        emit_features=True)
    by_id = {p["event_id"]: p for p in (dict(zip(PREDICTION_FIELDS, v, strict=True)) for v in preds)}
    applied, outcomes = [], collections.Counter(outcomes_list)
    late: collections.Counter = collections.Counter()
    duplicates: collections.Counter = collections.Counter()
    erased: set[str] = set()
    for ev, outcome in zip(published, outcomes_list, strict=True):
        if outcome is Outcome.APPLIED:
            applied.append(ev)
        elif outcome is Outcome.LATE:
            late[ev.event_id] += 1
        elif outcome is Outcome.DUPLICATE:
            duplicates[ev.event_id] += 1
        elif outcome is Outcome.ERASED:
            erased |= {e.event_id for e in applied if e.user_id == ev.user_id}
    return Expected(
        applied,
        scores={i: p["score"] for i, p in by_id.items()},
        vectors={i: list(p["features"]) for i, p in by_id.items()},
        views={i: {"lifecycle": p["lifecycle"], "value_tier": p["value_tier"]} for i, p in by_id.items()},
        final_view={u: r.view for u, r in rows.items()},
        final_vector={u: list(r.features) for u, r in rows.items()},
        outcomes=outcomes, erased=erased, late=late, duplicates=duplicates,
    )


def decode(msgs: Sequence[Any], avsc: str) -> list[dict[str, Any]]:
    codec = AvroCodec(avsc)
    return [codec.decode(m.value()) for m in msgs]


def side_topics(cfg: Config, settle_s: float = 3.0) -> tuple[list[dict], list[dict]]:
    """(dead letters, late events) the job wrote, read_committed."""
    dead = decode(collect(cfg, cfg.topic_dlq, 0, timeout_s=30, settle_s=settle_s), schemas.DEAD_LETTER)
    late = decode(collect(cfg, cfg.topic_late, 0, timeout_s=30, settle_s=settle_s), schemas.EVENT)
    return dead, late


def assert_exact(cfg: Config, expected: Expected, preds: Sequence[dict[str, Any]],
                 model_versions: Optional[Callable[[str], str]] = None) -> None:
    """Exactly one prediction per applied event, each equal to the offline replay's (features,
    score, tags), and every user's Cassandra profile and prediction rows equal to the replay's."""
    counts = collections.Counter(p["event_id"] for p in preds)
    dupes = [i for i, n in counts.items() if n > 1]
    assert not dupes, f"{len(dupes)} events predicted more than once, e.g. {dupes[:5]}"
    want = {e.event_id for e in expected.applied}
    missing = want - set(counts)
    assert not missing, f"{len(missing)} events without a prediction, e.g. {sorted(missing)[:5]}"
    assert set(counts) == want, f"unexpected predictions: {sorted(set(counts) - want)[:5]}"
    segmenter = OnnxSegmenter(str(cfg.segments_file), provider="cpu")
    worst = 0.0
    for p in preds:
        i = p["event_id"]
        worst = max(worst, abs(p["score"] - expected.scores[i]))
        view = expected.views[i]
        assert (p["lifecycle"], p["value_tier"]) == (view["lifecycle"], view["value_tier"]), i
        assert segmenter.segment_names[p["segment"]] == p["segment_name"], i
        if cfg.emit_features:
            assert np.array_equal(np.asarray(p["features"]), np.asarray(expected.vectors[i])), i
        if model_versions is not None:
            assert p["model_version"] == model_versions(i), i
    assert worst <= 1e-6, f"max |stream score - offline score| = {worst}"
    assert_cassandra_exact(cfg, expected)


def assert_profile_rows(
    store: CassandraStore, views: dict[str, dict[str, Any]], vectors: dict[str, list[float]]
) -> None:
    """Every user's Cassandra profile row holds the given profile view and feature vector."""
    for user, view in views.items():
        row = store.profile(user)
        assert row is not None, user
        for k, v in view.items():
            got = row[k]
            if isinstance(v, dict):
                assert dict(got or {}) == pytest.approx(v, abs=1e-9), (user, k)
            elif isinstance(v, float):
                assert got == pytest.approx(v, abs=1e-9), (user, k)
            else:
                assert got == v, (user, k)
        assert np.allclose(row["features"], vectors[user], atol=1e-9, rtol=0), user


def assert_cassandra_exact(cfg: Config, expected: Expected) -> None:
    store = CassandraStore(cfg)
    try:
        assert_profile_rows(store, expected.final_view, expected.final_vector)
        rows = store.session.execute(f"SELECT user_id, event_id FROM {cfg.cassandra_keyspace}.predictions",
                                     timeout=120)
        keys = collections.Counter((r.user_id, r.event_id) for r in rows)
        assert keys == collections.Counter(
            (e.user_id, e.event_id) for e in expected.applied if e.event_id not in expected.erased
        )
    finally:
        store.close()


def assert_routed_like_replay(expected: Expected, dead: Sequence[dict], late: Sequence[dict]) -> None:
    """Event by event: what the job sent to the late topic and (as duplicates) to the DLQ is exactly
    what the offline replay says is late or a duplicate. Lateness must not depend on timing."""
    codec = AvroCodec(schemas.EVENT)
    got_dupes = collections.Counter(codec.decode(d["payload"])["event_id"] for d in dead
                                    if d["reason"] == "duplicate_event")
    got_late = collections.Counter(e["event_id"] for e in late)
    wrong_late = (got_late - expected.late) + (expected.late - got_late)
    assert not wrong_late, (f"late topic differs from the replay for {sum(wrong_late.values())} events "
                            f"(job {sum(got_late.values())}, replay {sum(expected.late.values())}), "
                            f"e.g. {sorted(wrong_late)[:5]}")
    assert got_dupes == expected.duplicates, (sum(got_dupes.values()), sum(expected.duplicates.values()))


def tm_log_lines(cfg: Config, needle: str) -> int:
    """How many lines of this cluster's TaskManager logs (all of them, also of killed ones) contain
    ``needle``."""
    n = 0
    for f in Path(cfg.run_path / "flink" / "log").glob("*taskexecutor*.log*"):
        with open(f, encoding="utf-8", errors="replace") as fh:
            n += sum(needle in line for line in fh)
    return n


def consumed_all(cfg: Config) -> bool:
    """The job's consumer group has committed the end of every events partition (the KafkaSource
    commits on checkpoint completion, so everything read is in a completed checkpoint)."""
    ends = end_offsets(cfg, cfg.topic_events)
    c = consumer(cfg, group=cfg.consumer_group)  # no subscribe: never joins the group
    try:
        committed = c.committed([TopicPartition(cfg.topic_events, p) for p in ends], timeout=10)
    finally:
        c.close()
    return all(tp.offset >= ends[tp.partition] for tp in committed)
