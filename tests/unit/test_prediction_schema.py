"""schemas/prediction.avsc gained optional fields (decision, score_decile) appended with defaults:
consumers holding the previous schema keep reading new records, and new readers read old records, by
Avro schema resolution (fastavro)."""

from __future__ import annotations

import copy
import io
from typing import Any

import fastavro
import pytest

from udfs import schemas

NEW_FIELDS = ("decision", "score_decile")


def _schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    new = schemas.avro(schemas.PREDICTION)
    old = copy.deepcopy(new)
    old["fields"] = [f for f in old["fields"] if f["name"] not in NEW_FIELDS]
    return fastavro.parse_schema(old), fastavro.parse_schema(new)


def _record(**extra: Any) -> dict[str, Any]:
    base = {"user_id": "u1", "event_id": "e1", "event_type": "cart", "event_time": 1_000, "score": 0.31,
            "lifecycle": "new", "value_tier": "none", "segment": 1, "segment_name": "s", "model_version": "m",
            "segment_model_version": "sm", "scored_at": 2_000, "features": [1.0, 2.0]}
    return {**base, **extra}


def _write(schema: dict[str, Any], rec: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, rec)
    return buf.getvalue()


def _read(data: bytes, writer: dict[str, Any], reader: dict[str, Any]) -> dict[str, Any]:
    return fastavro.schemaless_reader(io.BytesIO(data), writer, reader)


def _plain(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if not hasattr(v, "timestamp") else int(v.timestamp() * 1000)) for k, v in rec.items()}


def test_new_fields_are_appended_optional_with_null_default() -> None:
    fields = schemas.avro(schemas.PREDICTION)["fields"]
    assert [f["name"] for f in fields[-len(NEW_FIELDS):]] == list(NEW_FIELDS)
    for f in fields[-len(NEW_FIELDS):]:
        assert f["type"][0] == "null" and "default" in f and f["default"] is None


@pytest.mark.parametrize("decision,decile", [(True, 10), (False, 3), (None, None)])
def test_old_reader_reads_new_records(decision: Any, decile: Any) -> None:
    old, new = _schemas()
    data = _write(new, _record(decision=decision, score_decile=decile))
    got = _plain(_read(data, new, old))
    assert got == _record() and not set(NEW_FIELDS) & set(got)


def test_new_reader_reads_old_records_with_defaults() -> None:
    old, new = _schemas()
    got = _plain(_read(_write(old, _record()), old, new))
    assert got == _record(decision=None, score_decile=None)


def test_new_reader_reads_new_records() -> None:
    _, new = _schemas()
    got = _plain(_read(_write(new, _record(decision=True, score_decile=7)), new, new))
    assert got["decision"] is True and got["score_decile"] == 7


def test_dropping_the_default_would_break_old_records() -> None:
    """The check above can fail: without the default, an old record cannot be resolved."""
    old, _ = _schemas()
    broken = copy.deepcopy(schemas.avro(schemas.PREDICTION))
    for f in broken["fields"]:
        if f["name"] == "decision":
            del f["default"]
    with pytest.raises(fastavro.read.SchemaResolutionError):
        _read(_write(old, _record()), old, fastavro.parse_schema(broken))
