"""The model's feature vector, derived from the profile by one function, in the order of
schemas/features.json. Pure Python."""

from __future__ import annotations

import math
from typing import Optional

from udfs import schemas
from udfs.profile import Event, Profile

FEATURE_NAMES: list[str] = schemas.feature_names()
FEATURES_VERSION: int = int(schemas.features_doc()["version"])


def _log_secs(ms: float) -> float:
    return math.log1p(max(ms, 0.0) / 1000.0)


def feature_dict(before: Optional[Profile], after: Profile, ev: Event) -> dict[str, float]:
    """Features known at ``ev``'s event time: ``after`` includes ``ev``; nothing later is used."""
    prev_seen = before.last_seen if before is not None else ev.event_time
    purchased_before = before is not None and before.last_purchase_time is not None
    return {
        "n_events": float(after.n_events),
        "n_view": float(after.n_view),
        "n_cart": float(after.n_cart),
        "n_fav": float(after.n_fav),
        "n_purchase": float(after.n_purchase),
        "log_secs_since_first_seen": _log_secs(ev.event_time - after.first_seen),
        "log_secs_since_prev_event": _log_secs(ev.event_time - prev_seen),
        "has_purchased_before": 1.0 if purchased_before else 0.0,
        "log_secs_since_last_purchase": (
            _log_secs(ev.event_time - before.last_purchase_time) if purchased_before else 0.0
        ),
        "cart_to_purchase": after.n_purchase / (after.n_cart + 1.0),
        "view_to_cart": after.n_cart / (after.n_view + 1.0),
        "ev_view": 1.0 if ev.event_type == "view" else 0.0,
        "ev_cart": 1.0 if ev.event_type == "cart" else 0.0,
        "ev_fav": 1.0 if ev.event_type == "fav" else 0.0,
        "ev_purchase": 1.0 if ev.event_type == "purchase" else 0.0,
        "hour_of_day_utc": float((ev.event_time // 3_600_000) % 24),
    }


def feature_vector(before: Optional[Profile], after: Profile, ev: Event) -> list[float]:
    d = feature_dict(before, after, ev)
    return [d[name] for name in FEATURE_NAMES]
