"""Settings of the profile core. Feature-shaping parameters come from schemas/features.json (they
are part of the model's input contract); operational ones (lateness, expiry, tag thresholds) from
the job configuration. Pure Python."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from udfs import schemas

_PARAMS: dict[str, Any] = schemas.features_doc()["params"]


def _windows() -> dict[str, int]:
    return {str(k): int(v) for k, v in _PARAMS["windows"].items()}


@dataclass(frozen=True)
class ProfileSettings:
    # --- from schemas/features.json: change only together with a retrained model ---
    tile_ms: int = int(_PARAMS["tile_ms"])
    windows: dict[str, int] = field(default_factory=_windows)
    session_gap_ms: int = int(_PARAMS["session_gap_ms"])
    interest_half_life_ms: int = int(_PARAMS["interest_half_life_ms"])
    interest_weights: dict[str, float] = field(default_factory=lambda: dict(_PARAMS["interest_weights"]))
    interest_max_categories: int = int(_PARAMS["interest_max_categories"])
    max_session_events: int = int(_PARAMS["max_session_events"])
    # --- operational (job config) ---
    lateness_ms: int = 300_000
    idle_expiry_ms: int = 30 * 86_400_000
    top_k: int = 5
    lifecycle_new_ms: int = 7 * 86_400_000
    lifecycle_at_risk_ms: int = 7 * 86_400_000
    lifecycle_dormant_ms: int = 30 * 86_400_000
    value_mid_purchases: int = 2
    value_high_purchases: int = 5
    value_mid_spend: float = 100.0
    value_high_spend: float = 500.0
    value_recent_ms: int = 30 * 86_400_000
    # --- recommendation inputs kept in the profile (state v3; operational, not model inputs) ---
    recent_items_max: int = 50  # distinct items the user touched (view/fav/cart), strongest decayed weight kept
    bought_items_max: int = 50  # latest purchased items kept for exclusion
    bought_exclude_ms: int = 7 * 86_400_000  # a purchase this recent excludes the item from recommendations

    @functools.cached_property  # read for every event: computed once (frozen, so it cannot go stale)
    def max_window_ms(self) -> int:
        return max(self.windows.values())

    def __hash__(self) -> int:  # dict fields: hash by identity is enough for caching
        return id(self)


@dataclass(frozen=True)
class PopularitySettings:
    """"Popular right now": item counts per category over a sliding event-time window
    (udfs.popularity). ``window_ms`` must be a multiple of ``slide_ms`` (Config checks)."""

    window_ms: int = 24 * 3_600_000
    slide_ms: int = 3_600_000
    # the keyed stage emits changed tops once per emit_ms of event time (and all at each slide):
    # "popular now" lags by at most this, and the per-event cost stays one counter update
    emit_ms: int = 300_000
    # an event this much older than its category's latest event is still counted in its own bucket
    lateness_ms: int = 300_000
    bucket_items: int = 64  # Space-Saving counters per (category, slide bucket)
    top_items: int = 20  # items per category in the broadcast snapshot
    max_categories: int = 2_000  # categories in the broadcast snapshot (most active kept)
    global_items: int = 50  # items of the all-categories list (cold start, baseline)
    global_bucket_items: int = 1_024  # Space-Saving counters per bucket of the all-categories window
    event_weights: dict[str, int] = field(default_factory=lambda: {"view": 1, "fav": 2, "cart": 3, "purchase": 3})

    def __hash__(self) -> int:
        return id(self)


@dataclass(frozen=True)
class RecommendSettings:
    """How udfs.recommend blends the user's own recent items with what is popular in their categories."""

    n: int = 10
    own_weight: float = 1.0  # weight of the user's own decayed item affinity (normalised to [0, 1])
    # weight of category share x normalised popularity: chosen on the tuning days of the Taobao
    # evaluation; popular items added nothing measurable there and a weight of 3 cost hit-rate, so
    # they mostly fill lists of users with few own items (docs/RECOMMENDATIONS.md)
    popular_weight: float = 0.05
    categories: int = 5  # top interest categories whose popular items are candidates
    fallback_weight: float = 0.01  # global popularity fills what is left (cold start)
