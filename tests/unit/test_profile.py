"""Table-driven tests of the pure profile core (Bytewax/Quix style: state, event -> state)."""

import math
import random

import pytest

from udfs.features import FEATURE_NAMES, feature_dict, feature_vector
from udfs.profile import (
    Before,
    Event,
    Outcome,
    Profile,
    Tile,
    apply_event,
    current_session,
    lifecycle,
    profile_view,
    prune,
    replay,
    replay_steps,
    step,
    top_categories,
    user_clock,
    value_tier,
    window_aggregates,
)
from udfs.profile_codec import StateVersionError, decode_profile, encode_avro, encode_profile, schema_layout
from udfs.settings import ProfileSettings

S = ProfileSettings()
M = 60_000
H = 3_600_000
D = 86_400_000
T0 = 1_511_568_000_000  # 2017-11-25 00:00 UTC, a tile boundary


def ev(t, kind="view", user="u1", eid=None, price=None, qty=None, cat="c1", item="i1"):
    return Event(eid or f"e{t}-{kind}-{cat}-{item}", user, kind, item, cat, price, qty, T0 + t, None, None)


def build(events, s=S):
    p = None
    for e in events:
        p = apply_event(p, e, s)
    return p


# --- lifetime counters -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "events, expected",
    [
        ([ev(0)], dict(n_events=1, n_view=1, first_seen=T0, last_seen=T0)),
        ([ev(0), ev(H, "cart")], dict(n_events=2, n_view=1, n_cart=1, last_seen=T0 + H)),
        ([ev(0, "fav"), ev(5, "fav")], dict(n_fav=2, n_events=2)),
        ([ev(10 * H), ev(2 * H)], dict(first_seen=T0 + 2 * H, last_seen=T0 + 10 * H)),  # out of order
        ([ev(0, "purchase", price=2.5, qty=4)], dict(n_purchase=1, spend=10.0, items=4, last_purchase_time=T0)),
        ([ev(0, "purchase")], dict(n_purchase=1, spend=0.0, items=1)),  # no price: counted, no money
        ([ev(5 * H, "purchase"), ev(1 * H, "purchase")], dict(last_purchase_time=T0 + 5 * H)),
        ([ev(0), ev(1, eid="x")], dict(last_event_id="x")),
    ],
)
def test_lifetime_counters(events, expected):
    p = build(events)
    for k, v in expected.items():
        assert getattr(p, k) == v, k


def test_version_is_monotonic_and_above_any_earlier_profile():
    p = build([ev(0)])
    v1 = p.version
    apply_event(p, ev(-M))  # older event: last_seen unchanged, version still grows
    assert p.version == v1 + 1
    assert build([ev(D)]).version > v1  # a fresh profile after expiry writes with a newer timestamp


# --- windows over tiles ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "events, at, key, value",
    [
        ([ev(0), ev(10 * M)], 10 * M, "n_view_1h", 2.0),
        # the event 1h earlier is in a tile that left the 1h window (tiles (end-1h, end])
        ([ev(0), ev(H)], H, "n_view_1h", 1.0),
        ([ev(0), ev(H - 5 * M)], H - 5 * M, "n_view_1h", 2.0),  # 11 tiles back: still inside
        ([ev(0), ev(H)], H, "n_view_24h", 2.0),
        ([ev(0), ev(D)], D, "n_view_24h", 1.0),
        ([ev(0), ev(D)], D, "n_view_7d", 2.0),
        ([ev(0), ev(7 * D)], 7 * D, "n_view_7d", 1.0),
        # an event later than `at` is not in the window that ends at `at`'s tile
        ([ev(0), ev(30 * M)], 0, "n_view_1h", 1.0),
        # same tile (5 min): a later event in the same tile counts (exact at tile granularity)
        ([ev(0), ev(4 * M)], 0, "n_view_1h", 2.0),
        ([ev(0, "purchase", price=2.0, qty=3), ev(M, "purchase", price=1.0)], M, "spend_1h", 7.0),
        ([ev(0, "purchase", price=2.0, qty=3), ev(M, "purchase", price=1.0)], M, "items_1h", 4.0),
        ([ev(0, cat="a"), ev(M, cat="b"), ev(2 * M, cat="a")], 2 * M, "distinct_categories_1h", 2.0),
        ([ev(0, item="a"), ev(6 * M, item="a")], 6 * M, "distinct_items_1h", 1.0),  # across tiles
        ([ev(0, "cart"), ev(M, "fav"), ev(2 * M, "purchase")], 2 * M, "n_cart_1h", 1.0),
    ],
)
def test_window_aggregates(events, at, key, value):
    assert window_aggregates(build(events), T0 + at)[key] == value


def test_out_of_order_event_lands_in_its_own_tile():
    in_order = build([ev(0), ev(10 * M), ev(50 * M)])
    shuffled = build([ev(0), ev(50 * M), ev(10 * M)])
    assert sorted(in_order.tiles) == sorted(shuffled.tiles)
    assert window_aggregates(in_order, T0 + 50 * M) == window_aggregates(shuffled, T0 + 50 * M)


# --- decayed interests ---------------------------------------------------------------------------
def test_interest_halves_after_one_half_life():
    p = build([ev(0, cat="a"), ev(S.interest_half_life_ms, cat="b")])
    assert p.interests["a"] == pytest.approx(0.5)
    assert p.interests["b"] == pytest.approx(1.0)


@pytest.mark.parametrize("kind, weight", [("view", 1.0), ("cart", 3.0), ("fav", 2.0), ("purchase", 5.0)])
def test_interest_weights_by_event_type(kind, weight):
    assert build([ev(0, kind, cat="a")]).interests["a"] == weight


def test_interests_are_order_independent_and_top_k():
    events = [ev(i * H, kind, cat=c) for i, (kind, c) in enumerate(
        [("view", "a"), ("cart", "b"), ("view", "a"), ("purchase", "c"), ("view", "b")])]
    a = build(events)
    b = build([events[i] for i in (4, 2, 0, 3, 1)])
    for c in a.interests:
        assert math.isclose(a.interests[c], b.interests[c], rel_tol=1e-12)
    top = top_categories(a, 2)
    assert list(top) == ["c", "b"] and sum(top.values()) < 1.0


def test_interest_categories_are_bounded():
    s = ProfileSettings(interest_max_categories=3)
    p = build([ev(i * M, cat=f"c{i}") for i in range(10)], s)
    assert len(p.interests) == 3 and "c9" in p.interests


# --- sessions ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "times, events, start",
    [
        ([0], 1, 0),
        ([0, 10, 20], 3, 0),
        ([0, 31], 1, 31),  # gap > 30 min: new session
        ([0, 30], 2, 0),  # gap == 30 min: same session
        ([0, 40, 20], 3, 0),  # a late event bridges two runs into one session
        ([0, 31, 29], 3, 0),  # within lateness: same result as sorted input
    ],
)
def test_sessions(times, events, start):
    p = build([ev(t * M, item=f"i{t}") for t in times])
    sess = current_session(p)
    assert (sess.events, sess.start - T0) == (events, start * M)
    assert sess.distinct_items == events


# --- lateness, duplicates, expiry ------------------------------------------------------------------
def test_duplicate_changes_nothing():
    p = build([ev(0, eid="x")])
    before = encode_profile(p)
    r = step(p, ev(5 * M, eid="x"))
    assert r.outcome is Outcome.DUPLICATE and encode_profile(r.state) == before


@pytest.mark.parametrize("t, outcome", [
    (100 * M, Outcome.APPLIED), (95 * M, Outcome.APPLIED), (95 * M - 1, Outcome.LATE), (0, Outcome.LATE),
    (200 * M, Outcome.APPLIED)])
def test_lateness_is_judged_on_the_users_own_clock(t, outcome):
    p = build([ev(100 * M)])  # latest applied event at 100 min; allowed lateness 5 min
    assert user_clock(p) == T0 + 95 * M - 1
    assert step(p, ev(t, eid="new")).outcome is outcome


def test_another_users_events_never_make_an_event_late():
    """What the global watermark got wrong: a user far ahead in event time (or a partition read
    first) moved every other user's clock. Here each user's outcomes depend on its own events only."""
    mine = [ev(i * M, user="a", eid=f"a{i}") for i in range(5)]
    ahead = [ev(10 * D + i * M, user="b", eid=f"b{i}") for i in range(5)]
    alone = [r.outcome for r in replay_steps(mine)]
    for order in (ahead + mine, mine + ahead, [x for pair in zip(ahead, mine, strict=False) for x in pair]):
        mixed = [r.outcome for r in replay_steps(order) if r.event.user_id == "a"]
        assert mixed == alone == [Outcome.APPLIED] * 5


def test_replay_routes_events_beyond_lateness_to_late():
    events = [ev(0), ev(60 * M), ev(56 * M), ev(54 * M)]  # 4 and 6 min behind the max; bound 5 min
    outcomes = [r.outcome for r in replay_steps(events)]
    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED, Outcome.APPLIED, Outcome.LATE]


def test_duplicate_memory_is_bounded_by_the_users_clock():
    p = build([ev(i * M, eid=f"e{i}") for i in range(100)])
    prune(p, S)  # clock: 99 min - 5 min - 1 ms
    assert set(p.seen_ids) == {f"e{i}" for i in range(94, 100)}
    for i in range(200):  # a long stream of one user keeps only the ids inside the lateness
        p = step(p, ev(100 * M + i * 30_000, eid=f"n{i}")).state
    assert len(p.seen_ids) == 11


@pytest.mark.parametrize("gap, fresh", [(S.idle_expiry_ms - 1, False), (S.idle_expiry_ms, True)])
def test_an_event_after_the_idle_time_starts_a_fresh_profile(gap, fresh):
    p = build([ev(0, "purchase")])
    old_version = p.version
    r = step(p, ev(gap, eid="later"))
    assert (r.before is None) is fresh
    assert (r.state.n_events == 1) is fresh
    assert r.state.version > old_version


def test_a_copy_of_an_old_event_after_a_fresh_start_is_late_not_applied_twice():
    """A producer retry of an old event after the same user's event 30+ days later."""
    p = build([ev(0, eid="old")])
    p = step(p, ev(S.idle_expiry_ms, eid="new")).state  # fresh profile
    assert p.n_events == 1 and set(p.seen_ids) == {"new"}
    assert step(p, ev(0, eid="old")).outcome is Outcome.LATE


# --- tags ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("first, last, as_of, stage", [
    (0, 0, D, "new"), (0, 10 * D, 10 * D, "active"), (0, 10 * D, 18 * D, "at-risk"), (0, 10 * D, 41 * D, "dormant")])
def test_lifecycle(first, last, as_of, stage):
    p = build([ev(first), ev(last)])
    assert lifecycle(p, T0 + as_of) == stage


@pytest.mark.parametrize("purchases, price, as_of, tier", [
    (0, None, 0, "none"), (1, None, 0, "low"), (2, None, 0, "medium"), (5, None, 0, "high"),
    (1, 600.0, 0, "high"), (1, 150.0, 0, "medium"), (5, None, 60 * D, "low")])
def test_value_tier(purchases, price, as_of, tier):
    p = build([ev(0)] + [ev(i * M + 1, "purchase", price=price) for i in range(purchases)])
    assert value_tier(p, T0 + as_of) == tier


# --- pruning never changes a future feature ----------------------------------------------------------
def test_pruning_is_invisible_to_features():
    rng = random.Random(7)
    events = sorted((ev(rng.randrange(0, 20 * D), rng.choice(["view", "cart", "fav", "purchase"]),
                        cat=f"c{rng.randrange(8)}", item=f"i{rng.randrange(40)}", price=1.0) for _ in range(400)),
                    key=lambda e: e.event_time)
    events = list({e.event_id: e for e in events}.values())
    pruned = [feature_vector(*r) for r in replay(events)]
    unpruned, p = [], None  # the same events without any pruning (all are applied: in order, no copies)
    for e in events:
        before = None if p is None else Before(p.last_seen, p.last_purchase_time)
        p = apply_event(p, e)
        unpruned.append(feature_vector(before, p, e))
    assert pruned == unpruned


def test_sorted_and_shuffled_within_lateness_give_the_same_profile():
    rng = random.Random(3)
    events = sorted((ev(rng.randrange(0, 3 * D), rng.choice(["view", "cart", "purchase"]), cat=f"c{rng.randrange(5)}",
                        item=f"i{rng.randrange(30)}", price=2.0, eid=f"e{i}") for i in range(300)),
                    key=lambda e: (e.event_time, e.event_id))
    # shuffle: move each event back by up to 4 minutes of event time (inside the 5 min bound)
    shuffled = sorted(events, key=lambda e: e.event_time + rng.randrange(0, 4 * M))
    a = [r for r in replay_steps(events)][-1].state
    b = [r for r in replay_steps(shuffled)]
    assert all(r.outcome is Outcome.APPLIED for r in b)
    b = b[-1].state
    va, vb = profile_view(a), profile_view(b)
    for k in va:
        if isinstance(va[k], float):
            assert va[k] == pytest.approx(vb[k], abs=1e-9), k
        elif isinstance(va[k], dict):
            assert va[k].keys() == vb[k].keys() and all(abs(va[k][x] - vb[k][x]) < 1e-9 for x in va[k]), k
        elif k != "last_event_id":
            assert va[k] == vb[k], k


# --- state codec -------------------------------------------------------------------------------------
def test_state_roundtrip_keeps_everything():
    p = build([ev(0, "purchase", price=2.0, qty=2, cat="a"), ev(10 * M, "cart", cat="b", item="i2")])
    q = decode_profile(encode_profile(p))
    assert q == p
    assert encode_profile(p).startswith(b"[3,")  # JSON, layout version 3 first


def test_json_state_equals_the_avro_state_of_earlier_releases_on_real_profiles():
    """The JSON layout holds exactly what the Avro bytes of profile_state.avsc hold (savepoints of
    earlier releases decode to the same profile), over many profiles with every collection filled."""
    rng = random.Random(7)
    kinds = ["view", "view", "view", "cart", "fav", "purchase"]
    for _user in range(60):
        evs = [ev(rng.randrange(0, 40 * 86_400_000), rng.choice(kinds), price=rng.choice([None, 3.5]),
                  cat=f"c{rng.randrange(6)}", item=f"i{rng.randrange(30)}") for _ in range(rng.randrange(1, 80))]
        p = build(sorted(evs, key=lambda e: e.event_time))
        assert decode_profile(encode_profile(p)) == p
        assert decode_profile(encode_avro(p)) == p
        assert encode_profile(decode_profile(encode_avro(p))) == encode_profile(p)


def test_the_json_layout_is_the_schemas_field_order():
    assert schema_layout()[""] == list(Profile.__dataclass_fields__)
    assert schema_layout()["tiles"] == list(Tile.__dataclass_fields__)


@pytest.mark.parametrize("blob", [b"", b"\x01abc", b"\x04", b"\x00", b"[4,\"u\"]", b"[2]"])
def test_unreadable_state_fails_loudly(blob):
    with pytest.raises(StateVersionError):
        decode_profile(blob)


# --- features -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "events, feature, value",
    [
        ([ev(0)], "n_events", 1.0),
        ([ev(0)], "log_secs_since_prev_event", 0.0),
        ([ev(0), ev(H)], "log_secs_since_prev_event", pytest.approx(math.log1p(3600), abs=1e-12)),
        ([ev(0, "purchase"), ev(H)], "has_purchased_before", 1.0),
        ([ev(0, "purchase")], "has_purchased_before", 0.0),  # the current event is not "before"
        ([ev(0, "cart")], "ev_cart", 1.0),
        ([ev(0, "cart"), ev(1, "purchase")], "cart_to_purchase", 0.5),
        ([ev(13 * H)], "hour_of_day_utc", 13.0),
        ([ev(0, cat="a"), ev(M, cat="a")], "interest_event_category_share", 1.0),
        ([ev(0), ev(M, item="i2")], "session_distinct_items", 2.0),
    ],
)
def test_features(events, feature, value):
    rows = list(replay_steps(events))
    last = rows[-1]
    assert feature_dict(last.before, last.state, last.event)[feature] == value


def test_feature_vector_order_and_length():
    r = list(replay_steps([ev(0)]))[-1]
    vec = feature_vector(r.before, r.state, r.event)
    d = feature_dict(r.before, r.state, r.event)
    assert len(vec) == len(FEATURE_NAMES) and vec == [d[n] for n in FEATURE_NAMES]


@pytest.mark.parametrize("times", [[0, 10 * M, 20 * M], [0, 60 * M, 57 * M], [0, 2 * M, 1 * M]])
def test_vector_and_view_equal_their_separate_functions(times):
    from udfs.features import vector_and_view

    for r in replay_steps([ev(t, item=f"i{t}") for t in times]):
        vector, view = vector_and_view(r.before, r.state, r.event)
        assert vector == feature_vector(r.before, r.state, r.event)
        assert view == profile_view(r.state)


def test_erase_forgets_the_user():
    from tools.erase_user import erase_event
    from udfs.profile import Outcome, erasure_timestamp, replay_steps

    evs = [ev(t * 60_000, "view", user="u", eid=f"e{t}") for t in range(5)]
    erase_at = evs[-1].event_time + 1
    later = [ev(erase_at - T0 + t * 60_000, "cart", user="u", eid=f"n{t}") for t in range(1, 4)]
    steps = list(replay_steps([*evs, erase_event("u", erase_at), *later, evs[0]], S))
    erased = steps[5]
    assert erased.outcome is Outcome.ERASED and erased.state is None
    # after the erasure the profile starts from nothing: only the later events count
    assert steps[8].outcome is Outcome.APPLIED and steps[8].state.n_events == 3 and steps[8].state.n_view == 0
    # a copy of an erased event is no longer known as a duplicate: here it is simply late
    assert steps[9].outcome is Outcome.LATE
    # tombstones sit above every write of the erased profile and at least at the erasure time
    before = steps[4].state
    assert erasure_timestamp(before, erase_event("u", erase_at)) == max(erase_at * 1000, before.version + 1)
    assert erasure_timestamp(None, erase_event("u", 5)) == 5000


def test_the_codec_imports_under_a_bumped_layout_version():
    """tests/integration/jobs/next_state_version_job.py bumps udfs.profile.STATE_VERSION before it
    imports the job, to play a release with a new layout: the codec must import (the state guard
    refuses the restore, not an ImportError on the client)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("from udfs import profile\nprofile.STATE_VERSION += 1\nfrom udfs import profile_codec\n"
            "assert profile_codec.encode_profile(profile_codec.decode_profile(b'[4,\"u\",1,0,0,0,0,0,0,0,0.0,0,"
            "null,\"\",[],0,{},[],[],[],[]]')).startswith(b'[4,')")
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], check=True)
