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
    wrong = AvroCodec(schemas.PREDICTION).encode(
        dict(user_id="u", event_id="e", event_type="view", event_time=1, score=0.5, lifecycle="new",
             value_tier="none", model_version="m", scored_at=2, features=[])
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
    ]
