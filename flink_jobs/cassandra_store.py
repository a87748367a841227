"""Cassandra access with cassandra-driver: prepared, idempotent upserts of profiles and
predictions, and the reads the CLIs use. No pyflink import (the CLIs use it too).

Idempotence: a profile row is written ``USING TIMESTAMP`` = the state's version (strictly
increasing per user, also across state expiry), a prediction row ``USING TIMESTAMP`` = its event
time in µs. Replaying events after a restore therefore rewrites identical cells and changes nothing,
and an older profile can never overwrite a newer one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import RoundRobinPolicy
from cassandra.query import BatchStatement, BatchType, PreparedStatement

from flink_jobs.config import Config
from flink_jobs.security import cassandra_credentials, cassandra_ssl_context
from udfs import schemas

log = logging.getLogger(__name__)

PROFILE_COLUMNS: list[str] = list(schemas.cql_columns("profiles"))
PREDICTION_COLUMNS: list[str] = list(schemas.cql_columns("predictions"))
# the profile row also keeps the latest scores: these columns are copied from the prediction
# write_many groups rows by their first value: the partition key of both tables
assert PROFILE_COLUMNS[0] == PREDICTION_COLUMNS[0] == "user_id", "write_many sorts by the partition key"
PROFILE_SCORING_COLUMNS = ["score", "model_version", "segment", "segment_name"]


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
    """Create the keyspace and tables of schemas/cassandra.cql (idempotent)."""
    cluster, session = connect(cfg)
    try:
        for stmt in schemas.cql_statements(cfg.cassandra_keyspace, cfg.cassandra_replication):
            session.execute(stmt, timeout=60)
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
        self._erase_profile = self._prepare(f"DELETE FROM {ks}.profiles USING TIMESTAMP ? WHERE user_id = ?", cl)
        self._erase_predictions = self._prepare(
            f"DELETE FROM {ks}.predictions USING TIMESTAMP ? WHERE user_id = ?", cl
        )

    def _prepare(self, cql: str, cl: int) -> PreparedStatement:
        stmt = self.session.prepare(cql)
        stmt.consistency_level = cl
        stmt.is_idempotent = True  # lets the driver retry and speculate safely
        return stmt

    def profile_values(
        self, view: dict[str, Any], version: int, prediction: dict[str, Any], features: Sequence[float]
    ) -> list[Any]:
        """Bound values of the profile upsert: the view, the features and the latest scores."""
        row = dict(view)
        row.update(features=list(features), **{k: prediction[k] for k in PROFILE_SCORING_COLUMNS})
        return [row[c] for c in PROFILE_COLUMNS] + [int(version)]

    @staticmethod
    def prediction_values(prediction: dict[str, Any]) -> list[Any]:
        return [prediction[c] for c in PREDICTION_COLUMNS] + [int(prediction["event_time"]) * 1000]

    def write(
        self, view: dict[str, Any], version: int, prediction: dict[str, Any], features: Sequence[float]
    ) -> None:
        """Upsert the profile view and insert the prediction (see write_many)."""
        self.write_many([self.profile_values(view, version, prediction, features)],
                        [self.prediction_values(prediction)])

    def write_many(
        self,
        profiles: Sequence[list[Any]],
        predictions: Sequence[list[Any]],
        erasures: Sequence[tuple[str, int]] = (),
    ) -> None:
        """All upserts (and erasures: (user_id, tombstone write time in µs)) concurrently, at most
        ``max_in_flight`` requests at a time; when any fails, retry the whole set with backoff (every
        statement is idempotent), then raise: the job restarts from its last checkpoint and replays,
        and nothing is lost. Write times decide what wins, not the order of the statements."""
        keyed = [(v[0], self._put_profile, v) for v in profiles]
        keyed += [(v[0], self._put_prediction, v) for v in predictions]
        for user, ts in erasures:
            keyed += [(user, self._erase_profile, [ts, user]), (user, self._erase_predictions, [ts, user])]
        # rows of one user next to each other: most batches then touch few partitions
        keyed.sort(key=lambda k: k[0])
        work = [(stmt, values) for _, stmt, values in keyed]
        k = max(1, self.cfg.cassandra_batch_statements)
        requests: list[Any] = []
        for i in range(0, len(work), k):
            if k == 1:
                requests.append(work[i])
                continue
            batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=self.consistency)
            for stmt, values in work[i:i + k]:
                batch.add(stmt, values)
            requests.append((batch, None))
        delay = 0.1
        for attempt in range(self.max_retries + 1):
            try:
                for i in range(0, len(requests), self.max_in_flight):
                    chunk = requests[i:i + self.max_in_flight]
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
        """Delete the user's profile row and every prediction row written before ``timestamp_us``."""
        self.write_many([], [], [(user_id, timestamp_us)])

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

    def close(self) -> None:
        self.cluster.shutdown()
