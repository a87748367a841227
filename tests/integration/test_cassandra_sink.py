"""The JVM CassandraSink inside a real TaskManager: a Python operator emits write requests, the sink
(from the shaded glue jar shipped via pipeline.jars) writes them, and the Python driver reads back
the CQL types and write times it stored."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from flink_jobs import submit
from flink_jobs.cassandra_store import connect

from .conftest import isolated

JOB = Path(__file__).parent / "jobs" / "cassandra_sink_job.py"


def _job_module():  # noqa: ANN202 - the job file is not in a package
    spec = importlib.util.spec_from_file_location("cassandra_sink_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sink_writes_typed_rows_with_their_write_times() -> None:
    expected = _job_module()
    with isolated() as cfg:
        job_id = submit.submit(cfg, module=JOB, wait_running=False)
        state = submit.wait_state(cfg, job_id, ("FINISHED", "FAILED", "CANCELED"), timeout_s=300)
        assert state == "FINISHED", submit.rest(cfg, f"/jobs/{job_id}/exceptions")
        cluster, session = connect(cfg, cfg.cassandra_keyspace)
        try:
            p = session.execute(
                "SELECT first_seen, n_events, spend, lifecycle, segment, top_categories, features, last_event_id,"
                " n_view, WRITETIME(spend) AS wt FROM profiles WHERE user_id = 'it-u1'").one()
            assert (p.first_seen, p.n_events, p.spend, p.lifecycle, p.segment) == (1_700_000_000_000, 3, 12.5, "new", 2)
            assert dict(p.top_categories) == {"books": 0.75, "toys": 0.25}
            assert list(p.features) == [0.5, 1.0, -2.25]
            assert p.last_event_id is None and p.n_view is None
            assert p.wt == 1_000_000
            pred = session.execute("SELECT event_id, score, segment, WRITETIME(score) AS wt FROM predictions"
                                   " WHERE user_id = 'it-u1'").one()
            assert (pred.event_id, pred.score, pred.segment, pred.wt) == ("e1", 0.9, 1, 1_700_000_000_000_000)
            # the erase at 10 removed the profile written at 5 and the prediction at 5, not the one at 50
            assert session.execute("SELECT * FROM profiles WHERE user_id = 'it-u2'").one() is None
            assert [r.event_id for r in session.execute("SELECT event_id FROM predictions WHERE user_id = 'it-u2'")] \
                == ["new"]
            bulk = {r.user_id: r for r in session.execute(
                "SELECT user_id, n_events, spend, features, WRITETIME(n_events) AS wt FROM profiles")
                if r.user_id.startswith("bulk-")}
            assert len(bulk) == expected.BULK
            r = bulk["bulk-1234"]
            assert (r.n_events, r.wt) == (1234, 2_001_234)
            assert math.isclose(r.spend, 1234 / 3) and len(r.features) == 40
        finally:
            cluster.shutdown()
