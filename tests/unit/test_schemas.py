"""Avro, CQL, Flink row types, the core's types and the feature order all derive from schemas/;
these tests fail when any of them drifts."""

from dataclasses import fields

import pytest

from udfs import schemas
from udfs.features import FEATURE_NAMES, feature_dict
from udfs.profile import Event, Profile, apply_event


def test_event_tuple_matches_avro():
    assert list(Event._fields) == schemas.field_names(schemas.EVENT)


def test_profile_state_matches_avro():
    assert [f.name for f in fields(Profile)] == schemas.field_names(schemas.PROFILE_STATE)


def test_cql_profiles_columns_are_profile_view_plus_scoring():
    cols = schemas.cql_columns("profiles")
    view = schemas.field_kinds(schemas.PROFILE_VIEW)
    assert list(cols)[: len(view)] == [name for name, _, _ in view]
    for name, base, _ in view:
        assert cols[name] == schemas.AVRO_TO_CQL[base], name
    assert list(cols)[len(view):] == ["features", "score", "model_version", "segment", "segment_name"]


def test_profile_view_function_matches_its_schema():
    from udfs.profile import profile_view

    ev = Event("e1", "u1", "purchase", "i", "c", 2.0, 1, 1_000, None, None)
    assert list(profile_view(apply_event(None, ev))) == schemas.field_names(schemas.PROFILE_VIEW)


def test_cql_predictions_columns_match_prediction_avro():
    """Every prediction field is a column, except the ones marked "x-cassandra": false (appended to the
    topic's schema; an existing table would need a migration to hold them)."""
    cols = schemas.cql_columns("predictions")
    topic_only = {f["name"] for f in schemas.avro(schemas.PREDICTION)["fields"] if f.get("x-cassandra") is False}
    assert topic_only == {"decision", "score_decile"}
    kinds = [k for k in schemas.field_kinds(schemas.PREDICTION) if k[0] not in topic_only]
    assert sorted(cols) == sorted(name for name, _, _ in kinds)
    for name, base, _ in kinds:
        assert cols[name] == schemas.AVRO_TO_CQL[base], name


def test_flink_row_types_match_avro():
    from flink_jobs.types import prediction_type, row_type, write_request_type
    from udfs.cassandra_rows import WriteRequest

    for avsc in (schemas.EVENT, schemas.PREDICTION, schemas.DEAD_LETTER, schemas.PROFILE_VIEW):
        assert row_type(avsc).get_field_names() == schemas.field_names(avsc)
    assert prediction_type().get_field_names() == schemas.field_names(schemas.PREDICTION)
    assert write_request_type().get_field_names() == list(WriteRequest._fields)


def test_prediction_row_is_in_avro_order():
    from udfs.prediction import Scores, prediction_row

    ev = Event("e1", "u1", "cart", "i", "c", None, None, 1_000, None, None)
    scores = Scores(0.25, "m1", 3, "buyers", "s1")
    row = prediction_row(ev, scores, {"lifecycle": "new", "value_tier": "none"}, 2_000, [])
    assert dict(zip(schemas.field_names(schemas.PREDICTION), row, strict=True)) == {
        "user_id": "u1", "event_id": "e1", "event_type": "cart", "event_time": 1_000, "score": 0.25,
        "lifecycle": "new", "value_tier": "none", "segment": 3, "segment_name": "buyers", "model_version": "m1",
        "segment_model_version": "s1", "scored_at": 2_000, "features": [], "decision": None, "score_decile": None,
    }
    with_decision = Scores(0.25, "m1", 3, "buyers", "s1", True, 9)
    row = prediction_row(ev, with_decision, {"lifecycle": "new", "value_tier": "none"}, 2_000, [])
    assert row[-2:] == [True, 9]


def test_feature_dict_covers_exactly_the_declared_features():
    ev = Event("e1", "u1", "view", "i", "c", None, None, 1_000, None, None)
    assert set(feature_dict(None, apply_event(None, ev), ev)) == set(FEATURE_NAMES)
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES))


@pytest.mark.parametrize(
    "avsc", [schemas.EVENT, schemas.PREDICTION, schemas.DEAD_LETTER, schemas.PROFILE_STATE, schemas.PROFILE_VIEW]
)
def test_avro_schemas_parse(avsc):
    import fastavro

    fastavro.parse_schema(schemas.avro(avsc))


def test_event_types_have_profile_counters_and_interest_weights():
    from udfs.settings import ProfileSettings

    for t in schemas.event_types():
        ev = Event("e", "u", t, "i", "c", 1.0, 1, 0, None, None)
        assert apply_event(None, ev).n_events == 1
        assert t in ProfileSettings().interest_weights


def test_cql_recommendations_columns_match_the_rows_the_core_writes():
    import json

    from udfs.cassandra_rows import OP_RECOMMENDATION, RECOMMENDATION_COLUMNS, recommendation_request

    cols = schemas.cql_columns("recommendations")
    assert cols == {"user_id": "text", "items": "frozen<list<text>>", "scores": "frozen<list<double>>",
                    "model_version": "text", "as_of": "bigint", "computed_at": "bigint",
                    "popular_basis": "text"}
    req = recommendation_request("u1", [("a", 0.9), ("b", 0.5)], 1_000_000_001, "blend-v1", 1_000_000, 1_000_500)
    assert req.op == OP_RECOMMENDATION and req.user_id == "u1" and req.write_ts == 1_000_000_001
    values = json.loads(req.payload)
    assert list(values) == RECOMMENDATION_COLUMNS == list(cols)
    assert values["items"] == ["a", "b"] and values["scores"] == [0.9, 0.5]
