"""udfs.item_memory (profile state v3): the touched and bought items recommendations need."""

import io
import random
from dataclasses import replace

import fastavro
import pytest

from udfs import schemas
from udfs.item_memory import affinity, excluded
from udfs.profile import Event, apply_event, replay
from udfs.profile_codec import decode_profile, encode_avro, encode_profile
from udfs.settings import ProfileSettings

S = ProfileSettings()
D = 86_400_000
T0 = 1_511_568_000_000


def ev(t, kind="view", item="i1", cat="c1", user="u1"):
    return Event(f"e{t}-{kind}-{item}", user, kind, item, cat, None, None, T0 + t, None, None)


def build(events, s=S):
    p = None
    for e in events:
        p = apply_event(p, e, s)
    return p


def test_touches_accumulate_decayed_weights_and_last_view():
    p = build([ev(0, "view"), ev(1000, "cart"), ev(2000, "fav", item="i2")])
    r = p.recent_items["i1"]
    assert r.t == T0 + 1000 and r.last_view == T0 and r.category_id == "c1"
    assert r.weight == pytest.approx(1.0 * 2 ** (-1000 / S.interest_half_life_ms) + 3.0)
    assert p.recent_items["i2"].last_view is None
    assert affinity(r, r.t + S.interest_half_life_ms, S) == pytest.approx(r.weight / 2)


def test_out_of_order_touches_give_the_same_affinity():
    events = [ev(t * 60_000, random.Random(t).choice(["view", "cart", "fav"])) for t in range(30)]
    a = build(events).recent_items["i1"]
    b = build(random.Random(7).sample(events, len(events))).recent_items["i1"]
    now = T0 + 40 * 60_000
    assert affinity(a, now, S) == pytest.approx(affinity(b, now, S), rel=1e-12)


def test_recent_items_are_bounded_and_keep_the_strongest():
    s = replace(S, recent_items_max=5)
    events = [ev(0, "cart", item="strong")] + [ev(1000 + i, "view", item=f"v{i}") for i in range(50)]
    p = build(events, s)
    assert len(p.recent_items) == 5 and "strong" in p.recent_items
    assert set(p.recent_items) == {"strong", "v46", "v47", "v48", "v49"}


def test_purchases_go_to_bought_and_expire_by_the_users_clock():
    s = replace(S, bought_items_max=3)
    p = build([ev(i, "purchase", item=f"b{i}") for i in range(5)], s)
    assert set(p.bought) == {"b2", "b3", "b4"}  # latest 3 kept
    assert "b2" not in p.recent_items  # a purchase is not a touch
    assert excluded(p.bought, T0 + 10, s) == {"b2", "b3", "b4"}
    assert excluded(p.bought, T0 + 2 + s.bought_exclude_ms, s) == {"b3", "b4"}
    p = apply_event(p, ev(s.bought_exclude_ms + 3, "view", item="x"), s)
    assert set(p.bought) == {"b4"}  # pruned: excluded nothing at any later instant


def test_state_v3_roundtrip_keeps_the_item_memory():
    p = build([ev(0, "view"), ev(10, "purchase", item="b"), ev(20, "cart", item="i2")])
    q = decode_profile(encode_profile(p))
    assert q == p and q.recent_items and q.bought == {"b": T0 + 10}
    assert encode_profile(q) == encode_profile(p)


def test_a_v2_state_still_decodes_with_an_empty_item_memory():
    """Savepoints of the previous release: 1 byte 2 + Avro of profile_state_v2.avsc."""
    p = list(replay([ev(0, "view"), ev(10, "purchase", item="b"), ev(20, "cart", item="i2")]))[-1][1]
    v2 = fastavro.parse_schema(schemas.avro(schemas.PROFILE_STATE_V2))
    v2_fields = schemas.field_names(schemas.PROFILE_STATE_V2)
    rec = fastavro.schemaless_reader(io.BytesIO(encode_avro(p)[1:]), fastavro.parse_schema(
        schemas.avro(schemas.PROFILE_STATE)))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, v2, {f: rec[f] for f in v2_fields})
    old = decode_profile(bytes([2]) + buf.getvalue())
    assert old.recent_items == {} and old.bought == {}
    assert replace(old, recent_items=p.recent_items, bought=p.bought) == p
    assert encode_profile(old).startswith(b"[3,")  # written back in the current layout


def test_v3_only_appends_fields_with_defaults():
    old, new = schemas.avro(schemas.PROFILE_STATE_V2), schemas.avro(schemas.PROFILE_STATE)
    n = len(old["fields"])
    assert new["fields"][:n] == old["fields"]
    assert all("default" in f for f in new["fields"][n:])
