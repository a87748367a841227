"""The profile's bytes in Flink keyed state: versioned, never pickled (a savepoint must not depend on
the Python class layout).

Layout version 3 is schemas/profile_state.avsc. It is written as JSON (orjson) of a positional
array: ``[3, <field values in the schema's field order>]``, each nested record the array of its
field values in its schema order, an Avro array a JSON array, a map an object, null null. The first
byte is therefore ``[``. Why not Avro binary (releases up to this one): fastavro took 32 µs to encode
and 39 µs to decode a profile, orjson ~7 and ~18, and on traffic where most users appear once per
checkpoint the profile operator encodes about one profile per event (bench/bench_profile_core.py).
The cost is ~50% more bytes in RocksDB.

Older bytes stay readable: ``<version byte> + Avro binary`` of layout 3 (profile_state.avsc) or 2
(profile_state_v2.avsc, resolved to 3 with the new fields' defaults). A savepoint of the previous
release restores; the first write of each profile moves it to JSON. Anything else raises
``StateVersionError``: never start a user empty.
"""

from __future__ import annotations

import io
from typing import Any

import fastavro
import orjson

from udfs import schemas
from udfs.item_memory import RecentItem
from udfs.profile import STATE_VERSION, Profile, Tile

_JSON_MARK = ord("[")

# The positional order the code below writes and reads, checked against the schema at import: a
# field added to profile_state.avsc fails here until encode/decode place it (schemas are the one source).
_LAYOUT = {
    "": ["user_id", "version", "first_seen", "last_seen", "n_events", "n_view", "n_cart", "n_fav", "n_purchase",
         "spend", "items", "last_purchase_time", "last_event_id", "tiles", "interest_ref", "interests", "recent",
         "seen_ids", "recent_items", "bought"],
    "tiles": ["start", "n_view", "n_cart", "n_fav", "n_purchase", "spend", "items", "categories", "item_ids"],
    "recent": ["t", "item_id"],
    "seen_ids": ["t", "event_id"],
    "recent_items": ["item_id", "category_id", "t", "weight", "last_view"],
    "bought": ["item_id", "t"],
}


def schema_layout() -> dict[str, list[str]]:
    """Field order of profile_state.avsc: the top record ("") and each array-of-records field."""
    schema = schemas.avro(schemas.PROFILE_STATE)
    out = {"": [f["name"] for f in schema["fields"]]}
    for f in schema["fields"]:
        t = f["type"]
        if isinstance(t, dict) and t.get("type") == "array" and isinstance(t["items"], dict):
            out[f["name"]] = [x["name"] for x in t["items"]["fields"]]
    return out


if schema_layout() != _LAYOUT:
    raise ImportError(f"udfs/profile_codec.py does not match schemas/profile_state.avsc: {schema_layout()}")

# Avro readers of the bytes older releases wrote: version byte -> writer schema. Keyed by the
# schema's own version, not udfs.profile.STATE_VERSION: a test job bumps that one to play a release
# with a new layout (tests/integration/jobs/next_state_version_job.py).
_AVRO_STATE = fastavro.parse_schema(schemas.avro(schemas.PROFILE_STATE))
_AVRO_WRITERS = {schemas.state_version(): _AVRO_STATE,
                 2: fastavro.parse_schema(schemas.avro(schemas.PROFILE_STATE_V2))}


class StateVersionError(ValueError):
    """State written by a release this code cannot read: fail loudly, never start empty."""


def encode_profile(p: Profile) -> bytes:
    # sets and dicts whose order is not meaningful are sorted: equal profiles give equal bytes
    return orjson.dumps([
        STATE_VERSION, p.user_id, p.version, p.first_seen, p.last_seen, p.n_events, p.n_view, p.n_cart, p.n_fav,
        p.n_purchase, p.spend, p.items, p.last_purchase_time, p.last_event_id,
        [[t.start, t.n_view, t.n_cart, t.n_fav, t.n_purchase, t.spend, t.items, sorted(t.categories),
          sorted(t.item_ids)] for _, t in sorted(p.tiles.items())],
        p.interest_ref, p.interests, p.recent,
        [[t, i] for i, t in p.seen_ids.items()],
        [[i, r.category_id, r.t, r.weight, r.last_view] for i, r in sorted(p.recent_items.items())],
        sorted(p.bought.items()),
    ])


def decode_profile(data: bytes) -> Profile:
    if not data:
        raise StateVersionError("empty profile state")
    if data[0] != _JSON_MARK:
        return _from_avro(data)
    r = orjson.loads(data)
    if r[0] != STATE_VERSION:
        raise _unreadable(r[0])
    return Profile(
        *r[1:14],
        tiles={t[0]: Tile(*t[:7], set(t[7]), set(t[8])) for t in r[14]},
        interest_ref=r[15],
        interests=r[16],
        recent=[(t, i) for t, i in r[17]],
        seen_ids={i: t for t, i in r[18]},
        recent_items={x[0]: RecentItem(x[1], x[2], x[3], x[4]) for x in r[19]},
        bought=dict(r[20]),
    )


def _unreadable(version: Any) -> StateVersionError:
    return StateVersionError(
        f"profile state version {version} cannot be read by this release (reads versions "
        f"{sorted(_AVRO_WRITERS)}); restore from a savepoint of a compatible release")


def _from_avro(data: bytes) -> Profile:
    writer = _AVRO_WRITERS.get(data[0])
    if writer is None:
        raise _unreadable(data[0])
    r = fastavro.schemaless_reader(io.BytesIO(data[1:]), writer, _AVRO_STATE)
    return Profile(
        *(r[f] for f in _LAYOUT[""][:13]),
        tiles={t["start"]: Tile(t["start"], t["n_view"], t["n_cart"], t["n_fav"], t["n_purchase"], t["spend"],
                                t["items"], set(t["categories"]), set(t["item_ids"])) for t in r["tiles"]},
        interest_ref=r["interest_ref"],
        interests=dict(r["interests"]),
        recent=[(x["t"], x["item_id"]) for x in r["recent"]],
        seen_ids={x["event_id"]: x["t"] for x in r["seen_ids"]},
        recent_items={x["item_id"]: RecentItem(x["category_id"], x["t"], x["weight"], x["last_view"])
                      for x in r["recent_items"]},
        bought={x["item_id"]: x["t"] for x in r["bought"]},
    )


def encode_avro(p: Profile) -> bytes:
    """The bytes releases before the JSON layout wrote (1 version byte + Avro binary): kept so tests
    prove their savepoints still restore, and as the reference the JSON layout is checked against."""
    rec: dict[str, Any] = {f: getattr(p, f) for f in _LAYOUT[""][:13]}
    rec.update(
        tiles=[dict(zip(_LAYOUT["tiles"], [t.start, t.n_view, t.n_cart, t.n_fav, t.n_purchase, t.spend, t.items,
                                           sorted(t.categories), sorted(t.item_ids)], strict=True))
               for _, t in sorted(p.tiles.items())],
        interest_ref=p.interest_ref,
        interests=p.interests,
        recent=[{"t": t, "item_id": i} for t, i in p.recent],
        seen_ids=[{"t": t, "event_id": i} for i, t in p.seen_ids.items()],
        recent_items=[{"item_id": i, "category_id": r.category_id, "t": r.t, "weight": r.weight,
                       "last_view": r.last_view} for i, r in sorted(p.recent_items.items())],
        bought=[{"item_id": i, "t": t} for i, t in sorted(p.bought.items())],
    )
    buf = io.BytesIO()
    buf.write(bytes([schemas.state_version()]))
    fastavro.schemaless_writer(buf, _AVRO_STATE, rec)
    return buf.getvalue()
