"""Recommendations on the real stack (issue 14 (e)): the lists in Cassandra equal the offline
computation for every user of a replayed file.

What a stream-computed list depends on: the user's profile after their latest event (exact: per-user
order is Kafka's) and the "popular now" lists the profile subtask held when it wrote the list, which
depend on when the popularity stage's updates arrived. Each row records the latter as
``popular_basis`` {category: [as_of, total]}. The offline side recomputes those popular lists from
the file itself (udfs.popularity.tops_at: the keyed windows replayed in the file's order, which is
the order a single-partition topic hands the stage) and the list with udfs.recommend. So the test
checks the popularity stage's counting, the broadcast, the profile and the ranking; only the
moment each update arrived is taken from the stream."""

from __future__ import annotations

import json

import pytest

from flink_jobs.cassandra_store import CassandraStore
from tools import replay
from tools.kafka_io import collect
from udfs import recommend
from udfs.popularity import GLOBAL, tops_at
from udfs.profile import Outcome, replay_steps

from .conftest import isolated, job

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run() -> tuple:
    # one partition: each category window counts the events in the file's order (see the module doc)
    with isolated(topic_partitions=1) as cfg, job(cfg):
        events = replay.load(cfg, "taobao-head")
        replay.publish(cfg, events, progress=False)
        collect(cfg, cfg.topic_predictions, len(events), timeout_s=900, settle_s=5)
        users = sorted({e.user_id for e in events})
        store = CassandraStore(cfg)
        try:
            rows = {u: store.recommendations(u) for u in users}
        finally:
            store.close()
    return cfg, events, rows


def test_every_users_list_equals_the_offline_computation(run):
    cfg, events, rows = run
    ps, pops, rs = cfg.profile_settings(), cfg.popularity_settings(), cfg.recommend_settings()
    profiles = {}
    for r in replay_steps(events, ps):
        assert r.outcome is Outcome.APPLIED
        profiles[r.event.user_id] = r.state
    missing = [u for u, row in rows.items() if row is None]
    assert not missing, f"{len(missing)} users without a recommendations row, e.g. {missing[:3]}"

    bases = {u: {c: tuple(v) for c, v in json.loads(row["popular_basis"]).items()} for u, row in rows.items()}
    wanted: dict[str, set[tuple[int, int]]] = {}
    for basis in bases.values():
        for c, at in basis.items():
            wanted.setdefault(c, set()).add(at)
    found = tops_at(events, wanted, pops)
    mismatches = []
    for user, row in rows.items():
        p = profiles[user]
        assert row["as_of"] == p.last_seen and row["model_version"] == recommend.VERSION, user
        popular = {}
        for c, (as_of, total) in bases[user].items():
            t = found.get((c, as_of, total))
            assert t is not None, f"{user}: the stream read a top of {c} (as of {as_of}, total {total}) " \
                                  "that the file's events never produce"
            popular[c] = t
        expected = recommend.recommend(p, popular, p.last_seen, s=rs, ps=ps, pops=pops)
        if row["items"] != [i for i, _ in expected] or any(
                abs(a - b) > 1e-9 for a, (_, b) in zip(row["scores"], expected, strict=True)):
            mismatches.append((user, row["items"][:3], [i for i, _ in expected][:3]))
    assert not mismatches, f"{len(mismatches)} of {len(rows)} lists differ, e.g. {mismatches[:3]}"

    # the popularity stage really fed the lists: most users' lists read category tops
    with_category = sum(1 for b in bases.values() if set(b) - {GLOBAL})
    assert with_category > 0.8 * len(rows), f"only {with_category} of {len(rows)} lists read a category top"
