"""Cassandra access from Python with cassandra-driver: the reads of the CLIs and tests, the erasure
of tools.erase_user and the writes of the framework-free benchmark. The job itself writes through
the JVM sink (jvm/.../CassandraSink.java). No pyflink import.

Writes take the same requests the job emits (udfs.cassandra_rows.WriteRequest), so idempotence is
the same: ``USING TIMESTAMP`` = the profile's version, the prediction's event time in µs, or the
erasure's tombstone time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import RoundRobinPolicy
from cassandra.query import PreparedStatement

from flink_jobs.config import Config
from flink_jobs.security import cassandra_credentials, cassandra_ssl_context
from udfs import schemas
from udfs.cassandra_rows import (
    OP_ERASE,
    OP_PREDICTION,
    OP_PROFILE,
    OP_RECOMMENDATION,
    PREDICTION_COLUMNS,
    PROFILE_COLUMNS,
    RECOMMENDATION_COLUMNS,
    WriteRequest,
    erase_request,
)

log = logging.getLogger(__name__)

def connect(
    cfg: Config, keyspace: Optional[str] = None, timeout_s: float = 30.0, credentials: Optional[tuple[str, str]] = None
) -> tuple[Cluster, Session]:
    """A connected driver session; login and TLS as configured (the password is read from its file or
    environment variable now, where the client runs, and kept only by the driver's auth provider).
    ``credentials`` replaces the configured login (the secure stack's first start uses the default one)."""
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=timeout_s)
    credentials = credentials or cassandra_credentials(cfg)
    cluster = Cluster(
        contact_points=cfg.cassandra_contact_points,
        port=cfg.cassandra_port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
        connect_timeout=timeout_s,
        auth_provider=PlainTextAuthProvider(*credentials) if credentials else None,
        ssl_context=cassandra_ssl_context(cfg),
    )
    return cluster, cluster.connect(keyspace)


def create_schema(cfg: Config) -> None:
    """Create the keyspace and tables of schemas/cassandra.cql (idempotent), and add the columns a
    newer schemas/cassandra.cql declares to tables an older version created (CREATE TABLE IF NOT
    EXISTS leaves an existing table as it is, and the sink's prepared INSERTs name every column)."""
    cluster, session = connect(cfg)
    try:
        for stmt in schemas.cql_statements(cfg.cassandra_keyspace, cfg.cassandra_replication):
            session.execute(stmt, timeout=60)
        for table in schemas.cql_tables():
            have = {r.column_name for r in session.execute(
                "SELECT column_name FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
                (cfg.cassandra_keyspace, table))}
            for column, ctype in schemas.cql_columns(table).items():
                if column not in have:
                    log.warning("cassandra: adding column %s.%s %s (schema upgrade)", table, column, ctype)
                    session.execute(f"ALTER TABLE {cfg.cassandra_keyspace}.{table} ADD {column} {ctype}", timeout=60)
    finally:
        cluster.shutdown()


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Driver row -> plain dict (its map type is not a dict, which surprises JSON and comparisons)."""
    return {k: dict(v) if hasattr(v, "items") else v for k, v in row.items()}


class CassandraStore:
    """Writes of the job (one instance per operator) and reads of the CLIs and tests."""

    def __init__(
        self, cfg: Config, max_retries: int = 8, on_retry: Callable[[], None] = lambda: None, max_in_flight: int = 256
    ) -> None:
        self.cfg = cfg
        self.max_retries = max_retries
        self.max_in_flight = max_in_flight
        self.on_retry = on_retry
        self.cluster, self.session = connect(cfg, cfg.cassandra_keyspace)
        cl = self.consistency = ConsistencyLevel.name_to_value[cfg.cassandra_consistency.upper()]
        ks = cfg.cassandra_keyspace
        self._put_profile = self._prepare(
            f"INSERT INTO {ks}.profiles ({', '.join(PROFILE_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(PROFILE_COLUMNS))}) USING TIMESTAMP ?",
            cl,
        )
        self._put_prediction = self._prepare(
            f"INSERT INTO {ks}.predictions ({', '.join(PREDICTION_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(PREDICTION_COLUMNS))}) USING TIMESTAMP ?",
            cl,
        )
        self._put_recommendation = self._prepare(
            f"INSERT INTO {ks}.recommendations ({', '.join(RECOMMENDATION_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(RECOMMENDATION_COLUMNS))}) USING TIMESTAMP ?",
            cl,
        )
        self._erase_recommendations = self._prepare(
            f"DELETE FROM {ks}.recommendations USING TIMESTAMP ? WHERE user_id = ?", cl
        )
        self._erase_profile = self._prepare(f"DELETE FROM {ks}.profiles USING TIMESTAMP ? WHERE user_id = ?", cl)
        self._erase_predictions = self._prepare(
            f"DELETE FROM {ks}.predictions USING TIMESTAMP ? WHERE user_id = ?", cl
        )

    def _prepare(self, cql: str, cl: int) -> PreparedStatement:
        stmt = self.session.prepare(cql)
        stmt.consistency_level = cl
        stmt.is_idempotent = True  # lets the driver retry and speculate safely
        return stmt

    def write_requests(self, requests: Sequence[WriteRequest]) -> None:
        """Every request concurrently, one per row (no multi-partition batches), at most
        ``max_in_flight`` at a time; when any fails, retry the whole set with backoff (every
        statement is idempotent), then raise. Write times decide what wins, not the order."""
        work: list[tuple[PreparedStatement, list[Any]]] = []
        for r in requests:
            if r.op == OP_ERASE:
                work += [(stmt, [r.write_ts, r.user_id])
                         for stmt in (self._erase_profile, self._erase_predictions, self._erase_recommendations)]
            else:
                stmt, cols = {
                    OP_PROFILE: (self._put_profile, PROFILE_COLUMNS),
                    OP_PREDICTION: (self._put_prediction, PREDICTION_COLUMNS),
                    OP_RECOMMENDATION: (self._put_recommendation, RECOMMENDATION_COLUMNS),
                }[r.op]
                values = json.loads(r.payload)
                work.append((stmt, [values[c] for c in cols] + [r.write_ts]))
        delay = 0.1
        for attempt in range(self.max_retries + 1):
            try:
                for i in range(0, len(work), self.max_in_flight):
                    chunk = work[i:i + self.max_in_flight]
                    futures = [self.session.execute_async(stmt, values) for stmt, values in chunk]
                    for f in futures:
                        f.result()
                return
            except Exception as exc:  # driver raises several types for one outage
                if attempt == self.max_retries:
                    raise
                self.on_retry()
                log.warning("cassandra write failed (attempt %d, %d rows): %s; retrying in %.1fs",
                            attempt + 1, len(work), exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def erase(self, user_id: str, timestamp_us: int) -> None:
        """Delete the user's profile and recommendations rows and every prediction row written before
        ``timestamp_us``."""
        self.write_requests([erase_request(user_id, timestamp_us)])

    def profile(self, user_id: str) -> Optional[dict[str, Any]]:
        row = self.session.execute(
            f"SELECT * FROM {self.cfg.cassandra_keyspace}.profiles WHERE user_id = %s", (user_id,)
        ).one()
        return _plain(row._asdict()) if row else None

    def predictions(self, user_id: str, limit: int = 10) -> list[dict[str, Any]]:
        rows = self.session.execute(
            f"SELECT * FROM {self.cfg.cassandra_keyspace}.predictions WHERE user_id = %s LIMIT %s",
            (user_id, limit),
        )
        return [_plain(r._asdict()) for r in rows]

    def recommendations(self, user_id: str) -> Optional[dict[str, Any]]:
        row = self.session.execute(
            f"SELECT * FROM {self.cfg.cassandra_keyspace}.recommendations WHERE user_id = %s", (user_id,)
        ).one()
        return _plain(row._asdict()) if row else None

    def close(self) -> None:
        self.cluster.shutdown()
