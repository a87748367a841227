"""Avro binary (schemaless, no registry) of the records in schemas/. Pure Python."""

from __future__ import annotations

import io
from typing import Any

import fastavro

from udfs import schemas


class AvroCodec:
    """Encode/decode one schema of schemas/."""

    def __init__(self, avsc: str, logical_types: bool = True) -> None:
        """``logical_types=False`` reads timestamp-millis etc. as their plain type (int), as the
        job sees them, instead of datetime objects."""
        schema = schemas.avro(avsc)
        self.schema = fastavro.parse_schema(schema if logical_types else _strip_logical(schema))

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.schema, record)
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        return fastavro.schemaless_reader(io.BytesIO(data), self.schema)


def _strip_logical(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical(v) for v in node]
    return node


_EVENT = None


def encode_event(ev: Any) -> bytes:
    """A UserEvent (udfs.profile.Event) as the producer would have sent it."""
    global _EVENT
    if _EVENT is None:
        _EVENT = AvroCodec(schemas.EVENT)
    return _EVENT.encode(ev._asdict())
