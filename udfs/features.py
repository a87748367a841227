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
    current_session,
    interest_shares,
    profile_view,
    tile_start,
    window_aggregates,
)
from udfs.settings import ProfileSettings


def _windowed_names() -> list[str]:
    doc = schemas.features_doc()
    return [f"{a['name']}_{w}" for w in doc["params"]["windows"] for a in doc["window_aggregates"]]


WINDOW_FEATURE_NAMES: list[str] = _windowed_names()
FEATURE_NAMES: list[str] = WINDOW_FEATURE_NAMES + [f["name"] for f in schemas.features_doc()["features"]]
FEATURES_VERSION: int = int(schemas.features_doc()["version"])


def _log_secs(ms: float) -> float:
    return math.log1p(max(ms, 0.0) / 1000.0)


def feature_dict(
    before: Optional[Before], after: Profile, ev: Event, s: ProfileSettings = DEFAULT_SETTINGS
) -> dict[str, float]:
    """Features known at ``ev``'s event time: ``after`` includes ``ev``; windows end at its tile."""
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
    return d


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
    d = feature_dict(before, after, ev, s)
    same_tile = tile_start(ev.event_time, s) == tile_start(after.last_seen, s)
    aggregates = {k: d[k] for k in WINDOW_FEATURE_NAMES} if same_tile else None
    return [d[name] for name in FEATURE_NAMES], profile_view(after, s, aggregates)
