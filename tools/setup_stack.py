"""Create the Kafka topics and the Cassandra keyspace/tables from schemas/ (idempotent).

    python -m tools.setup_stack [config flags]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flink_jobs.cassandra_store import create_schema
from flink_jobs.config import parse
from tools.kafka_io import all_topics, create_model_topics, create_topics, model_topics
from udfs import schemas


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    cfg, _ = parse(argv, description=__doc__, groups=("kafka", "topics", "cassandra"))
    created = create_topics(cfg) + create_model_topics(cfg)
    print(f"kafka topics: {', '.join(all_topics(cfg) + list(model_topics(cfg)))} ({len(created)} created)")
    create_schema(cfg)
    print(f"cassandra keyspace {cfg.cassandra_keyspace}: tables {', '.join(schemas.cql_tables())} ready")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
