"""The user profile kept in Flink keyed state: its type, the per-event step and its versioned binary
form. Pure Python: the stream job, the offline replay (training, parity tests) and the benchmark call
the same functions (through udfs.engine), so profiles and features are identical in all three.

A step is a plain function ``step(state, event) -> Step`` (Bytewax / Quix style):

- a duplicate (event id already applied) changes nothing;
- a late event changes nothing and is reported as late, so the job routes it to the late topic.
  Lateness is judged on the USER's own event-time clock: an event is late when it is older than
  the user's latest applied event by more than the allowed lateness. A user's events sit in one
  Kafka partition, in order, so the outcome of every event is a function of that user's events
  alone: partition read order, idle partitions, restarts, rescaling and catch-up speed cannot change
  it, and the offline replay is exact by construction (the job's global watermark is kept for
  metrics only);
- otherwise the event is applied: lifetime counters, event-time tiles (Chronon-style buckets of
  ``tile_ms``, so every window aggregate is exact at tile granularity and an out-of-order event
  lands in its own tile), decayed category interests, the session, recency.

Memory stays bounded by the user's clock: a tile no future window can reach, an event id whose
duplicates would be late anyway, and session history no future event can join are pruned. Pruning
never changes a future feature value (tests check this).
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Optional

from udfs import item_memory, schemas
from udfs.item_memory import RecentItem
from udfs.settings import ProfileSettings

DEFAULT_SETTINGS = ProfileSettings()


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
    def units(self) -> int:
        """Units bought by a purchase (1 when the shop sends no quantity); 0 for other events."""
        if self.event_type != "purchase":
            return 0
        return self.quantity if self.quantity is not None else 1

    @property
    def amount(self) -> float:
        """Money spent by a purchase event; 0 when it has no price."""
        if self.event_type != "purchase" or self.price is None:
            return 0.0
        return self.price * self.units


@dataclass(slots=True)
class Tile:
    start: int
    n_view: int = 0
    n_cart: int = 0
    n_fav: int = 0
    n_purchase: int = 0
    spend: float = 0.0
    items: int = 0
    categories: set[str] = field(default_factory=set)
    item_ids: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Profile:
    """Keyed state of one user (schemas/profile_state.avsc)."""

    user_id: str
    version: int
    first_seen: int
    last_seen: int
    n_events: int = 0
    n_view: int = 0
    n_cart: int = 0
    n_fav: int = 0
    n_purchase: int = 0
    spend: float = 0.0
    items: int = 0
    last_purchase_time: Optional[int] = None
    last_event_id: str = ""
    tiles: dict[int, Tile] = field(default_factory=dict)
    interest_ref: int = 0
    interests: dict[str, float] = field(default_factory=dict)
    recent: list[tuple[int, str]] = field(default_factory=list)  # sorted (event time, item id)
    seen_ids: dict[str, int] = field(default_factory=dict)  # event id -> event time
    # state v3 (udfs.item_memory): what recommendations need
    recent_items: dict[str, RecentItem] = field(default_factory=dict)
    bought: dict[str, int] = field(default_factory=dict)  # item id -> latest purchase time


class Before(NamedTuple):
    """What the features need of the profile as it was before the event."""

    last_seen: int
    last_purchase_time: Optional[int]


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    LATE = "late"
    ERASED = "erased"  # a control event: the user's profile is gone (privacy request)


ERASE = "erase"
assert ERASE in schemas.control_types(), "user_event.avsc x-control-types must list 'erase'"


class Step(NamedTuple):
    outcome: Outcome
    before: Optional[Before]  # None: first event of this user (or state expired)
    state: Optional[Profile]  # the state after the step (None only for a late first event)
    event: Event


_COUNTER = {"view": "n_view", "cart": "n_cart", "fav": "n_fav", "purchase": "n_purchase"}


def tile_start(t: int, s: ProfileSettings) -> int:
    return t - t % s.tile_ms


def user_clock(p: Profile, s: ProfileSettings = DEFAULT_SETTINGS) -> int:
    """The user's event-time clock: an event at or before it is late. Like a watermark with bound
    ``lateness_ms``, but over this user's applied events only."""
    return p.last_seen - s.lateness_ms - 1


def step(state: Optional[Profile], ev: Event, s: ProfileSettings = DEFAULT_SETTINGS) -> Step:
    """Apply ``ev`` unless it is a duplicate or late. Mutates and returns ``state`` (the stream writes
    it back; the offline replay keeps one object per user).

    Expiry: an event ``idle_expiry_ms`` or more after the user's last one starts a fresh profile
    (state TTL only reclaims memory; correctness never depends on it). Every id the old profile
    remembers is older than the new clock, so a copy of one is late, never applied twice."""
    if ev.event_type == ERASE:
        # never late and never a duplicate: forgetting is always applied
        before = Before(state.last_seen, state.last_purchase_time) if state is not None else None
        return Step(Outcome.ERASED, before, None, ev)
    if state is not None and ev.event_time >= state.last_seen + s.idle_expiry_ms:
        state = None  # start over; the fresh profile's version (>= last_seen * 1000) is still above the old one
    before = Before(state.last_seen, state.last_purchase_time) if state is not None else None
    if state is not None:
        if ev.event_id in state.seen_ids:
            return Step(Outcome.DUPLICATE, before, state, ev)
        if ev.event_time <= user_clock(state, s):
            return Step(Outcome.LATE, before, state, ev)
    state = apply_event(state, ev, s)
    prune(state, s)
    return Step(Outcome.APPLIED, before, state, ev)


def erasure_timestamp(state: Optional[Profile], ev: Event) -> int:
    """Cassandra write time (µs) of the tombstones for an erase: above every write the job made for
    this profile (profile rows use ``version``, predictions their event time in µs) and at least the
    erase's own time, so only events after the erasure can write the user again."""
    return max(ev.event_time * 1000, state.version + 1 if state is not None else 0)


def apply_event(state: Optional[Profile], ev: Event, s: ProfileSettings = DEFAULT_SETTINGS) -> Profile:
    """The profile after ``ev`` (no duplicate or lateness check). Mutates ``state``."""
    t = ev.event_time
    if state is None:
        state = Profile(user_id=ev.user_id, version=0, first_seen=t, last_seen=t, interest_ref=t)
    p = state
    p.n_events += 1
    counter = _COUNTER[ev.event_type]
    setattr(p, counter, getattr(p, counter) + 1)
    p.first_seen = min(p.first_seen, t)
    p.last_seen = max(p.last_seen, t)
    # Cassandra write timestamp: increases with every event and stays above any earlier profile of
    # this user, even one written before the state expired (expiry needs last_seen to move on).
    p.version = max(p.version + 1, p.last_seen * 1000)
    if ev.event_type == "purchase":
        p.spend += ev.amount
        p.items += ev.units
        if p.last_purchase_time is None or t > p.last_purchase_time:
            p.last_purchase_time = t
    p.last_event_id = ev.event_id

    start = tile_start(t, s)
    tile = p.tiles.get(start)
    if tile is None:
        tile = p.tiles[start] = Tile(start)
    setattr(tile, counter, getattr(tile, counter) + 1)
    tile.spend += ev.amount
    tile.items += ev.units
    tile.categories.add(ev.category_id)
    tile.item_ids.add(ev.item_id)

    _add_interest(p, ev, s)
    item_memory.observe(p.recent_items, p.bought, ev.event_type, ev.item_id, ev.category_id, t, p.last_seen, s)
    bisect.insort(p.recent, (t, ev.item_id))
    p.seen_ids[ev.event_id] = t
    return p


def _decay(dt_ms: int, s: ProfileSettings) -> float:
    return math.pow(2.0, -dt_ms / s.interest_half_life_ms)


def _add_interest(p: Profile, ev: Event, s: ProfileSettings) -> None:
    """Exponentially decayed category weights, expressed at time ``interest_ref`` (the latest event
    time): moving the reference forward scales every weight; an older event adds a decayed weight."""
    t = ev.event_time
    if t > p.interest_ref:
        f = _decay(t - p.interest_ref, s)
        for c in p.interests:
            p.interests[c] *= f
        p.interest_ref = t
    w = s.interest_weights[ev.event_type] * _decay(p.interest_ref - t, s)
    p.interests[ev.category_id] = p.interests.get(ev.category_id, 0.0) + w
    if len(p.interests) > s.interest_max_categories:
        weakest = min(p.interests.items(), key=lambda kv: (kv[1], kv[0]))[0]
        del p.interests[weakest]


def _chain_start(recent: list[tuple[int, str]], end: int, gap: int) -> int:
    """Index of the first event of the session (chain of gaps <= gap) that contains index ``end``."""
    i = end
    while i > 0 and recent[i][0] - recent[i - 1][0] <= gap:
        i -= 1
    return i


def prune(p: Profile, s: ProfileSettings = DEFAULT_SETTINGS) -> None:
    """Drop what no future (non-late) event of this user can use: every such event has a time after
    the user's clock, and the clock only moves forward."""
    clock = user_clock(p, s)
    oldest_needed = tile_start(clock, s) - s.max_window_ms
    if p.tiles and min(p.tiles) <= oldest_needed:
        for start in [st for st in p.tiles if st <= oldest_needed]:
            del p.tiles[start]
    # rebuilt only when an id fell behind the clock (min() runs in C; the rebuild did, every event)
    if p.seen_ids and min(p.seen_ids.values()) <= clock:
        p.seen_ids = {i: t for i, t in p.seen_ids.items() if t > clock}
    # Session history: a future event can only join events after clock - gap, and everything
    # chained to them; earlier sessions are closed for good.
    recent = p.recent
    first_open = bisect.bisect_right(recent, (clock - s.session_gap_ms, "\U0010ffff"))
    keep_from = _chain_start(recent, first_open, s.session_gap_ms) if first_open < len(recent) else len(recent)
    keep_from = min(keep_from, _chain_start(recent, len(recent) - 1, s.session_gap_ms)) if recent else 0
    keep_from = max(keep_from, len(recent) - s.max_session_events)
    if keep_from > 0:
        del recent[:keep_from]


# --- derived values ------------------------------------------------------------------------------


class Session(NamedTuple):
    start: int
    last: int
    events: int
    distinct_items: int


def current_session(p: Profile, s: ProfileSettings = DEFAULT_SETTINGS) -> Session:
    """The session holding the latest event: the longest run of events with gaps <= session gap."""
    if not p.recent:
        return Session(p.last_seen, p.last_seen, 0, 0)
    end = len(p.recent) - 1
    first = _chain_start(p.recent, end, s.session_gap_ms)
    run = p.recent[first:]
    return Session(run[0][0], run[-1][0], len(run), len({item for _, item in run}))


def window_aggregates(p: Profile, at: int, s: ProfileSettings = DEFAULT_SETTINGS) -> dict[str, float]:
    """Aggregates of every window ending at the tile of ``at``: {"n_view_1h": ..., ...}."""
    end = tile_start(at, s)
    out: dict[str, float] = {}
    tiles = p.tiles.values()
    for name, horizon in s.windows.items():
        lo = end - horizon
        n_view = n_cart = n_fav = n_purchase = items = 0
        spend = 0.0
        cats: set[str] = set()
        item_ids: set[str] = set()
        for tile in tiles:
            if lo < tile.start <= end:
                n_view += tile.n_view
                n_cart += tile.n_cart
                n_fav += tile.n_fav
                n_purchase += tile.n_purchase
                spend += tile.spend
                items += tile.items
                cats |= tile.categories
                item_ids |= tile.item_ids
        k = _aggregate_names(name)
        out[k[0]] = float(n_view)
        out[k[1]] = float(n_cart)
        out[k[2]] = float(n_fav)
        out[k[3]] = float(n_purchase)
        out[k[4]] = spend
        out[k[5]] = float(items)
        out[k[6]] = float(len(cats))
        out[k[7]] = float(len(item_ids))
    return out


@functools.cache
def _aggregate_names(window: str) -> tuple[str, ...]:
    # built once per window name, not 8 f-strings per window and event (the engine's hottest loop)
    return tuple(f"{m}_{window}" for m in ("n_view", "n_cart", "n_fav", "n_purchase", "spend", "items",
                                           "distinct_categories", "distinct_items"))


def interest_shares(p: Profile) -> dict[str, float]:
    total = sum(p.interests.values())
    if total <= 0:
        return {}
    return {c: w / total for c, w in p.interests.items()}


def top_categories(p: Profile, k: int, shares: Optional[dict[str, float]] = None) -> dict[str, float]:
    """The ``k`` largest interest shares, ties by category. ``shares``: interest_shares(p) when the
    caller already has them."""
    shares = interest_shares(p) if shares is None else shares
    best = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return dict(best)


def lifecycle(p: Profile, as_of: int, s: ProfileSettings = DEFAULT_SETTINGS) -> str:
    """new (first seen recently) | active | at-risk (quiet for a while) | dormant, as of ``as_of``."""
    quiet = as_of - p.last_seen
    if quiet >= s.lifecycle_dormant_ms:
        return "dormant"
    if quiet >= s.lifecycle_at_risk_ms:
        return "at-risk"
    if as_of - p.first_seen < s.lifecycle_new_ms:
        return "new"
    return "active"


def value_tier(p: Profile, as_of: int, s: ProfileSettings = DEFAULT_SETTINGS) -> str:
    """RFM tier: none (never bought) | low | medium | high. High and medium need a purchase within
    value_recent_ms; money counts where the shop sends prices, purchase counts everywhere."""
    if p.n_purchase == 0 or p.last_purchase_time is None:
        return "none"
    recent = as_of - p.last_purchase_time < s.value_recent_ms
    if recent and (p.n_purchase >= s.value_high_purchases or p.spend >= s.value_high_spend):
        return "high"
    if recent and (p.n_purchase >= s.value_mid_purchases or p.spend >= s.value_mid_spend):
        return "medium"
    return "low"


def profile_view(
    p: Profile, s: ProfileSettings = DEFAULT_SETTINGS, aggregates: Optional[dict[str, float]] = None,
    session: Optional[Session] = None, shares: Optional[dict[str, float]] = None,
) -> dict[str, Any]:
    """The consumer-facing profile (schemas/profile_view.avsc), as of the latest event. ``aggregates``,
    ``session`` and ``shares``: window_aggregates(p, p.last_seen), current_session(p) and
    interest_shares(p) when the caller already has them (the features of every applied event do)."""
    session = current_session(p, s) if session is None else session
    view: dict[str, Any] = {f: getattr(p, f) for f in _VIEW_FROM_STATE}
    view.update(
        session_start=session.start,
        session_events=session.events,
        lifecycle=lifecycle(p, p.last_seen, s),
        value_tier=value_tier(p, p.last_seen, s),
        top_categories=top_categories(p, s.top_k, shares),
        aggregates=aggregates if aggregates is not None else window_aggregates(p, p.last_seen, s),
    )
    return {f: view[f] for f in _VIEW_FIELDS}


_VIEW_FIELDS = schemas.field_names(schemas.PROFILE_VIEW)
# view fields copied from the state as they are (the others are derived above)
_VIEW_FROM_STATE = [f for f in _VIEW_FIELDS if f in schemas.field_names(schemas.PROFILE_STATE)]


# --- versioned state serialisation: udfs/profile_codec.py -----------------------------------------

# the layout version (profile_state.avsc); part of the state guard's fingerprint
STATE_VERSION = schemas.state_version()


# --- offline replay ------------------------------------------------------------------------------


def replay_steps(events: Iterable[Event], s: ProfileSettings = DEFAULT_SETTINGS) -> Iterator[Step]:
    """Offline: every event through ``step`` in the order given (per user, the order Kafka holds),
    profiles in a dict. This is the correctness reference of the stream job: its outcome for every
    event depends on the user's own events only."""
    state: dict[str, Profile] = {}
    for ev in events:
        result = step(state.get(ev.user_id), ev, s)
        if result.state is not None:
            state[ev.user_id] = result.state
        elif result.outcome is Outcome.ERASED:
            state.pop(ev.user_id, None)
        yield result


def replay(events: Iterable[Event], s: ProfileSettings = DEFAULT_SETTINGS) -> Iterator[tuple]:
    """(before, profile after, event) for every applied event. The profile object is the live
    state: read it before advancing the iterator."""
    for r in replay_steps(events, s):
        if r.outcome is Outcome.APPLIED:
            yield r.before, r.state, r.event
