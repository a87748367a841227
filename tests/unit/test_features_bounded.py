"""The window-bounded signals of features version 3 (udfs.features): active days, time since the last
cart and purchase (capped at the activity window), session counts per type, rates per active day,
repeated attention to an item; and the lifetime features the models must not read."""

from __future__ import annotations

import math

import pytest

from udfs import schemas
from udfs.features import ACTIVITY_WINDOW, FEATURE_NAMES, UNBOUNDED_FEATURES, feature_dict
from udfs.profile import Event, replay_steps

M, H, D = 60_000, 3_600_000, 86_400_000
T0 = 1_511_568_000_000  # a tile boundary
WEEK_S = 7 * D / 1000


def ev(t: int, kind: str = "view", item: str = "i1", n: int = 0) -> Event:
    return Event(f"e{t}-{kind}-{item}-{n}", "u", kind, item, "c1", None, None, T0 + t, None, None)


def last(events: list[Event]) -> dict[str, float]:
    r = list(replay_steps(events))[-1]
    return feature_dict(r.before, r.state, r.event)


def test_declared_bounded_flags() -> None:
    assert ACTIVITY_WINDOW == "7d" and ACTIVITY_WINDOW in schemas.features_doc()["params"]["windows"]
    assert UNBOUNDED_FEATURES == {"n_events", "n_view", "n_cart", "n_fav", "n_purchase", "log_spend",
                                  "log_secs_since_first_seen", "has_purchased_before", "log_secs_since_last_purchase",
                                  "cart_to_purchase", "view_to_cart", "interest_n_categories"}
    assert UNBOUNDED_FEATURES < set(FEATURE_NAMES)
    assert schemas.features_doc()["version"] == 3


@pytest.mark.parametrize("times,days", [
    ([0], 1), ([0, H, 5 * H], 1), ([0, D], 2), ([0, D + H, 3 * D, 6 * D + H], 4),
    ([0, 8 * D], 1),  # the first event left the 7-day window
])
def test_active_days(times: list[int], days: int) -> None:
    assert last([ev(t, n=i) for i, t in enumerate(times)])["active_days_7d"] == days


def test_time_since_cart_is_tile_granular_and_capped() -> None:
    assert last([ev(0)])["log_secs_since_cart_7d"] == pytest.approx(math.log1p(WEEK_S))  # never: the cap
    got = last([ev(0, "cart"), ev(2 * H + 7 * M)])  # cart tile starts at 0; the view is 2h07 later
    assert got["log_secs_since_cart_7d"] == pytest.approx(math.log1p((2 * H + 7 * M) / 1000))
    assert last([ev(3 * M, "cart")])["log_secs_since_cart_7d"] == pytest.approx(math.log1p(180))  # 3 min into its tile
    assert last([ev(0, "cart"), ev(8 * D)])["log_secs_since_cart_7d"] == pytest.approx(math.log1p(WEEK_S))


def test_time_since_purchase_is_capped_and_excludes_this_event() -> None:
    assert last([ev(0, "purchase")])["log_secs_since_purchase_7d"] == pytest.approx(math.log1p(WEEK_S))
    assert last([ev(0, "purchase"), ev(H)])["log_secs_since_purchase_7d"] == pytest.approx(math.log1p(3600))
    assert last([ev(0, "purchase"), ev(30 * D)])["log_secs_since_purchase_7d"] == pytest.approx(math.log1p(WEEK_S))


def test_session_counts_per_type_add_up_to_the_session() -> None:
    events = [ev(0, "view"), ev(M, "cart"), ev(2 * M, "view", "i2"), ev(20 * M, "fav"), ev(25 * M, "purchase")]
    got = last(events)
    assert (got["session_n_view"], got["session_n_cart"], got["session_n_fav"], got["session_n_purchase"]) == (
        2, 1, 1, 1)
    assert sum(got[f"session_n_{k}"] for k in ("view", "cart", "fav", "purchase")) == got["session_events"]
    # a gap over 30 minutes starts a new session: the earlier one no longer counts
    later = last([*events, ev(2 * H, "cart")])
    assert (later["session_n_view"], later["session_n_cart"], later["session_events"]) == (0, 1, 1)


def test_rates_per_active_day_and_ratios() -> None:
    events = [ev(0, "view"), ev(M, "purchase"), ev(D, "view"), ev(D + M, "cart"), ev(D + 2 * M, "purchase")]
    got = last(events)
    assert got["active_days_7d"] == 2
    assert got["events_per_active_day_7d"] == 2.5 and got["purchases_per_active_day_7d"] == 1.0
    assert got["cart_to_purchase_7d"] == pytest.approx(2 / 2) and got["view_to_cart_7d"] == pytest.approx(1 / 3)


def test_item_attention() -> None:
    got = last([ev(0, item="a"), ev(M, item="b"), ev(2 * M, item="a"), ev(H, item="x"), ev(D, item="a")])
    assert got["item_tiles_7d"] == 2  # the tile at 0 (two views of a) and the one at D
    assert got["session_item_events"] == 1  # the view at D starts a new session
    same = last([ev(0, item="a"), ev(M, item="b"), ev(2 * M, item="a")])
    assert same["session_item_events"] == 2
