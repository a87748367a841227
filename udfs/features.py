"""The model's feature vector, derived from the profile by one function, in the order of
schemas/features.json. Pure Python."""

from __future__ import annotations

import math
from typing import Any, Optional

from udfs import schemas
from udfs.profile import (
    DEFAULT_SETTINGS,
    Before,
    Event,
    Profile,
    Session,
    current_session,
    interest_shares,
    profile_view,
    tile_start,
    window_aggregates,
)
from udfs.settings import ProfileSettings

DAY_MS = 86_400_000


def _windowed_names() -> list[str]:
    doc = schemas.features_doc()
    return [f"{a['name']}_{w}" for w in doc["params"]["windows"] for a in doc["window_aggregates"]]


WINDOW_FEATURE_NAMES: list[str] = _windowed_names()
FEATURE_NAMES: list[str] = WINDOW_FEATURE_NAMES + [f["name"] for f in schemas.features_doc()["features"]]
FEATURES_VERSION: int = int(schemas.features_doc()["version"])
# The window that bounds the "*_7d" activity and recency features (a key of params.windows).
ACTIVITY_WINDOW: str = str(schemas.features_doc()["params"]["activity_window"])
# Features that grow with the observation window (lifetime counts and ages): computed for audits and
# the profile, but a model must not use them, because training histories are cut at the data's start
# and serving ones are not (schemas/features.json marks them "bounded": false).
UNBOUNDED_FEATURES: frozenset[str] = frozenset(
    f["name"] for f in schemas.features_doc()["features"] if f.get("bounded", True) is False
)


def _log_secs(ms: float) -> float:
    return math.log1p(max(ms, 0.0) / 1000.0)


def _activity(after: Profile, ev: Event, session: Session, s: ProfileSettings) -> dict[str, float]:
    """One pass over the tiles for the window-bounded signals: active days and the last cart in the
    activity window ending at ``t``'s tile, and the current session's counts per event type. A
    session's tiles hold only its own events: the gap between sessions (30 min) is longer than a tile
    (5 min), so no other session's event shares a tile with it."""
    t = ev.event_time
    horizon = s.windows[ACTIVITY_WINDOW]
    end = tile_start(t, s)
    lo = end - horizon
    s_lo, s_hi = tile_start(session.start, s), tile_start(session.last, s)
    days: set[int] = set()
    last_cart: Optional[int] = None
    item_tiles = 0
    n = [0, 0, 0, 0]
    for start, tile in after.tiles.items():
        if lo < start <= end:
            days.add((end - start) // DAY_MS)
            item_tiles += ev.item_id in tile.item_ids
            if tile.n_cart and (last_cart is None or start > last_cart):
                last_cart = start
        if s_lo <= start <= s_hi:
            n[0] += tile.n_view
            n[1] += tile.n_cart
            n[2] += tile.n_fav
            n[3] += tile.n_purchase
    since_cart = horizon if last_cart is None else min(t - last_cart, horizon)
    return {
        f"active_days_{ACTIVITY_WINDOW}": float(len(days)),
        f"log_secs_since_cart_{ACTIVITY_WINDOW}": _log_secs(since_cart),
        "session_n_view": float(n[0]),
        "session_n_cart": float(n[1]),
        "session_n_fav": float(n[2]),
        "session_n_purchase": float(n[3]),
        f"item_tiles_{ACTIVITY_WINDOW}": float(item_tiles),
        "session_item_events": float(sum(1 for _, item in after.recent[-session.events:] if item == ev.item_id))
        if session.events else 0.0,
    }


def _bounded(d: dict[str, float], before: Optional[Before], t: int, s: ProfileSettings) -> dict[str, float]:
    """Rates and recencies over the activity window only (``d`` holds its aggregates and active days)."""
    w = ACTIVITY_WINDOW
    horizon = s.windows[w]
    lpt = before.last_purchase_time if before is not None else None
    since_purchase = horizon if lpt is None else min(max(t - lpt, 0), horizon)
    active = max(d[f"active_days_{w}"], 1.0)
    n_events = d[f"n_view_{w}"] + d[f"n_cart_{w}"] + d[f"n_fav_{w}"] + d[f"n_purchase_{w}"]
    return {
        f"log_secs_since_purchase_{w}": _log_secs(since_purchase),
        f"events_per_active_day_{w}": n_events / active,
        f"purchases_per_active_day_{w}": d[f"n_purchase_{w}"] / active,
        f"cart_to_purchase_{w}": d[f"n_purchase_{w}"] / (d[f"n_cart_{w}"] + 1.0),
        f"view_to_cart_{w}": d[f"n_cart_{w}"] / (d[f"n_view_{w}"] + 1.0),
    }


def feature_dict(
    before: Optional[Before], after: Profile, ev: Event, s: ProfileSettings = DEFAULT_SETTINGS
) -> dict[str, float]:
    """Features known at ``ev``'s event time: ``after`` includes ``ev``; windows end at its tile."""
    return _features(before, after, ev, s)[0]


def _features(
    before: Optional[Before], after: Profile, ev: Event, s: ProfileSettings
) -> tuple[dict[str, float], Session, dict[str, float]]:
    """feature_dict, with the session and interest shares it derived (profile_view needs both)."""
    t = ev.event_time
    d = window_aggregates(after, t, s)
    purchased_before = before is not None and before.last_purchase_time is not None
    session = current_session(after, s)
    shares = interest_shares(after)
    d.update(
        n_events=float(after.n_events),
        n_view=float(after.n_view),
        n_cart=float(after.n_cart),
        n_fav=float(after.n_fav),
        n_purchase=float(after.n_purchase),
        log_spend=math.log1p(after.spend),
        log_secs_since_first_seen=_log_secs(t - after.first_seen),
        log_secs_since_prev_event=_log_secs(t - before.last_seen) if before is not None else 0.0,
        has_purchased_before=1.0 if purchased_before else 0.0,
        log_secs_since_last_purchase=_log_secs(t - before.last_purchase_time) if purchased_before else 0.0,
        cart_to_purchase=after.n_purchase / (after.n_cart + 1.0),
        view_to_cart=after.n_cart / (after.n_view + 1.0),
        session_events=float(session.events),
        log_session_secs=_log_secs(session.last - session.start),
        session_distinct_items=float(session.distinct_items),
        interest_top_share=max(shares.values()) if shares else 0.0,
        interest_event_category_share=shares.get(ev.category_id, 0.0),
        interest_n_categories=float(len(shares)),
        ev_view=1.0 if ev.event_type == "view" else 0.0,
        ev_cart=1.0 if ev.event_type == "cart" else 0.0,
        ev_fav=1.0 if ev.event_type == "fav" else 0.0,
        ev_purchase=1.0 if ev.event_type == "purchase" else 0.0,
        hour_of_day_utc=float((t // 3_600_000) % 24),
    )
    d.update(_activity(after, ev, session, s))
    d.update(_bounded(d, before, t, s))
    return d, session, shares


def feature_vector(
    before: Optional[Before], after: Profile, ev: Event, s: ProfileSettings = DEFAULT_SETTINGS
) -> list[float]:
    d = feature_dict(before, after, ev, s)
    return [d[name] for name in FEATURE_NAMES]


def vector_and_view(
    before: Optional[Before], after: Profile, ev: Event, s: ProfileSettings = DEFAULT_SETTINGS
) -> tuple[list[float], dict[str, Any]]:
    """feature_vector and profile_view together: for an event in the profile's latest tile (every
    in-order event) both need the same window aggregates, so they are computed once."""
    d, session, shares = _features(before, after, ev, s)
    same_tile = tile_start(ev.event_time, s) == tile_start(after.last_seen, s)
    aggregates = {k: d[k] for k in WINDOW_FEATURE_NAMES} if same_tile else None
    return [d[name] for name in FEATURE_NAMES], profile_view(after, s, aggregates, session, shares)
