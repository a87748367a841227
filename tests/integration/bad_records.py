"""A corpus of deliberately broken user-events records and the DLQ reason each must get."""

from __future__ import annotations

import copy
import io
import time
from typing import Any, Optional

import fastavro

from tools.kafka_io import AvroCodec
from udfs import schemas

ANY = "*"  # any reason is right, as long as the record lands in the DLQ


def _event(**over: object) -> dict:
    base = dict(event_id="bad-0", user_id="bad-user", event_type="view", item_id="i1", category_id="c1",
                price=None, quantity=None, event_time=1_511_600_000_000, session_id=None, shop_id="test")
    base.update(over)
    return base


def _writer(change) -> Any:  # noqa: ANN001 - a function editing the schema's field list
    """fastavro writer schema: user_event.avsc as an older or careless producer might have it."""
    schema = copy.deepcopy(schemas.avro(schemas.EVENT))
    change(schema["fields"])
    return fastavro.parse_schema(schema)


def _encode(schema: Any, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def _nullable(field: str):  # noqa: ANN202
    def change(fields: list) -> None:
        next(f for f in fields if f["name"] == field)["type"] = ["null", "string"]
    return change


def _without(*names: str):  # noqa: ANN202
    def change(fields: list) -> None:
        fields[:] = [f for f in fields if f["name"] not in names]
    return change


def _not_utf8(record: bytes, marker: bytes, raw: bytes) -> bytes:
    """``record`` with the string bytes ``marker`` swapped for ``raw``, which no Python str can encode
    (fastavro writes only valid UTF-8). Same length, so the Avro length prefix stays right."""
    if len(marker) != len(raw) or record.count(marker) != 1:
        raise ValueError(f"marker {marker!r} must occur once and match the length of {raw!r}")
    return record.replace(marker, raw)


def bad_records() -> list[tuple[Optional[bytes], Optional[bytes], str, str]]:
    """[(key, value, expected reason, description)]"""
    ev = AvroCodec(schemas.EVENT)
    good = ev.encode(_event(event_id="bad-trunc"))
    now = int(time.time() * 1000)
    # a well-formed record of another schema (a prediction sent to the wrong topic)
    filler = {"string": "x", "long": 1, "int": 1, "double": 0.5, "boolean": True, "array<double>": []}
    wrong = AvroCodec(schemas.PREDICTION).encode(
        {name: filler[base] for name, base, _ in schemas.field_kinds(schemas.PREDICTION)}
    )
    return [
        (b"k", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01garbage", "avro_decode_error", "garbage bytes"),
        (b"k", good[: len(good) // 2], "avro_decode_error", "truncated record"),
        (b"k", b"", "empty_record", "empty value"),
        (b"k", None, "empty_record", "tombstone (null value)"),
        (b"k", good + b"\x00\x01extra", "trailing_bytes", "valid record plus garbage"),
        (b"k", wrong, ANY, "record of another schema"),
        (b"k", ev.encode(_event(event_id="bad-type", event_type="click")), "unknown_event_type", "unknown type"),
        (b"k", ev.encode(_event(event_id="bad-user", user_id="")), "empty_field", "empty user_id"),
        (b"k", ev.encode(_event(event_id="   ")), "empty_field", "blank event_id"),
        (b"k", ev.encode(_event(event_id="bad-neg", event_type="purchase", price=-5.0, quantity=1)),
         "invalid_price", "negative price"),
        (b"k", ev.encode(_event(event_id="bad-nan", event_type="purchase", price=float("nan"), quantity=1)),
         "invalid_price", "NaN price"),
        (b"k", ev.encode(_event(event_id="bad-qty", event_type="purchase", price=1.0, quantity=10_000_000)),
         "invalid_quantity", "absurd quantity"),
        (b"k", ev.encode(_event(event_id="bad-zero", event_type="purchase", price=1.0, quantity=0)),
         "invalid_quantity", "zero quantity"),
        (b"k", ev.encode(_event(event_id="bad-future", event_time=now + 30 * 86_400_000)),
         "invalid_event_time", "30 days in the future"),
        (b"k", ev.encode(_event(event_id="bad-past", event_time=631_152_000_000)),
         "invalid_event_time", "year 1990"),
        (b"k", ev.encode(_event(event_id="x" * 10_000)), "field_too_long", "10k-char id"),
        (b"k", ev.encode(_event(event_id="bad-cat", category_id="")), "empty_field", "empty category"),
        (b"k", ev.encode(_event(event_id="bad-big", event_type="purchase", price=1e12, quantity=1)),
         "invalid_price", "absurd price"),
        (b"k", ev.encode(_event(event_id="bad-inf", event_type="purchase", price=float("inf"), quantity=1)),
         "invalid_price", "infinite price"),
        (b"k", ev.encode(_event(event_id="bad-negq", event_type="purchase", price=1.0, quantity=-3)),
         "invalid_quantity", "negative quantity"),
        (b"k", ev.encode(_event(event_id="bad-item", item_id="i" * 300)), "field_too_long", "300-char item id"),
        # a producer whose schema lets user_id be null, sending null
        (b"k", _encode(_writer(_nullable("user_id")), _event(event_id="bad-null", user_id=None)), ANY,
         "null user_id (writer schema with a nullable user_id)"),
        # a producer on a schema without item_id and category_id (required here)
        (b"k", _encode(_writer(_without("item_id", "category_id")), _event(event_id="bad-missing")), ANY,
         "required fields missing (older writer schema)"),
        (b"k", ev.encode(_event(event_id="bad-huge", shop_id="s" * 500_000)), "field_too_long",
         "500 kB shop id"),
        (b"k", ev.encode(_event(event_id="é" * 300)), "field_too_long", "300 non-ASCII chars"),
        (b"k", ev.encode(_event(event_id="bad-negt", event_time=-1)), "invalid_event_time", "negative timestamp"),
        (b"k", ev.encode(_event(event_id="bad-epoch", event_time=0)), "invalid_event_time", "epoch 0"),
        (b"k", ev.encode(_event(event_id="bad-far", event_time=253_402_300_799_000)), "invalid_event_time",
         "year 9999"),
        (b"k", ev.encode(_event(event_id="bad-blank-item", item_id="\t \n")), "empty_field", "whitespace item id"),
        # C3 starts a 2-byte sequence, '(' cannot continue it; FF never occurs in UTF-8
        (b"k", _not_utf8(ev.encode(_event(event_id="bad-utf8-@@")), b"@@", b"\xc3("), "invalid_utf8",
         "invalid UTF-8 in event_id"),
        (b"k", _not_utf8(ev.encode(_event(event_id="bad-utf8-shop", shop_id="shop-@")), b"shop-@", b"shop-\xff"),
         "invalid_utf8", "invalid UTF-8 in shop_id"),
    ]
