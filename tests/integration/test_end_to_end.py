"""Real Taobao events + broken records through real Kafka, Flink and Cassandra: every record is
accounted for, and the stream computes exactly what the offline replay of the same core computes."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from flink_jobs.cassandra_store import CassandraStore
from flink_jobs.config import Config
from tools import replay
from tools.kafka_io import AvroCodec, collect
from udfs import schemas
from udfs.features import feature_vector
from udfs.profile import replay as offline_replay
from udfs.scorer import OnnxScorer

from .bad_records import ANY, bad_records

N_EVENTS = 6000


@pytest.fixture(scope="module")
def outcome(isolated_cfg: Config, running_job: str):
    events = replay.load(isolated_cfg, "taobao-head", N_EVENTS)
    bad = bad_records()
    half = len(events) // 2
    # broken records in the middle of the stream, so the job must survive them and keep going
    replay.publish(isolated_cfg, events[:half], progress=False)
    replay.publish(isolated_cfg, [], progress=False, raw=[(k, v) for k, v, _, _ in bad])
    replay.publish(isolated_cfg, events[half:], progress=False)
    preds = collect(isolated_cfg, isolated_cfg.topic_predictions, len(events), timeout_s=300, settle_s=6)
    dead = collect(isolated_cfg, isolated_cfg.topic_dlq, len(bad), timeout_s=60, settle_s=2)
    return events, bad, preds, dead


def test_every_valid_event_yields_exactly_one_prediction(isolated_cfg, outcome):
    events, _, preds, _ = outcome
    codec = AvroCodec(schemas.PREDICTION)
    decoded = [codec.decode(m.value()) for m in preds]
    counts = collections.Counter(p["event_id"] for p in decoded)
    assert len(decoded) == len(events), f"{len(decoded)} predictions for {len(events)} events"
    assert set(counts) == {e.event_id for e in events}
    assert max(counts.values()) == 1
    model_version = OnnxScorer(str(isolated_cfg.model_file), provider="cpu").model_version
    assert {p["model_version"] for p in decoded} == {model_version}
    assert all(0.0 <= p["score"] <= 1.0 for p in decoded)
    # key = user id, so consumers get each user's predictions in order on one partition
    assert all(m.key().decode() == codec.decode(m.value())["user_id"] for m in preds[:200])


def test_stream_scores_equal_offline_replay(isolated_cfg, outcome):
    events, _, preds, _ = outcome
    codec = AvroCodec(schemas.PREDICTION)
    stream = {p["event_id"]: p["score"] for p in map(lambda m: codec.decode(m.value()), preds)}
    rows = list(offline_replay(events))
    x = np.asarray([feature_vector(*r) for r in rows], dtype=np.float32)
    offline = OnnxScorer(str(isolated_cfg.model_file), provider="cpu").score(x)
    diffs = [abs(stream[r[2].event_id] - s) for r, s in zip(rows, offline, strict=True)]
    assert max(diffs) <= 1e-6


def test_broken_records_land_in_dlq_with_reason(isolated_cfg, outcome):
    _, bad, _, dead = outcome
    codec = AvroCodec(schemas.DEAD_LETTER)
    got = [codec.decode(m.value()) for m in dead]
    assert len(got) == len(bad)
    by_payload = {(d["payload"] or b""): d for d in got}
    for key, value, reason, what in bad:
        d = by_payload.get(value or b"")
        assert d is not None, f"{what}: not in the DLQ"
        assert d["source_topic"] == isolated_cfg.topic_events and d["key"] == key
        assert d["detail"], what
        if reason != ANY:
            assert d["reason"] == reason, f"{what}: {d['reason']} ({d['detail']})"


def test_latest_profile_of_every_user_is_in_cassandra(isolated_cfg, outcome):
    events = outcome[0]
    final = {}
    last_features = {}
    for before, after, ev in offline_replay(events):
        final[ev.user_id] = after
        last_features[ev.user_id] = feature_vector(before, after, ev)
    store = CassandraStore(isolated_cfg)
    try:
        for user, expected in final.items():
            row = store.profile(user)
            assert row is not None, user
            for k, v in expected.as_dict().items():
                assert row[k] == v, (user, k)
            assert np.allclose(row["features"], last_features[user], atol=1e-9), user
        latest = store.predictions(events[-1].user_id, limit=1)[0]
        assert latest["event_time"] == max(e.event_time for e in events if e.user_id == events[-1].user_id)
    finally:
        store.close()


def test_job_never_restarted_because_of_input(isolated_cfg, running_job, outcome):
    from flink_jobs import submit

    history = submit.rest(isolated_cfg, f"/jobs/{running_job}/exceptions")["exceptionHistory"]["entries"]
    assert history == [], history[0]["stacktrace"][:2000] if history else ""
    assert submit.job_state(isolated_cfg, running_job) == "RUNNING"
