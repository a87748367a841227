""""Popular right now": weighted item counts per category over a sliding event-time window. Pure
Python, in two stages that map onto Flink:

1. keyed by category (``step``): a ``CategoryWindow`` per category holds one bounded counter table
   per slide bucket; on event-time timers (every ``emit_ms`` if the category counted an event, and
   at each slide boundary) the stage emits the category's ``CategoryTop`` (``top``);
2. broadcast (``merge``): the profile operator keeps a bounded ``Snapshot`` {category: top} that
   every user's recommendation reads locally, with no per-event lookup to an external store.

``GLOBAL`` is one more key whose window counts every event (all categories): the cold-start list and
the popularity baseline.

Bounds and why they are safe:
- per (category, bucket) at most ``bucket_items`` counters, kept with Space-Saving (Metwally et
  al. 2005): a new item replaces the smallest counter (ties: smallest item id) and inherits its count
  + its weight. Every item with more than 1/``bucket_items`` of the bucket's weight is kept and no
  count is under-estimated while kept; the error of a count is at most the smallest counter. The
  snapshot shows ``top_items`` << ``bucket_items`` items, the head of the distribution, where the
  counts are exact or nearly so (bench/bench_recommend.py measures the overlap with exact counts);
- per category at most (window + lateness) / slide + 1 buckets: older buckets no query can read are
  pruned on the category's own clock (its latest counted event);
- the snapshot keeps the ``max_categories`` categories with the largest window weight (ties by id).
  A user interested in a dropped (rarely active) category still gets their own items.

Determinism: same events in the same order, same state (ties by item id everywhere). An event more
than ``lateness_ms`` older than its category's clock is not counted (as a late event in the profile).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Protocol

import orjson

from udfs.profile import Event
from udfs.settings import PopularitySettings

DEFAULT_POPULARITY = PopularitySettings()
GLOBAL = "*"  # the all-categories key (no Taobao or shop category id is "*")
WINDOW_VERSION = 1
TOP_VERSION = 1


@dataclass(slots=True)
class CategoryWindow:
    """Keyed state of one category (or GLOBAL)."""

    category_id: str
    clock: int  # latest counted event time (epoch ms)
    buckets: dict[int, dict[str, int]] = field(default_factory=dict)  # bucket start -> item -> count
    # per full bucket: a min-heap of (count, item) with stale entries, so an eviction costs
    # O(log capacity) instead of a scan of every counter (derived: not encoded, not compared)
    heaps: dict[int, list[tuple[int, str]]] = field(default_factory=dict, compare=False, repr=False)


class CategoryTop(NamedTuple):
    """A category's most popular items in the window ending at ``as_of`` (what is broadcast)."""

    category_id: str
    as_of: int
    total: int  # weight of every counted event of the window
    items: tuple[tuple[str, int], ...]  # (item id, count), count descending then item id


Snapshot = dict[str, CategoryTop]


def bucket_start(t: int, s: PopularitySettings) -> int:
    return t - t % s.slide_ms


def step(
    state: Optional[CategoryWindow], ev: Event, s: PopularitySettings = DEFAULT_POPULARITY, key: Optional[str] = None
) -> CategoryWindow:
    """Count ``ev`` in the window of ``key`` (default: the event's category). Mutates and returns ``state``."""
    t = ev.event_time
    if state is None:
        state = CategoryWindow(key if key is not None else ev.category_id, t)
    w = s.event_weights.get(ev.event_type, 0)
    if w <= 0 or t < state.clock - s.lateness_ms:
        return state
    capacity = s.global_bucket_items if state.category_id == GLOBAL else s.bucket_items
    b = bucket_start(t, s)
    counters = state.buckets.setdefault(b, {})
    if ev.item_id in counters:
        counters[ev.item_id] += w
    elif len(counters) < capacity:
        counters[ev.item_id] = w
    else:  # Space-Saving: the newcomer takes over the smallest counter (ties: smallest item id)
        floor, victim = _pop_min(state, b, counters)
        del counters[victim]
        counters[ev.item_id] = floor + w
    if b in state.heaps:
        heapq.heappush(state.heaps[b], (counters[ev.item_id], ev.item_id))
    if t > state.clock:
        state.clock = t
        prune(state, s)
    return state


def _pop_min(state: CategoryWindow, b: int, counters: dict[str, int]) -> tuple[int, str]:
    """The smallest (count, item) of a full bucket. Counts only grow, so a heap entry whose count
    differs from the counter is stale and skipped; the heap is rebuilt when stale entries pile up."""
    heap = state.heaps.get(b)
    if heap is None or len(heap) > 4 * len(counters):
        heap = state.heaps[b] = [(c, i) for i, c in counters.items()]
        heapq.heapify(heap)
    while True:
        c, i = heapq.heappop(heap)
        if counters.get(i) == c:
            return c, i


def prune(state: CategoryWindow, s: PopularitySettings = DEFAULT_POPULARITY) -> None:
    """Drop buckets no window ending at or after the oldest countable time can reach."""
    oldest_needed = bucket_start(state.clock - s.lateness_ms, s) - s.window_ms
    for b in [b for b in state.buckets if b <= oldest_needed]:
        del state.buckets[b]
        state.heaps.pop(b, None)


def top(state: CategoryWindow, at: int, s: PopularitySettings = DEFAULT_POPULARITY) -> CategoryTop:
    """The window ending in the bucket of ``at``: the ``window_ms / slide_ms`` buckets up to it."""
    end = bucket_start(at, s)
    lo = end - s.window_ms
    sums: dict[str, int] = {}
    for b, counters in state.buckets.items():
        if lo < b <= end:
            for item, c in counters.items():
                sums[item] = sums.get(item, 0) + c
    k = s.global_items if state.category_id == GLOBAL else s.top_items
    order = lambda kv: (-kv[1], kv[0])  # noqa: E731 - count descending, then item id
    # heapq.nsmallest == sorted(...)[:k] (documented); it pays off only for long lists such as the
    # all-categories window's (up to ~25k items, at every checkpoint)
    best = heapq.nsmallest(k, sums.items(), key=order) if len(sums) > 8 * k else sorted(sums.items(), key=order)[:k]
    return CategoryTop(state.category_id, at, sum(sums.values()), tuple(best))


def merge(snapshot: Snapshot, t: CategoryTop, s: PopularitySettings = DEFAULT_POPULARITY) -> Snapshot:
    """``merge_all`` of one top."""
    return merge_all(snapshot, (t,), s)


def merge_all(snapshot: Snapshot, tops: Iterable[CategoryTop], s: PopularitySettings = DEFAULT_POPULARITY) -> Snapshot:
    """Put categories' latest tops into the snapshot (an empty top removes its category; an update
    older than the one held changes nothing), then keep the ``max_categories`` most active categories
    (+ GLOBAL). Mutates and returns ``snapshot``. One eviction pass per message, not per top: a
    profile subtask receives every changed category's top each checkpoint, and a scan of the full
    snapshot per top cost more CPU than the profile work (measured in the job, ~25% of it)."""
    for t in tops:
        old = snapshot.get(t.category_id)
        if old is not None and old.as_of > t.as_of:
            continue
        if t.items:
            snapshot[t.category_id] = t
        else:
            snapshot.pop(t.category_id, None)
    excess = len(snapshot) - (GLOBAL in snapshot) - s.max_categories
    if excess > 0:
        weakest = heapq.nsmallest(excess, ((c.total, c.category_id) for c in snapshot.values()
                                           if c.category_id != GLOBAL))
        for _, category in weakest:
            del snapshot[category]
    return snapshot


def merge_snapshots(parts: Iterable[Snapshot], s: PopularitySettings = DEFAULT_POPULARITY) -> Snapshot:
    """One snapshot from the snapshots of parallel subtasks (each holds a disjoint set of categories)."""
    out: Snapshot = {}
    for part in parts:
        merge_all(out, (part[c] for c in sorted(part)), s)
    return out


def fresh(t: CategoryTop, now: int, s: PopularitySettings = DEFAULT_POPULARITY) -> bool:
    """False when the whole window of ``t`` lies before ``now``'s window (a category gone quiet
    whose empty update has not arrived yet)."""
    return bucket_start(t.as_of, s) > bucket_start(now, s) - s.window_ms


class PopularityIndex:
    """Both stages in one process (offline replay, tests, bench): keyed windows + the snapshot.
    Emission follows event time like the keyed stage's timers: at each ``emit_ms`` tick the windows
    that counted an event since the last tick re-emit their top as of the tick, and at each slide
    boundary every window does (expiry). So at any time ``snapshot[c] == top(windows[c], tick)``
    for the latest tick, and a recommendation made at ``now`` sees the events before that tick."""

    def __init__(self, s: PopularitySettings = DEFAULT_POPULARITY, with_global: bool = True) -> None:
        self.s = s
        self.with_global = with_global
        self.windows: dict[str, CategoryWindow] = {}
        self.snapshot: Snapshot = {}
        self.tick: Optional[int] = None
        self._dirty: set[str] = set()

    def observe(self, ev: Event) -> None:
        self.advance(ev.event_time)
        keys = (ev.category_id, GLOBAL) if self.with_global else (ev.category_id,)
        for key in keys:
            self.windows[key] = step(self.windows.get(key), ev, self.s, key)
            self._dirty.add(key)

    def advance(self, now: int) -> None:
        """Event time reached ``now``: emit at a new tick (all windows at a new slide bucket)."""
        tick = now - now % self.s.emit_ms
        if self.tick is not None and tick <= self.tick:
            return
        new_slide = self.tick is None or bucket_start(tick, self.s) > bucket_start(self.tick, self.s)
        self.tick = tick
        keys = sorted(self.windows) if new_slide else sorted(self._dirty)
        self._dirty.clear()
        tops = []
        for key in keys:
            w = self.windows[key]
            t = top(w, max(tick, w.clock), self.s)
            tops.append(t)
            if not t.items and bucket_start(w.clock, self.s) <= bucket_start(tick, self.s) - self.s.window_ms:
                del self.windows[key]  # nothing left in any future window: clear the keyed state
        merge_all(self.snapshot, tops, self.s)


# --- versioned encodings (Flink state / broadcast): 1 version byte + compact JSON ----------------


def encode_window(w: CategoryWindow) -> bytes:
    body = {"c": w.category_id, "k": w.clock,
            "b": [[b, sorted(w.buckets[b].items())] for b in sorted(w.buckets)]}
    # orjson: every changed window is encoded at every checkpoint (the all-categories one holds up to
    # 24 x 1,024 counters); stdlib json took ~5 us per event of the Taobao slice. Both read either.
    return bytes([WINDOW_VERSION]) + orjson.dumps(body)


def decode_window(data: bytes) -> CategoryWindow:
    _check(data, WINDOW_VERSION, "popularity window")
    body = orjson.loads(data[1:])
    return CategoryWindow(body["c"], body["k"], {b: dict(map(tuple, items)) for b, items in body["b"]})


def encode_top(t: CategoryTop) -> bytes:
    body = [t.category_id, t.as_of, t.total, [list(x) for x in t.items]]
    return bytes([TOP_VERSION]) + json.dumps(body, separators=(",", ":")).encode()


def decode_top(data: bytes) -> CategoryTop:
    _check(data, TOP_VERSION, "popularity top")
    c, as_of, total, items = json.loads(data[1:])
    return CategoryTop(c, as_of, total, tuple((i, n) for i, n in items))


def _check(data: bytes, version: int, what: str) -> None:
    if not data or data[0] != version:
        got = data[0] if data else "none"
        raise ValueError(f"{what} encoding version {got} cannot be read (reads {version})")


# --- the keyed stage of the job, one micro-batch at a time ----------------------------------------


class WindowStore(Protocol):
    """Category windows between batches: a dict offline, Flink keyed state in the job."""

    def get(self, key: str) -> Optional[CategoryWindow]: ...

    def put(self, key: str, value: CategoryWindow) -> None: ...


def count_batch(events: Iterable[Event], store: WindowStore, s: PopularitySettings = DEFAULT_POPULARITY) -> set[str]:
    """Count each event in the window of its category field (the job's GLOBAL copies carry GLOBAL
    there, see jvm/.../CategoryKeys.java); returns the keys whose window changed."""
    changed: set[str] = set()
    for ev in events:
        key = ev.category_id
        store.put(key, step(store.get(key), ev, s, key))
        changed.add(key)
    return changed


def tops_message(tops: Iterable[CategoryTop]) -> dict:
    """The body of a control record {"popularity": body} that carries tops to every profile subtask."""
    # items stay tuples: both JSON encoders write them as arrays, and copying them cost ~4 us per event
    return {"v": TOP_VERSION, "tops": [[t.category_id, t.as_of, t.total, t.items] for t in tops]}


def read_tops_message(body: dict) -> list[CategoryTop]:
    if body.get("v") != TOP_VERSION:
        raise ValueError(f"popularity message version {body.get('v')} cannot be read (reads {TOP_VERSION})")
    return [CategoryTop(c, as_of, total, tuple((i, n) for i, n in items)) for c, as_of, total, items in body["tops"]]


def counted_keys(ev: Event) -> tuple[str, ...]:
    """The windows an event counts in, as the job routes it (jvm/.../CategoryKeys.java)."""
    if ev.item_id is None or not ev.category_id:
        return ()
    return (ev.category_id, GLOBAL)


def tops_at(
    events: Iterable[Event], wanted: dict[str, set[tuple[int, int]]], s: PopularitySettings = DEFAULT_POPULARITY
) -> dict[tuple[str, int, int], CategoryTop]:
    """Offline: the tops a stream sent, found again from the events. ``wanted`` names them by key
    and (as_of, total), as recommendation rows record them; ``events`` in the order each key's
    window counted them (a single-partition replay: the file's order). A top the replay never
    reaches is missing from the answer."""
    windows: dict[str, CategoryWindow] = {}
    found: dict[tuple[str, int, int], CategoryTop] = {}
    for ev in events:
        for key in counted_keys(ev):
            w = windows[key] = step(windows.get(key), ev, s, key)
            if key in wanted and any(as_of == w.clock for as_of, _ in wanted[key]):
                t = top(w, w.clock, s)
                if (t.as_of, t.total) in wanted[key]:
                    found[(key, t.as_of, t.total)] = t
    return found
