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

    @functools.cached_property  # read for every event: computed once (frozen, so it cannot go stale)
    def max_window_ms(self) -> int:
        return max(self.windows.values())

    def __hash__(self) -> int:  # dict fields: hash by identity is enough for caching
        return id(self)
