"""Read a user's own event file (JSON Lines in the user_event.avsc shape, or CSV with a column mapping)
and check every record against schemas/user_event.avsc before it reaches Kafka (pure Python).

The checks are the JVM validator's (jvm/.../EventDeserializer.java), read from the same schema: field
types, required vs optional fields, valid UTF-8 non-blank strings of at most x-max-string-length characters,
x-min/x-max bounds, event_time at most x-max-future-ms ahead of now, event_type in x-event-types or
x-control-types. A record that fails is reported with its line number and skipped; it would otherwise
end in the dead-letter topic, far from the file it came from.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Optional, Union

from udfs import schemas
from udfs.profile import Event

FORMATS = ("jsonl", "csv")
INT32 = (-(2**31), 2**31 - 1)


class BadRecord(ValueError):
    """One record breaks a rule of user_event.avsc; the message says which."""


class FileError(ValueError):
    """The file as a whole cannot be read (unknown format, CSV header without a mapped column)."""


@dataclass(frozen=True)
class Rules:
    """What user_event.avsc allows, in the form the checks use."""

    fields: tuple[tuple[str, str, bool], ...]  # (name, avro type, optional) in schema order
    types: frozenset[str]
    max_string: int
    bounds: Mapping[str, tuple[Optional[float], Optional[float]]]
    max_future_ms: Mapping[str, int]

    @classmethod
    def from_schema(cls) -> Rules:
        doc = schemas.avro(schemas.EVENT)
        bounds, future = {}, {}
        for f in doc["fields"]:
            if "x-min" in f or "x-max" in f:
                bounds[f["name"]] = (f.get("x-min"), f.get("x-max"))
            if "x-max-future-ms" in f:
                future[f["name"]] = int(f["x-max-future-ms"])
        return cls(
            fields=tuple(schemas.field_kinds(schemas.EVENT)),
            types=frozenset(schemas.event_types() + schemas.control_types()),
            max_string=int(doc.get("x-max-string-length", 2**31)),
            bounds=bounds,
            max_future_ms=future,
        )


def _number(name: str, value: Any, kind: str) -> Union[int, float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRecord(f"{name}: {value!r} is not a number ({kind})")
    if kind in ("int", "long"):
        if isinstance(value, float):
            if not value.is_integer():
                raise BadRecord(f"{name}: {value!r} is not a whole number ({kind})")
            value = int(value)
        if kind == "int" and not INT32[0] <= value <= INT32[1]:
            raise BadRecord(f"{name}: {value} does not fit an Avro int")
        return value
    if not math.isfinite(value):
        raise BadRecord(f"{name}: {value!r} is not finite")
    return float(value)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check(record: Mapping[str, Any], rules: Rules, now_ms: Optional[int] = None) -> Event:
    """The record as an Event, or BadRecord naming the first broken rule."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    known = {name for name, _, _ in rules.fields}
    unknown = sorted(set(record) - known)
    if unknown:
        raise BadRecord(f"unknown field(s) {', '.join(unknown)}; user_event.avsc has {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for name, kind, optional in rules.fields:
        value = record.get(name)
        if value is None:
            if not optional:
                raise BadRecord(f"missing field {name}")
            values[name] = None
            continue
        if kind == "string":
            if not isinstance(value, str):
                raise BadRecord(f"{name}: {value!r} is not a string")
            if not _utf8(value):
                # a lone surrogate, from a JSON escape such as \ud800: no UTF-8 for it, the job's invalid_utf8
                raise BadRecord(f"{name} is not valid UTF-8 (a lone surrogate)")
            if not value.strip():
                raise BadRecord(f"{name} is empty")
            if len(value) > rules.max_string:
                raise BadRecord(f"{name} has {len(value)} characters > {rules.max_string}")
        elif kind in ("int", "long", "double", "float"):
            value = _number(name, value, kind)
            lo, hi = rules.bounds.get(name, (None, None))
            if lo is not None and value < lo:
                raise BadRecord(f"{name}={value} below the minimum {lo}")
            if hi is not None and value > hi:
                raise BadRecord(f"{name}={value} above the maximum {hi}")
            if name in rules.max_future_ms and value > now_ms + rules.max_future_ms[name]:
                raise BadRecord(f"{name}={value} is more than {rules.max_future_ms[name]} ms in the future")
        values[name] = value
    if values["event_type"] not in rules.types:
        raise BadRecord(f"event_type {values['event_type']!r} is not one of {', '.join(sorted(rules.types))}")
    return Event(**values)


def parse_time(text: str, unit: str = "ms") -> int:
    """A CSV event_time: whole epoch ``unit``s (ms or s), or ISO-8601 (no zone = UTC)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text) * (1000 if unit == "s" else 1)
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRecord(f"event_time: {text!r} is neither epoch {unit} nor ISO-8601") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1000)


def _csv_value(name: str, kind: str, text: str, time_unit: str) -> Any:
    """A CSV cell as the field's Avro type; an empty cell is a missing value."""
    if text is None or text.strip() == "":
        return None
    if name == "event_time":
        return parse_time(text, time_unit)
    if kind in ("int", "long"):
        try:
            return int(text.strip())
        except ValueError:
            raise BadRecord(f"{name}: {text!r} is not a whole number") from None
    if kind in ("double", "float"):
        try:
            return float(text.strip())
        except ValueError:
            raise BadRecord(f"{name}: {text!r} is not a number") from None
    return text


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    if last in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if last in (".csv", ".tsv"):
        return "csv"
    raise FileError(f"cannot tell the format of {path.name} from its name: give --format {'|'.join(FORMATS)}")


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")
    # undecodable bytes must fail their own line, not the whole file
    return io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")


def _undecodable(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


Item = tuple[int, Union[Event, str]]  # (line number, the event or why the line is bad)


def read_jsonl(path: Path, rules: Rules, now_ms: Optional[int] = None) -> Iterator[Item]:
    """(line number, Event or reason) per non-blank line of a JSON Lines file."""
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if _undecodable(line):
                yield lineno, "not UTF-8"
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, f"not JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(record, dict):
                yield lineno, f"a JSON {type(record).__name__}, not an object with the fields of user_event.avsc"
                continue
            try:
                yield lineno, check(record, rules, now_ms)
            except BadRecord as exc:
                yield lineno, str(exc)


def parse_mapping(pairs: list[str], rules: Rules, what: str) -> dict[str, str]:
    """``FIELD=VALUE`` items (repeated or comma separated) as {field: value}; fields must be the schema's."""
    known = [name for name, _, _ in rules.fields]
    out: dict[str, str] = {}
    for item in (p for pair in pairs for p in pair.split(",")):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise FileError(f"{what}: {item!r} is not FIELD=VALUE")
        if name not in known:
            raise FileError(f"{what}: {name!r} is no field of user_event.avsc ({', '.join(known)})")
        out[name] = value.strip()
    return out


def read_csv(
    path: Path,
    rules: Rules,
    columns: Optional[Mapping[str, str]] = None,
    constants: Optional[Mapping[str, str]] = None,
    time_unit: str = "ms",
    delimiter: str = ",",
    now_ms: Optional[int] = None,
) -> Iterator[Item]:
    """(line number, Event or reason) per CSV row. The header names the columns; ``columns`` maps a
    field to another column name (default: the column named like the field), ``constants`` sets a
    field for every row (e.g. shop_id). A field with neither is missing (null when optional)."""
    columns = dict(columns or {})
    constants = dict(constants or {})
    with _open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        index = {name.strip(): i for i, name in enumerate(header)}
        source: dict[str, int] = {}
        for name, _, _ in rules.fields:
            if name in constants:
                continue
            column = columns.get(name, name)
            if column in index:
                source[name] = index[column]
            elif name in columns:
                raise FileError(f"column {column!r} (mapped to {name}) is not in the header: {', '.join(header)}")
        # columns no field reads are ignored: a shop's export has more than the schema
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, f"not CSV ({exc})"
                continue
            lineno = reader.line_num  # physical line where the row ends (quoted newlines count)
            if not any(cell.strip() for cell in row):
                continue
            if any(_undecodable(cell) for cell in row):
                yield lineno, "not UTF-8"
                continue
            if len(row) != len(header):
                yield lineno, f"{len(row)} columns, the header has {len(header)}"
                continue
            try:
                record: dict[str, Any] = {}
                for name, kind, _ in rules.fields:
                    text = constants[name] if name in constants else (row[source[name]] if name in source else None)
                    record[name] = _csv_value(name, kind, text, time_unit)
                yield lineno, check(record, rules, now_ms)
            except BadRecord as exc:
                yield lineno, str(exc)
