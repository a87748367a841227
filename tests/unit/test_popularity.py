"""udfs.popularity: sliding event-time window counts per category, bounded and deterministic."""

import random
from dataclasses import replace

import pytest

from udfs.popularity import (
    GLOBAL,
    CategoryTop,
    PopularityIndex,
    decode_top,
    decode_window,
    encode_top,
    encode_window,
    fresh,
    merge,
    merge_all,
    merge_snapshots,
    step,
    top,
)
from udfs.profile import Event
from udfs.settings import PopularitySettings

H = 3_600_000
T0 = 1_511_568_000_000  # a whole hour
S = PopularitySettings(window_ms=3 * H, slide_ms=H, emit_ms=H // 12, lateness_ms=300_000, bucket_items=8,
                       top_items=3, max_categories=3, global_items=5, global_bucket_items=16)


def ev(t, item="i1", cat="c1", kind="view", user="u1"):
    return Event(f"e{t}-{item}-{kind}", user, kind, item, cat, None, None, T0 + t, None, None)


def fold(events, s=S, state=None, key=None):
    for e in events:
        state = step(state, e, s, key)
    return state


def brute_force(events, at, s=S):
    """Exact weighted counts of the window ending in the bucket of ``at`` (no bound, no lateness)."""
    end = at - at % s.slide_ms
    counts = {}
    for e in events:
        b = e.event_time - e.event_time % s.slide_ms
        if end - s.window_ms < b <= end:
            counts[e.item_id] = counts.get(e.item_id, 0) + s.event_weights[e.event_type]
    return counts


def test_counts_are_weighted_and_ranked_with_ties_by_item_id():
    w = fold([ev(0, "b"), ev(1, "a"), ev(2, "c", kind="cart"), ev(3, "d")])
    t = top(w, T0 + 10, S)
    assert t.items == (("c", 3), ("a", 1), ("b", 1))  # 3 shown, 'd' ties with a and b but sorts last
    assert t.total == 6 and t.category_id == "c1"


def test_window_expiry_and_pruning_follow_event_time():
    w = fold([ev(0, "old"), ev(2 * H, "mid")])
    assert dict(top(w, T0 + 2 * H, S).items) == {"old": 1, "mid": 1}
    assert dict(top(w, T0 + 3 * H, S).items) == {"mid": 1}  # the first hour left the 3 h window
    w = fold([ev(3 * H + 400_000, "new")], state=w)  # clock past the bucket + lateness: pruned
    assert min(w.buckets) == T0 + 2 * H
    assert dict(top(w, w.clock, S).items) == {"mid": 1, "new": 1}


def test_a_late_event_is_not_counted_but_one_within_lateness_lands_in_its_bucket():
    w = fold([ev(2 * H + 60_000, "x")])
    w = fold([ev(2 * H - 100_000, "in-time"), ev(2 * H - 400_000, "late")], state=w)
    counted = {i for b in w.buckets.values() for i in b}
    assert counted == {"x", "in-time"}
    assert T0 + H in w.buckets  # the in-time event went to the previous hour's bucket


def test_state_is_bounded_per_bucket_and_in_buckets():
    rng = random.Random(1)
    events = [ev(t * 1000, f"i{rng.randrange(500)}") for t in range(0, 20 * 3600, 7)]
    w = fold(events)
    assert all(len(b) <= S.bucket_items for b in w.buckets.values())
    assert len(w.buckets) <= (S.window_ms + S.lateness_ms) // S.slide_ms + 1


def test_space_saving_keeps_a_heavy_item_and_never_undercounts_it():
    rng = random.Random(2)
    events = []
    for t in range(0, 3000):
        item = "heavy" if t % 4 == 0 else f"i{rng.randrange(1000)}"
        events.append(ev(t * 1000, item))  # all in one bucket
    w = fold(events)
    counters = w.buckets[T0]
    assert counters["heavy"] >= 750  # 25% > 1/8 of the bucket: kept, count >= true count
    assert top(w, w.clock, S).items[0][0] == "heavy"


def test_without_eviction_the_window_is_exact():
    rng = random.Random(3)
    big = PopularitySettings(window_ms=3 * H, slide_ms=H, emit_ms=H // 12, bucket_items=10_000, top_items=10_000)
    events = [ev(t, f"i{rng.randrange(30)}", kind=rng.choice(["view", "cart", "fav", "purchase"]))
              for t in sorted(rng.randrange(0, 10 * H) for _ in range(2000))]
    for cut in (500, 1200, 2000):
        w = fold(events[:cut], big)
        assert dict(top(w, w.clock, big).items) == brute_force(events[:cut], w.clock, big)


def test_same_events_same_state_and_encoding_roundtrip_between_steps_changes_nothing():
    """The keyed stage reads and writes its state as bytes around every event: same result."""
    rng = random.Random(4)
    events = [ev(t * 1000, f"i{rng.randrange(40)}") for t in sorted(rng.sample(range(30_000), 800))]
    live = fold(events)
    stored = None
    for e in events:
        stored = encode_window(step(decode_window(stored) if stored else None, e, S))
    assert decode_window(stored) == live
    assert encode_window(fold(events)) == stored


def test_top_encoding_roundtrip_and_unknown_version():
    t = CategoryTop("c", T0, 7, (("a", 4), ("b", 3)))
    assert decode_top(encode_top(t)) == t
    with pytest.raises(ValueError):
        decode_top(b"\x09[]")
    with pytest.raises(ValueError):
        decode_window(b"")


def test_snapshot_keeps_the_most_active_categories_and_ignores_older_updates():
    snap = {}
    for c, total in [("a", 5), ("b", 1), ("c", 9), ("d", 4)]:
        merge(snap, CategoryTop(c, T0, total, (("x", total),)), S)
    merge(snap, CategoryTop(GLOBAL, T0, 99, (("x", 99),)), S)
    assert set(snap) == {"a", "c", "d", GLOBAL}  # max 3 categories + GLOBAL; b was the least active
    merge(snap, CategoryTop("a", T0 - 1, 1, (("old", 1),)), S)
    assert snap["a"].items == (("x", 5),)
    merge(snap, CategoryTop("a", T0 + 1, 0, ()), S)  # empty window: removed
    assert "a" not in snap
    parts = [{"a": CategoryTop("a", T0, 5, (("x", 5),))}, {"c": CategoryTop("c", T0, 2, (("y", 2),))}]
    assert set(merge_snapshots(parts, S)) == {"a", "c"}


def test_index_snapshot_is_the_top_of_each_category_as_of_the_latest_tick():
    """What a recommendation at any moment sees: every event before the latest emit tick, none after."""
    rng = random.Random(5)
    events = [ev(t, f"i{rng.randrange(20)}", f"c{rng.randrange(6)}") for t in
              sorted(rng.randrange(0, 12 * H) for _ in range(1500))]
    s = replace(S, max_categories=100)  # no category dropped: the bound has its own test
    idx = PopularityIndex(s)
    checked = 0
    for n, e in enumerate(events):
        idx.observe(e)
        if rng.random() < 0.03:
            idx.advance(e.event_time + 1)
            seen = [x for x in events[: n + 1] if x.event_time < idx.tick]
            for c in {x.category_id for x in seen} | {GLOBAL}:
                mine = [x for x in seen if c in (GLOBAL, x.category_id)]
                want = top(fold(mine, s, key=c), idx.tick, s)
                got = idx.snapshot.get(c)
                assert (got.items, got.total) == (want.items, want.total) if got else not want.items
                checked += 1
    assert checked > 50


def test_index_forgets_quiet_categories_and_stale_tops_are_not_fresh():
    idx = PopularityIndex(S)
    idx.observe(ev(0, "a", "quiet"))
    idx.advance(T0 + 1 * H)
    assert "quiet" in idx.snapshot
    idx.advance(T0 + 5 * H)
    assert "quiet" not in idx.snapshot and "quiet" not in idx.windows
    t = CategoryTop("c", T0, 1, (("a", 1),))
    assert fresh(t, T0 + 2 * H, S) and not fresh(t, T0 + 3 * H, S)


def test_heap_eviction_equals_the_plain_space_saving_scan():
    """Reference: evict min (count, item) by scanning every counter."""
    rng = random.Random(6)
    events = [ev(t * 100, f"i{int(rng.paretovariate(1.2)) % 300}", kind=rng.choice(["view", "view", "cart"]))
              for t in range(5000)]
    ref: dict[str, int] = {}
    for e in events:
        w = S.event_weights[e.event_type]
        if e.item_id in ref:
            ref[e.item_id] += w
        elif len(ref) < S.bucket_items:
            ref[e.item_id] = w
        else:
            victim, floor = min(ref.items(), key=lambda kv: (kv[1], kv[0]))
            del ref[victim]
            ref[e.item_id] = floor + w
    assert fold(events).buckets[T0] == ref


def test_count_batch_over_a_store_equals_stepping_each_window():
    from udfs.popularity import count_batch

    rng = random.Random(5)
    events = [ev(rng.randrange(0, 4 * H), f"i{rng.randrange(12)}", f"c{rng.randrange(3)}") for _ in range(400)]
    events.sort(key=lambda e: e.event_time)

    class Store(dict):
        def put(self, k, v):
            self[k] = v

    store = Store()
    changed = set()
    for i in range(0, len(events), 37):  # batch boundaries change nothing
        changed |= count_batch(events[i:i + 37], store, S)
    assert changed == {"c0", "c1", "c2"}
    for c in changed:
        expected = fold([e for e in events if e.category_id == c], S)
        assert encode_window(store[c]) == encode_window(expected)


def test_tops_message_round_trips_and_refuses_another_version():
    from udfs.popularity import read_tops_message, tops_message

    tops = [CategoryTop("c1", T0, 7, (("a", 4), ("b", 3))), CategoryTop(GLOBAL, T0 + 1, 0, ())]
    import json

    body = json.loads(json.dumps({"popularity": tops_message(tops)}))["popularity"]
    assert read_tops_message(body) == tops
    with pytest.raises(ValueError, match="version"):
        read_tops_message(dict(body, v=99))


def test_tops_at_finds_the_tops_a_keyed_stage_sent_at_any_point():
    from udfs.popularity import counted_keys, tops_at

    rng = random.Random(9)
    events = sorted((ev(rng.randrange(0, 5 * H), f"i{rng.randrange(9)}", f"c{rng.randrange(2)}")
                     for _ in range(300)), key=lambda e: e.event_time)
    events.append(ev(5 * H, "i1", None))  # no category: counted nowhere
    assert counted_keys(events[-1]) == ()
    windows: dict = {}
    sent = []
    for i, e in enumerate(events):  # the stage: tops sent at arbitrary commits
        for k in counted_keys(e):
            windows[k] = step(windows.get(k), e, S, k)
        if i % 41 == 40:
            sent += [top(w, w.clock, S) for w in windows.values()]
    wanted: dict = {}
    for t in sent:
        wanted.setdefault(t.category_id, set()).add((t.as_of, t.total))
    found = tops_at(events, wanted, S)
    for t in sent:
        assert found[(t.category_id, t.as_of, t.total)] == t
    assert not tops_at(events, {"c0": {(T0, 10**9)}}, S)  # never reached: not invented


def test_a_message_of_tops_is_merged_then_trimmed_to_the_most_active_categories():
    snap = {GLOBAL: CategoryTop(GLOBAL, T0, 99, (("x", 99),)), "a": CategoryTop("a", T0, 5, (("x", 5),))}
    tops = [CategoryTop(c, T0 + 1, total, (("y", total),)) for c, total in [("b", 1), ("c", 9), ("d", 4), ("e", 7)]]
    tops.append(CategoryTop("a", T0 - 1, 50, (("old", 50),)))  # older than the one held: ignored
    merge_all(snap, tops, S)
    assert set(snap) == {"c", "e", "a", GLOBAL}  # max 3 categories: the totals 9, 7, 5 stay
    assert snap["a"].total == 5
