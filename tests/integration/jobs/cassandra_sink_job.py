"""A bounded job whose Python operator emits Cassandra write requests into the JVM CassandraSink
(dev.profileengine.glue), shipped in the glue jar like the profile job's connectors. Checks that the
shaded driver works inside a TaskManager (user-code classloader, pipeline.jars): test_cassandra_sink.py
submits it with `flink run -py` and reads the rows back with the Python driver."""

import argparse
import json
import sys
from collections.abc import Sequence

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream.connectors.base import Sink
from pyflink.java_gateway import get_gateway

from flink_jobs import profile_job
from flink_jobs.config import Config
from udfs import schemas

BULK = 3000
LOCAL_DC = "datacenter1"  # the single local node's; the job config has no field for it yet


def requests() -> list[tuple[str, str, int, str]]:
    """(op, user_id, write_ts µs, payload JSON): every CQL type of the tables, nulls, an erase that
    must remove older cells only, and BULK ~1 KiB profiles so that many requests are in flight."""
    out = [
        ("profile", "it-u1", 1_000_000, json.dumps({
            "first_seen": 1_700_000_000_000, "n_events": 3, "spend": 12.5, "lifecycle": "new", "segment": 2,
            "top_categories": {"books": 0.75, "toys": 0.25}, "features": [0.5, 1.0, -2.25],
            "last_event_id": None})),
        ("prediction", "it-u1", 1_700_000_000_000_000, json.dumps({
            "event_time": 1_700_000_000_000, "event_id": "e1", "score": 0.9, "segment": 1, "features": [1.5]})),
        ("prediction", "it-u2", 5, json.dumps({"event_time": 1, "event_id": "old"})),
        ("prediction", "it-u2", 50, json.dumps({"event_time": 2, "event_id": "new"})),
        ("profile", "it-u2", 5, json.dumps({"n_events": 1})),
        ("erase", "it-u2", 10, ""),
    ]
    for i in range(BULK):
        out.append(("profile", f"bulk-{i}", 2_000_000 + i, json.dumps({
            "n_events": i, "spend": i / 3, "lifecycle": "active", "value_tier": "mid",
            "aggregates": {f"agg_{k}": k * 1.5 for k in range(8)},
            "features": [((i * 31 + f) % 97) / 7 for f in range(40)], "model_version": "it"})))
    return out


def sink(cfg: Config) -> Sink:
    glue = get_gateway().jvm.dev.profileengine.glue
    settings = glue.CassandraSinkSettings(
        cfg.cassandra_hosts, cfg.cassandra_port, LOCAL_DC, cfg.cassandra_keyspace,
        list(schemas.cql_columns("profiles")), list(schemas.cql_columns("predictions")),
    ).withMaxInFlight(64).withConsistency(cfg.cassandra_consistency, cfg.cassandra_consistency)
    return Sink(glue.CassandraSink(settings))


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser()
    Config.add_arguments(parser)
    cfg = Config.from_args(parser.parse_args(argv))
    env = profile_job.environment(cfg)
    # Python's Types of the sink's elementType(): Row(op STRING, user_id STRING, write_ts BIGINT, payload STRING)
    field_types = [Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING()]
    request_type = Types.ROW_NAMED(["op", "user_id", "write_ts", "payload"], field_types)
    (env.from_collection(requests(), type_info=Types.TUPLE(field_types))
        .map(lambda r: Row(op=r[0], user_id=r[1], write_ts=r[2], payload=r[3]), output_type=request_type)
        .name("emit write requests")
        .sink_to(sink(cfg)).name("cassandra"))
    env.execute("profile-engine-cassandra-sink-check")


if __name__ == "__main__":
    main(sys.argv[1:])
