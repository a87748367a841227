"""udfs.cassandra_rows: the sink binds payload columns by name (jvm/.../JsonColumns.java refuses an
unknown one), so the payloads must carry exactly the table's columns from schemas/cassandra.cql."""

import orjson

from udfs import cassandra_rows as cr
from udfs.engine import MemoryStore, process_batch
from udfs.prediction import PREDICTION_FIELDS, Scores
from udfs.profile import DEFAULT_SETTINGS, Event

T0 = 1_511_568_000_000


def _score(vectors):
    return [Scores(0.25, "m1", 2, "browsers", "s1") for _ in vectors]


def test_profile_payload_has_exactly_the_profiles_columns_and_the_latest_scores():
    evs = [Event(f"e{i}", "u1", "view", f"i{i}", "c1", None, None, T0 + i * 1000, None, None) for i in range(3)]
    r = process_batch(evs, MemoryStore(), _score, DEFAULT_SETTINGS, 0)
    row = r.profiles["u1"]
    cols = cr.profile_columns(row)
    assert set(cols) == set(cr.PROFILE_COLUMNS)
    pred = dict(zip(PREDICTION_FIELDS, row.prediction_values, strict=True))
    assert {c: cols[c] for c in cr.PROFILE_SCORING_COLUMNS} == {c: pred[c] for c in cr.PROFILE_SCORING_COLUMNS}
    assert cols["features"] == row.features and cols["n_events"] == 3
    user, version, payload = orjson.loads(cr.profile_bundle([("u1", row)]).payload)[0]
    assert (user, version, set(payload)) == ("u1", row.version, set(cr.PROFILE_COLUMNS))


def test_recommendation_payload_has_exactly_the_recommendations_columns():
    cols = cr.recommendation_columns("u1", [("i1", 0.5), ("i2", 0.25)], "blend-v1", T0, T0 + 5,
                                     {"c2": (T0, 7), "c1": (T0 - 1, 3)})
    assert set(cols) == set(cr.RECOMMENDATION_COLUMNS)
    assert cols["items"] == ["i1", "i2"] and cols["scores"] == [0.5, 0.25]
    assert orjson.loads(cols["popular_basis"]) == {"c1": [T0 - 1, 3], "c2": [T0, 7]}
