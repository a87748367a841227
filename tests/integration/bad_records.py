"""A corpus of deliberately broken user-events records and the DLQ reason each must get."""

from __future__ import annotations

import time
from typing import Optional

from tools.kafka_io import AvroCodec
from udfs import schemas

ANY = "*"  # any reason is right, as long as the record lands in the DLQ


def _event(**over: object) -> dict:
    base = dict(event_id="bad-0", user_id="bad-user", event_type="view", item_id="i1", category_id="c1",
                price=None, quantity=None, event_time=1_511_600_000_000, session_id=None, shop_id="test")
    base.update(over)
    return base


def bad_records() -> list[tuple[Optional[bytes], Optional[bytes], str, str]]:
    """[(key, value, expected reason, description)]"""
    ev = AvroCodec(schemas.EVENT)
    good = ev.encode(_event(event_id="bad-trunc"))
    now = int(time.time() * 1000)
    # a well-formed record of another schema (a prediction sent to the wrong topic)
    filler = {"string": "x", "long": 1, "int": 1, "double": 0.5, "array<double>": []}
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
    ]
