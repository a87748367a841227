"""Loads the files in ``schemas/``: the single source of field names for Avro, CQL, Flink row
types and the model's feature order. Pure Python (no pyflink)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

EVENT = "user_event.avsc"
PREDICTION = "prediction.avsc"
DEAD_LETTER = "dead_letter.avsc"
PROFILE_STATE = "profile_state.avsc"
PROFILE_STATE_V2 = "profile_state_v2.avsc"  # the previous layout, kept to read old savepoints
PROFILE_VIEW = "profile_view.avsc"
MODEL_MESSAGE = "model_message.avsc"
MODEL_REGISTRY_STATE = "model_registry_state.avsc"
SHADOW_SCORE = "shadow_score.avsc"


@cache
def avro_text(name: str) -> str:
    """The schema file's exact text (handed to the JVM glue as is)."""
    return (SCHEMA_DIR / name).read_text(encoding="utf-8")


@cache
def avro(name: str) -> dict[str, Any]:
    return json.loads(avro_text(name))


def field_names(name: str) -> list[str]:
    return [f["name"] for f in avro(name)["fields"]]


def avro_base_type(ftype: Any) -> tuple[str, bool]:
    """(primitive type, optional) of a field type; ``["null", X]`` is an optional X."""
    optional = False
    if isinstance(ftype, list):
        optional = "null" in ftype
        branches = [t for t in ftype if t != "null"]
        if len(branches) != 1:
            raise ValueError(f"only [null, X] unions are supported, got {ftype}")
        ftype = branches[0]
    if isinstance(ftype, dict):
        if ftype["type"] in ("map", "array"):
            inner = ftype["values"] if ftype["type"] == "map" else ftype["items"]
            ftype = f"{ftype['type']}<{avro_base_type(inner)[0]}>"
        else:
            ftype = ftype["type"]
    return ftype, optional


def field_kinds(name: str) -> list[tuple[str, str, bool]]:
    """[(field, avro primitive type, optional)] in schema order."""
    return [(f["name"], *avro_base_type(f["type"])) for f in avro(name)["fields"]]


def event_types() -> list[str]:
    return list(avro(EVENT)["x-event-types"])


def control_types() -> list[str]:
    """Event types that steer the job instead of describing behaviour ('erase')."""
    return list(avro(EVENT).get("x-control-types", []))


def state_version() -> int:
    return int(avro(PROFILE_STATE)["x-state-version"])


@cache
def features_doc() -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / "features.json").read_text(encoding="utf-8"))


def feature_names() -> list[str]:
    return [f["name"] for f in features_doc()["features"]]


def cql_statements(keyspace: str, replication: int) -> list[str]:
    """The CQL of schemas/cassandra.cql with keyspace and replication filled in, one statement each."""
    text = (SCHEMA_DIR / "cassandra.cql").read_text(encoding="utf-8")
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    text = text.format(keyspace=keyspace, replication=replication)
    return [s.strip() for s in text.split(";") if s.strip()]


_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS \S+?\.(\w+)\s*\((.*)\)", re.S)


def cql_tables() -> list[str]:
    """The tables of schemas/cassandra.cql, in declaration order."""
    return [m.group(1) for stmt in cql_statements("ks", 1) if (m := _CREATE_TABLE.search(stmt))]


def cql_columns(table: str) -> dict[str, str]:
    """{column: CQL type} of one table in schemas/cassandra.cql, in declaration order."""
    for stmt in cql_statements("ks", 1):
        m = _CREATE_TABLE.search(stmt)
        if not m or m.group(1) != table:
            continue
        cols: dict[str, str] = {}
        for part in re.split(r",\s*\n", m.group(2)):
            part = part.strip()
            if not part or part.upper().startswith("PRIMARY KEY"):
                continue
            col, ctype = part.split(None, 1)
            cols[col] = ctype.replace("PRIMARY KEY", "").strip()
        return cols
    raise KeyError(f"table {table} not in schemas/cassandra.cql")


# Avro primitive -> CQL type, for the agreement test and for building statements.
AVRO_TO_CQL = {
    "string": "text",
    "long": "bigint",
    "int": "int",
    "double": "double",
    "boolean": "boolean",
    "map<double>": "frozen<map<text, double>>",
    "array<double>": "frozen<list<double>>",
}
