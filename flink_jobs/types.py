"""Flink row types derived from the Avro schemas in schemas/ (never typed by hand)."""

from __future__ import annotations

from pyflink.common.typeinfo import TypeInformation, Types

from udfs import schemas

_AVRO_TO_FLINK = {
    "string": Types.STRING,
    "long": Types.LONG,
    "int": Types.INT,
    "double": Types.DOUBLE,
    "float": Types.FLOAT,
    "boolean": Types.BOOLEAN,
    "bytes": lambda: Types.PRIMITIVE_ARRAY(Types.BYTE()),
    "map<double>": lambda: Types.MAP(Types.STRING(), Types.DOUBLE()),
    "array<double>": lambda: Types.BASIC_ARRAY(Types.DOUBLE()),
}


def row_type(avsc: str, extra: list[tuple[str, TypeInformation]] | None = None) -> TypeInformation:
    """Named row type of an Avro record schema's fields, plus optional extra columns."""
    names, types = [], []
    for name, base, _optional in schemas.field_kinds(avsc):
        names.append(name)
        types.append(_AVRO_TO_FLINK[base]())
    for name, t in extra or []:
        names.append(name)
        types.append(t)
    return Types.ROW_NAMED(names, types)


def prediction_type() -> TypeInformation:
    return row_type(schemas.PREDICTION)


def write_request_type() -> TypeInformation:
    """Input of the JVM Cassandra sink (udfs.cassandra_rows.WriteRequest, CassandraSink.elementType())."""
    return Types.ROW_NAMED(["op", "user_id", "write_ts", "payload"],
                           [Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING()])
