"""Avro binary (schemaless, no registry) of the records in schemas/. Pure Python."""

from __future__ import annotations

import io
from typing import Any

import fastavro

from udfs import schemas


class AvroCodec:
    """Encode/decode one schema of schemas/."""

    def __init__(self, avsc: str) -> None:
        self.schema = fastavro.parse_schema(schemas.avro(avsc))

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.schema, record)
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        return fastavro.schemaless_reader(io.BytesIO(data), self.schema)


_EVENT = None


def encode_event(ev: Any) -> bytes:
    """A UserEvent (udfs.profile.Event) as the producer would have sent it."""
    global _EVENT
    if _EVENT is None:
        _EVENT = AvroCodec(schemas.EVENT)
    return _EVENT.encode(ev._asdict())
