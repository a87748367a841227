"""Table-driven tests of the pure profile core (Bytewax/Quix style: state, event -> state)."""

import pytest

from udfs.features import FEATURE_NAMES, feature_dict, feature_vector
from udfs.profile import (
    Event,
    Profile,
    StateVersionError,
    apply_event,
    decode_profile,
    encode_profile,
    replay,
)

H = 3_600_000


def ev(t, kind="view", user="u1", eid=None, price=None, qty=None):
    return Event(eid or f"e{t}-{kind}", user, kind, "item", "cat", price, qty, t, None, None)


@pytest.mark.parametrize(
    "events, expected",
    [
        ([ev(0)], dict(n_events=1, n_view=1, first_seen=0, last_seen=0)),
        ([ev(0), ev(H, "cart")], dict(n_events=2, n_view=1, n_cart=1, last_seen=H)),
        ([ev(0, "fav"), ev(5, "fav")], dict(n_fav=2, n_events=2)),
        # out of order: first/last seen are min/max of event times, not arrival order
        ([ev(10 * H), ev(2 * H)], dict(first_seen=2 * H, last_seen=10 * H)),
        ([ev(0, "purchase", price=2.5, qty=4)], dict(n_purchase=1, spend=10.0, last_purchase_time=0)),
        ([ev(0, "purchase")], dict(n_purchase=1, spend=0.0)),  # no price: counted, no money
        ([ev(0, "purchase", price=3.0)], dict(spend=3.0)),  # no quantity means one item
        ([ev(5 * H, "purchase"), ev(1 * H, "purchase")], dict(last_purchase_time=5 * H)),
        ([ev(0), ev(1, eid="x")], dict(last_event_id="x")),
    ],
)
def test_apply_event(events, expected):
    p = None
    for e in events:
        p = apply_event(p, e)
    for k, v in expected.items():
        assert getattr(p, k) == v, k


def test_apply_event_does_not_mutate_input():
    p0 = apply_event(None, ev(0))
    apply_event(p0, ev(1, "cart"))
    assert p0.n_cart == 0 and p0.n_events == 1


def test_state_roundtrip_and_version_byte():
    p = Profile("u1", 1, 2, 3, 1, 1, 0, 1, 9.5, 2, "e")
    data = encode_profile(p)
    assert data[0] == 1
    assert decode_profile(data) == p


@pytest.mark.parametrize("blob", [b"", b"\x02abc", b"\x00"])
def test_unreadable_state_fails_loudly(blob):
    with pytest.raises(StateVersionError):
        decode_profile(blob)


@pytest.mark.parametrize(
    "events, feature, value",
    [
        ([ev(0)], "n_events", 1.0),
        ([ev(0)], "log_secs_since_prev_event", 0.0),
        ([ev(0), ev(H)], "log_secs_since_prev_event", pytest.approx(8.18899, abs=1e-4)),  # log1p(3600)
        ([ev(0, "purchase"), ev(H)], "has_purchased_before", 1.0),
        ([ev(0, "purchase")], "has_purchased_before", 0.0),  # the current event is not "before"
        ([ev(0, "cart")], "ev_cart", 1.0),
        ([ev(0, "cart"), ev(1, "purchase")], "cart_to_purchase", 0.5),
        ([ev(13 * H)], "hour_of_day_utc", 13.0),
    ],
)
def test_features(events, feature, value):
    before = None
    for e in events[:-1]:
        before = apply_event(before, e)
    last = events[-1]
    assert feature_dict(before, apply_event(before, last), last)[feature] == value


def test_replay_keeps_users_apart_and_matches_stepwise():
    events = [ev(0, user="a"), ev(1, "cart", user="b"), ev(2, "purchase", user="a")]
    rows = list(replay(events))
    assert rows[1][0] is None  # b's first event sees no state of a
    assert rows[2][1].n_events == 2 and rows[2][1].n_purchase == 1
    assert len(feature_vector(*rows[2])) == len(FEATURE_NAMES)
