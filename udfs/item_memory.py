"""The profile's memory of items, kept for recommendations (profile state v3): the items a user
recently touched (view, fav, cart) with a decayed affinity, and the items they recently bought (to
exclude them). Pure Python; udfs.profile calls ``observe`` from ``apply_event``.

Bounds (per user, independent of traffic): at most ``recent_items_max`` touched items (the weakest
decayed affinity is evicted, ties by item id) and at most ``bought_items_max`` purchases no older
than ``bought_exclude_ms`` before the user's latest event. Affinity decays with the half-life of the
category interests, so an item and its category fade at the same speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from udfs.settings import ProfileSettings


@dataclass(slots=True)
class RecentItem:
    category_id: str
    t: int  # latest view/fav/cart (epoch ms)
    weight: float  # interest weights of its events, decayed to t
    last_view: Optional[int] = None


def decay(dt_ms: int, s: ProfileSettings) -> float:
    return math.pow(2.0, -dt_ms / s.interest_half_life_ms)


def affinity(r: RecentItem, now: int, s: ProfileSettings) -> float:
    """The item's decayed weight at ``now`` (an item touched after ``now`` counts as of its time)."""
    return r.weight * decay(max(0, now - r.t), s)


def observe(
    items: dict[str, RecentItem], bought: dict[str, int], kind: str, item_id: str, category_id: str,
    t: int, last_seen: int, s: ProfileSettings,
) -> None:
    """Record one applied event; mutates ``items`` and ``bought`` and keeps both within bounds."""
    if kind == "purchase":
        if t > bought.get(item_id, t - 1):
            bought[item_id] = t
    else:
        _touch(items, kind, item_id, category_id, t, last_seen, s)
    if bought:
        _prune_bought(bought, last_seen, s)


def _touch(items: dict[str, RecentItem], kind: str, item_id: str, category_id: str, t: int, last_seen: int,
           s: ProfileSettings) -> None:
    w = s.interest_weights[kind]
    r = items.get(item_id)
    if r is None:
        r = items[item_id] = RecentItem(category_id, t, w)
    elif t >= r.t:
        r.weight = r.weight * decay(t - r.t, s) + w
        r.t = t
    else:  # out of order within the lateness: add it decayed to the item's time
        r.weight += w * decay(r.t - t, s)
    if kind == "view" and (r.last_view is None or t > r.last_view):
        r.last_view = t
    if len(items) > s.recent_items_max:
        # compare every item at the same instant: the user's latest event
        weakest = min(items.items(), key=lambda kv: (affinity(kv[1], last_seen, s), kv[0]))[0]
        del items[weakest]


def _prune_bought(bought: dict[str, int], last_seen: int, s: ProfileSettings) -> None:
    # a purchase at or before last_seen - window excludes nothing at any later instant
    horizon = last_seen - s.bought_exclude_ms
    for item in [i for i, t in bought.items() if t <= horizon]:
        del bought[item]
    if len(bought) > s.bought_items_max:
        keep = sorted(bought.items(), key=lambda kv: (-kv[1], kv[0]))[: s.bought_items_max]
        bought.clear()
        bought.update(keep)


def excluded(bought: dict[str, int], now: int, s: ProfileSettings) -> set[str]:
    """Items bought within ``bought_exclude_ms`` before ``now``."""
    return {i for i, t in bought.items() if now - t < s.bought_exclude_ms}
