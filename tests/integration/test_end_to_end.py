"""Real Taobao events + broken, duplicate and late records through real Kafka, Flink and Cassandra:
every record ends in exactly one place, and the stream computes exactly what the offline replay of
the same core computes."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

import numpy as np
import pytest

from flink_jobs import submit
from flink_jobs.cassandra_store import CassandraStore
from flink_jobs.config import Config
from tools import replay
from tools.kafka_io import AvroCodec, collect
from udfs import cassandra_rows, schemas
from udfs.engine import ProfileRow
from udfs.features import feature_vector
from udfs.prediction import PREDICTION_FIELDS
from udfs.profile import Outcome, profile_view, replay_steps
from udfs.scorer import OnnxScorer
from udfs.segmenter import OnnxSegmenter

from .bad_records import ANY, bad_records
from .conftest import isolated
from .drills import assert_profile_rows

N_EVENTS = 6000
N_DUPLICATES = 10
N_LATE = 10
DAY = 86_400_000


@pytest.fixture(scope="module")
def isolated_cfg() -> Iterator[Config]:
    with isolated() as cfg:
        yield cfg


@pytest.fixture(scope="module")
def outcome(isolated_cfg: Config, running_job: str):
    events = replay.load(isolated_cfg, "taobao-head", N_EVENTS)
    half = len(events) // 2
    first, second = events[:half], events[half:]
    edge = first[-1].event_time
    # producer retries: the newest events of the first half again, same ids
    duplicates = [e for e in first if e.event_time >= edge - 120_000][-N_DUPLICATES:]
    # a day behind the stream: beyond the allowed lateness
    late = [e._replace(event_id=f"late-{i}", event_time=e.event_time - DAY) for i, e in enumerate(first[-N_LATE:])]
    bad = bad_records()
    replay.publish(isolated_cfg, first, progress=False)
    # let the job see the first half (its watermark moves on) before the late records arrive
    assert len(collect(isolated_cfg, isolated_cfg.topic_predictions, half, timeout_s=300)) >= half
    replay.publish(isolated_cfg, duplicates + late, progress=False, raw=[(k, v) for k, v, _, _ in bad])
    replay.publish(isolated_cfg, second, progress=False)
    published = first + duplicates + late + second
    preds = collect(isolated_cfg, isolated_cfg.topic_predictions, len(events), timeout_s=300, settle_s=6)
    dead = collect(isolated_cfg, isolated_cfg.topic_dlq, len(bad) + len(duplicates), timeout_s=60, settle_s=2)
    late_out = collect(isolated_cfg, isolated_cfg.topic_late, len(late), timeout_s=60, settle_s=2)
    return dict(events=events, published=published, bad=bad, duplicates=duplicates, late=late,
                preds=preds, dead=dead, late_out=late_out)


def _decode(msgs, avsc):
    codec = AvroCodec(avsc)
    return [codec.decode(m.value()) for m in msgs]


def test_every_record_ends_in_exactly_one_place(outcome):
    o = outcome
    n_in = len(o["events"]) + len(o["duplicates"]) + len(o["late"]) + len(o["bad"])
    assert len(o["preds"]) + len(o["dead"]) + len(o["late_out"]) == n_in


def test_every_valid_event_yields_exactly_one_prediction(isolated_cfg, outcome):
    events, preds = outcome["events"], outcome["preds"]
    decoded = _decode(preds, schemas.PREDICTION)
    counts = collections.Counter(p["event_id"] for p in decoded)
    assert len(decoded) == len(events), f"{len(decoded)} predictions for {len(events)} events"
    assert set(counts) == {e.event_id for e in events}
    assert max(counts.values()) == 1
    model_version = OnnxScorer(str(isolated_cfg.model_file), provider="cpu").model_version
    assert {p["model_version"] for p in decoded} == {model_version}
    assert all(0.0 <= p["score"] <= 1.0 for p in decoded)
    assert {p["lifecycle"] for p in decoded} <= {"new", "active", "at-risk", "dormant"}
    segmenter = OnnxSegmenter(str(isolated_cfg.segments_file), provider="cpu")
    assert {p["segment_model_version"] for p in decoded} == {segmenter.model_version}
    assert all(segmenter.segment_names[p["segment"]] == p["segment_name"] for p in decoded)
    assert len({p["segment"] for p in decoded}) > 1  # real data spreads over segments
    # key = user id, so consumers get each user's predictions in order on one partition
    assert all(m.key().decode() == p["user_id"] for m, p in zip(preds[:200], decoded, strict=False))


def test_stream_scores_equal_offline_replay(isolated_cfg, outcome):
    stream = {p["event_id"]: p["score"] for p in _decode(outcome["preds"], schemas.PREDICTION)}
    settings = isolated_cfg.profile_settings()
    ids, vectors = [], []
    for r in replay_steps(outcome["published"], settings):
        if r.outcome is Outcome.APPLIED:
            ids.append(r.event.event_id)
            vectors.append(feature_vector(r.before, r.state, r.event, settings))
    offline = OnnxScorer(str(isolated_cfg.model_file), provider="cpu").score(np.asarray(vectors, dtype=np.float32))
    assert len(ids) == len(stream)
    assert max(abs(stream[i] - s) for i, s in zip(ids, offline, strict=True)) <= 1e-6


def test_broken_records_land_in_dlq_with_reason(isolated_cfg, outcome):
    got = [d for d in _decode(outcome["dead"], schemas.DEAD_LETTER) if d["reason"] != "duplicate_event"]
    bad = outcome["bad"]
    assert len(got) == len(bad)
    by_payload = {(d["payload"] or b""): d for d in got}
    for key, value, reason, what in bad:
        d = by_payload.get(value or b"")
        assert d is not None, f"{what}: not in the DLQ"
        assert d["source_topic"] == isolated_cfg.topic_events and d["key"] == key
        assert d["detail"], what
        if reason != ANY:
            assert d["reason"] == reason, f"{what}: {d['reason']} ({d['detail']})"


def test_duplicates_counted_once_and_reported(outcome):
    dups = [d for d in _decode(outcome["dead"], schemas.DEAD_LETTER) if d["reason"] == "duplicate_event"]
    codec = AvroCodec(schemas.EVENT)
    assert sorted(codec.decode(d["payload"])["event_id"] for d in dups) == sorted(
        e.event_id for e in outcome["duplicates"]
    )


def test_late_events_go_to_the_late_topic_unchanged(outcome):
    got = _decode(outcome["late_out"], schemas.EVENT)
    assert sorted(g["event_id"] for g in got) == sorted(e.event_id for e in outcome["late"])
    by_id = {e.event_id: e for e in outcome["late"]}
    for g in got:
        assert g["event_time"].timestamp() * 1000 == by_id[g["event_id"]].event_time


def test_latest_profile_of_every_user_is_in_cassandra(isolated_cfg, outcome):
    settings = isolated_cfg.profile_settings()
    final, last_vec = {}, {}
    for r in replay_steps(outcome["published"], settings):
        if r.outcome is Outcome.APPLIED:
            final[r.event.user_id] = profile_view(r.state, settings)
            last_vec[r.event.user_id] = feature_vector(r.before, r.state, r.event, settings)
    store = CassandraStore(isolated_cfg)
    try:
        assert_profile_rows(store, final, last_vec)
    finally:
        store.close()


def test_job_never_restarted_because_of_input(isolated_cfg, running_job, outcome):
    from flink_jobs import submit

    history = submit.rest(isolated_cfg, f"/jobs/{running_job}/exceptions")["exceptionHistory"]["entries"]
    assert history == [], history[0]["stacktrace"][:2000] if history else ""
    assert submit.job_state(isolated_cfg, running_job) == "RUNNING"


def test_rewriting_the_same_profile_changes_nothing(isolated_cfg, outcome):
    """What a restore from a checkpoint does: the same writes again, with the same timestamps."""
    store = CassandraStore(isolated_cfg)
    try:
        user = outcome["events"][-1].user_id
        before = store.profile(user)
        view = {k: before[k] for k in schemas.field_names(schemas.PROFILE_VIEW)}
        pred = store.predictions(user, limit=1)[0]
        version = int(before["last_seen"]) * 1000 + 10**6  # a replayed write at a fixed timestamp
        pred = dict(pred, features=before["features"])
        row = ProfileRow(view, version, [pred.get(f) for f in PREDICTION_FIELDS], before["features"])
        for _ in range(2):  # the requests the job emits, as a restore would emit them again
            store.write_requests([cassandra_rows.profile_request(user, row)])
        after = store.profile(user)
        assert after == before | {"features": before["features"]}
        assert len(after["features"]) == len(before["features"])
    finally:
        store.close()


def test_metrics_readable_through_the_rest_api(isolated_cfg, running_job, outcome):
    """What the web UI shows for the job, read back through the JobManager's REST API."""
    o = outcome
    n_in = len(o["events"]) + len(o["duplicates"]) + len(o["late"]) + len(o["bad"])
    want = {
        "records_in": n_in,
        "dead_letters": len(o["bad"]),
        "events_applied": len(o["events"]),
        "events_duplicate": len(o["duplicates"]),
        "events_late": len(o["late"]),
        "cassandra_retries": 0,
        "onnx_provider_cuda": 0,  # no GPU in CI
    }
    deadline = time.monotonic() + 60  # the REST metric store refreshes every few seconds
    while True:
        got = submit.job_metrics(isolated_cfg, running_job)
        if all(got.get(k) == v for k, v in want.items()) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert {k: got.get(k) for k in want} == want
    # the stream is 2017 data: event time trails the wall clock by years
    assert got["event_time_lag_ms"] > 365 * DAY
    assert got["batched_events"] == len(o["events"]) + len(o["duplicates"]) + len(o["late"])
    assert 1 <= got["batch_size_mean"] <= isolated_cfg.batch_max_events
    assert got["python_batches"] == got["batches"] >= 1  # one Python call per batch (markers not counted)
    assert got["python_batch_micros"] > 0 and got["state_flushes"] >= 1
    # every prediction row and, once per checkpoint, every changed profile row and its recommendations
    assert got["recommendations_written"] == got["profiles_flushed"]
    assert got["cassandra_rows"] == len(o["events"]) + 2 * got["profiles_flushed"]
    pop = submit.job_metrics(isolated_cfg, running_job, group="popular_now")
    # each event with an item and a category counts twice: its category and the all-categories list
    assert pop["events_counted"] == 2 * sum(1 for e in o["events"] if e.item_id and e.category_id) \
        + 2 * sum(1 for e in o["duplicates"] + o["late"] if e.item_id and e.category_id)
    assert pop["batched_events"] == pop["events_counted"] and pop["tops_sent"] >= 1
    # grouped by replica set (one local node: any rows may share a request), never more requests than rows
    assert 1 <= got["cassandra_writes"] < got["cassandra_rows"]
    assert len({e.user_id for e in o["events"]}) <= got["profiles_flushed"] <= len(o["events"])
