"""User erasure (privacy request) through the real stack: tools.erase_user deletes the user's
Cassandra rows and sends an 'erase' control event; the job drops the user's keyed state. Nothing of
the user remains in Cassandra, other users are untouched, and later events build a fresh profile,
exactly as the offline replay of the same stream (erase event included) says."""

from __future__ import annotations

import collections
import time

from flink_jobs import submit
from flink_jobs.cassandra_store import CassandraStore
from tools import replay
from tools.erase_user import erase, erase_event
from tools.kafka_io import collect
from udfs import schemas

from . import drills
from .conftest import isolated, job

N = 3000
HOUR = 3_600_000


def test_erased_user_is_gone_everywhere_and_starts_fresh() -> None:
    with isolated() as cfg:
        events = replay.load(cfg, "taobao-head", N)
        per_user = collections.Counter(e.user_id for e in events)
        victim, bystander = [u for u, _ in per_user.most_common(2)]
        at = max(e.event_time for e in events) + 60_000
        later = [e._replace(event_id=f"after-{i}", event_time=at + HOUR + i * 60_000)
                 for i, e in enumerate([e for e in events if e.user_id == victim][:3])]
        with job(cfg) as job_id:
            replay.publish(cfg, events, progress=False)
            assert len(collect(cfg, cfg.topic_predictions, N, timeout_s=300)) >= N
            store = CassandraStore(cfg)
            try:
                assert store.profile(victim) is not None and store.predictions(victim)
                before_bystander = store.profile(bystander)
                erase(cfg, victim, at)
                deadline = time.monotonic() + 60
                while submit.job_metrics(cfg, job_id).get("users_erased", 0) < 1:
                    assert time.monotonic() < deadline, "the job did not handle the erase event"
                    time.sleep(1)
                assert store.profile(victim) is None
                assert store.predictions(victim, limit=10_000) == []
                assert store.profile(bystander) == before_bystander
                replay.publish(cfg, later, progress=False)
                preds = drills.decode(collect(cfg, cfg.topic_predictions, N + len(later), timeout_s=120,
                                              settle_s=3), schemas.PREDICTION)
                # the fresh profile knows only what came after the erasure
                fresh = store.profile(victim)
                assert fresh is not None and fresh["n_events"] == len(later)
                got = sorted(p["event_id"] for p in store.predictions(victim, limit=10_000))
                assert got == sorted(e.event_id for e in later)
            finally:
                store.close()
        expected = drills.offline(cfg, [*events, erase_event(victim, at), *later])
        assert expected.outcomes[drills.Outcome.ERASED] == 1
        drills.assert_exact(cfg, expected, preds)
