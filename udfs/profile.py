"""The user profile kept in Flink keyed state: its type, the per-event update and its versioned
binary form. Pure Python: the stream job and the offline replay (training, parity tests) call the
same functions, so features are identical in both.

Style: a step is a plain function ``apply_event(state, event) -> state`` (Bytewax / Quix style).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, NamedTuple, Optional

import fastavro

from udfs import schemas


class Event(NamedTuple):
    """One accepted user event; fields in the order of schemas/user_event.avsc (a test checks)."""

    event_id: str
    user_id: str
    event_type: str
    item_id: str
    category_id: str
    price: Optional[float]
    quantity: Optional[int]
    event_time: int  # epoch ms
    session_id: Optional[str]
    shop_id: Optional[str]

    @property
    def amount(self) -> float:
        """Money spent by a purchase event; 0 when it has no price."""
        if self.event_type != "purchase" or self.price is None:
            return 0.0
        return self.price * (self.quantity if self.quantity is not None else 1)


@dataclass(slots=True)
class Profile:
    """Keyed state of one user; fields in the order of schemas/profile_state.avsc."""

    user_id: str
    first_seen: int
    last_seen: int
    n_events: int = 0
    n_view: int = 0
    n_cart: int = 0
    n_fav: int = 0
    n_purchase: int = 0
    spend: float = 0.0
    last_purchase_time: Optional[int] = None
    last_event_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_COUNTER = {"view": "n_view", "cart": "n_cart", "fav": "n_fav", "purchase": "n_purchase"}


def apply_event(state: Optional[Profile], ev: Event) -> Profile:
    """The profile after ``ev``. Returns a new object; ``state`` is not modified."""
    if state is None:
        state = Profile(user_id=ev.user_id, first_seen=ev.event_time, last_seen=ev.event_time)
    p = replace(state)
    p.n_events += 1
    counter = _COUNTER[ev.event_type]
    setattr(p, counter, getattr(p, counter) + 1)
    p.first_seen = min(p.first_seen, ev.event_time)
    p.last_seen = max(p.last_seen, ev.event_time)
    if ev.event_type == "purchase":
        p.spend += ev.amount
        if p.last_purchase_time is None or ev.event_time > p.last_purchase_time:
            p.last_purchase_time = ev.event_time
    p.last_event_id = ev.event_id
    return p


# --- versioned state serialisation ---------------------------------------------------------------
# 1 version byte + Avro binary of profile_state.avsc. Never pickle: a savepoint must not depend on
# the Python class layout. A new layout gets a new version byte and a reader for the old one.

STATE_VERSION = schemas.state_version()
_STATE_SCHEMA = fastavro.parse_schema(schemas.avro(schemas.PROFILE_STATE))


class StateVersionError(ValueError):
    """State written by a release this code cannot read: fail loudly, never start empty."""


def encode_profile(p: Profile) -> bytes:
    buf = io.BytesIO()
    buf.write(bytes([STATE_VERSION]))
    fastavro.schemaless_writer(buf, _STATE_SCHEMA, p.as_dict())
    return buf.getvalue()


def decode_profile(data: bytes) -> Profile:
    if not data:
        raise StateVersionError("empty profile state")
    version = data[0]
    if version != STATE_VERSION:
        raise StateVersionError(
            f"profile state version {version} cannot be read by this release "
            f"(reads version {STATE_VERSION})"
        )
    rec = fastavro.schemaless_reader(io.BytesIO(data[1:]), _STATE_SCHEMA)
    return Profile(**rec)


PROFILE_FIELDS = [f.name for f in fields(Profile)]


def replay(events: Iterable[Event]) -> Iterator[tuple[Optional[Profile], Profile, Event]]:
    """Offline replay: per event (profile before, profile after, event), users kept apart, in the
    order given (the stream's order per key)."""
    state: dict[str, Profile] = {}
    for ev in events:
        before = state.get(ev.user_id)
        after = apply_event(before, ev)
        state[ev.user_id] = after
        yield before, after, ev
