"""The Cassandra writes of the job as plain requests: (op, user_id, write time µs, JSON of column ->
value). Pure Python. The job emits them to the JVM Cassandra sink (jvm/.../CassandraSink.java), which
binds them to prepared statements; the column names come from schemas/cassandra.cql.

Idempotence: a profile row and a recommendations row are written ``USING TIMESTAMP`` = the state's
version (strictly increasing per user, also across state expiry), a prediction row = its event time
in µs, an erasure's tombstones = udfs.profile.erasure_timestamp. Replaying events after a restore
rewrites identical cells and changes nothing; an older profile can never overwrite a newer one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Optional

import orjson

from udfs import schemas
from udfs.engine import ProfileRow
from udfs.prediction import PREDICTION_FIELDS
from udfs.recommend import Recommendation

PROFILE_COLUMNS: list[str] = list(schemas.cql_columns("profiles"))
PREDICTION_COLUMNS: list[str] = list(schemas.cql_columns("predictions"))
# the profile row also keeps the latest scores: these columns are copied from the prediction
PROFILE_SCORING_COLUMNS = ["score", "model_version", "segment", "segment_name"]
_SCORING_AT = [(c, PREDICTION_FIELDS.index(c)) for c in PROFILE_SCORING_COLUMNS]

RECOMMENDATION_COLUMNS: list[str] = list(schemas.cql_columns("recommendations"))

OP_PROFILE, OP_PROFILES, OP_PREDICTION, OP_ERASE = "profile", "profiles", "prediction", "erase"
OP_RECOMMENDATION, OP_RECOMMENDATIONS = "recommendation", "recommendations"


class WriteRequest(NamedTuple):
    """One row of the Cassandra sink's input (CassandraSink.elementType(): op, user_id, write_ts, payload)."""

    op: str
    user_id: str
    write_ts: int
    payload: str


def profile_columns(row: ProfileRow) -> dict[str, Any]:
    """The profiles table's columns: the view, the features and the latest scores. Built once per
    user and checkpoint, i.e. about once per event on high-cardinality traffic: one dict, no
    reordering (the sink binds by column name; tests/unit/test_cassandra_rows.py checks the names)."""
    pv = row.prediction_values
    values = {**row.view, "features": row.features}
    for c, i in _SCORING_AT:
        values[c] = pv[i]
    return values


def profile_bundle(rows: Iterable[tuple[str, ProfileRow]]) -> WriteRequest:
    """Many profile rows as one request: payload [[user_id, write_ts, columns], ...]. The job writes
    a checkpoint's changed profiles this way, crossing from Python to the JVM once, not per user."""
    items = [[user, int(row.version), profile_columns(row)] for user, row in rows]
    return WriteRequest(OP_PROFILES, "", 0, _json(items))


def prediction_columns(prediction: dict[str, Any]) -> dict[str, Any]:
    return {c: prediction[c] for c in PREDICTION_COLUMNS}


def prediction_write_ts(prediction: dict[str, Any]) -> int:
    return int(prediction["event_time"]) * 1000


def profile_request(user_id: str, row: ProfileRow) -> WriteRequest:
    return WriteRequest(OP_PROFILE, user_id, int(row.version), _json(profile_columns(row)))


def prediction_requests(predictions: Iterable[Sequence[Any]]) -> list[WriteRequest]:
    """Requests for prediction rows given in prediction.avsc order."""
    out = []
    for values in predictions:
        pred = dict(zip(PREDICTION_FIELDS, values, strict=True))
        out.append(WriteRequest(OP_PREDICTION, pred["user_id"], prediction_write_ts(pred),
                                _json(prediction_columns(pred))))
    return out


def recommendation_columns(
    user_id: str, ranked: Sequence[tuple[str, float]], model_version: str, as_of: int, computed_at: int,
    basis: Optional[dict[str, tuple[int, int]]] = None,
) -> dict[str, Any]:
    """The recommendations table's columns: the ranked list as two parallel lists (rank = index)."""
    return {"user_id": user_id, "items": [i for i, _ in ranked], "scores": [float(sc) for _, sc in ranked],
            "model_version": model_version, "as_of": int(as_of), "computed_at": int(computed_at),
            "popular_basis": _json(dict(sorted((basis or {}).items())))}


def recommendation_request(
    user_id: str, ranked: Sequence[tuple[str, float]], profile_version: int, model_version: str, as_of: int,
    computed_at: int, basis: Optional[dict[str, tuple[int, int]]] = None,
) -> WriteRequest:
    """Written at the profile's version (µs): a list computed from an older profile can never
    overwrite a newer one, and a replay after a restore rewrites the same cells (``computed_at`` is
    processing time; a replay may change it, harmlessly)."""
    return WriteRequest(OP_RECOMMENDATION, user_id, int(profile_version),
                        _json(recommendation_columns(user_id, ranked, model_version, as_of, computed_at, basis)))


def recommendation_bundle(recs: Iterable[Recommendation], model_version: str, computed_at: int) -> WriteRequest:
    """A checkpoint's lists as one request (op "recommendations", the shape of ``profile_bundle``),
    each written at its profile's version like ``recommendation_request``."""
    items = [[r.user_id, int(r.profile_version),
              recommendation_columns(r.user_id, r.items, model_version, r.as_of, computed_at, r.basis)]
             for r in recs]
    return WriteRequest(OP_RECOMMENDATIONS, "", 0, _json(items))


def erase_request(user_id: str, write_ts: int) -> WriteRequest:
    return WriteRequest(OP_ERASE, user_id, int(write_ts), "")


def _json(values: Any) -> str:
    # orjson: the checkpoint's profile and recommendation bundles are the largest JSON the job
    # writes (stdlib json took ~30 us per profile row). It writes NaN as null: non-finite features
    # and scores are refused earlier, in udfs.prediction.score_batch.
    return orjson.dumps(values).decode()
