"""Top-N items to show a user next, from the live profile and the "popular now" snapshot. Pure
Python: the stream job, the offline evaluation (model_export/eval_recommendations.py) and the bench
call these functions.

score(item) = own_weight     * affinity(item, now) / max affinity          (the user's own recent items)
            + popular_weight * share(category) * count(item) / top count  (popular in the user's top categories)
Items the user bought within ``bought_exclude_ms`` are never shown. When fewer than ``n`` candidates
remain (a new user), the all-categories list fills the rest with ``fallback_weight``. Ties are broken
by item id, so equal inputs give equal lists in the stream and offline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple, Optional

from udfs import item_memory
from udfs.popularity import DEFAULT_POPULARITY, GLOBAL, CategoryTop, fresh
from udfs.profile import DEFAULT_SETTINGS, Profile, top_categories
from udfs.settings import PopularitySettings, ProfileSettings, RecommendSettings

DEFAULT_RECOMMEND = RecommendSettings()
VERSION = "blend-v1"  # model_version of the lists (change it with the scoring formula)
Ranked = list[tuple[str, float]]


def recommend(
    profile: Optional[Profile],
    popular: Mapping[str, CategoryTop],
    now: int,
    n: Optional[int] = None,
    s: RecommendSettings = DEFAULT_RECOMMEND,
    ps: ProfileSettings = DEFAULT_SETTINGS,
    pops: PopularitySettings = DEFAULT_POPULARITY,
    basis: Optional[dict[str, tuple[int, int]]] = None,
) -> Ranked:
    """[(item id, score)] best first, at most ``n`` (default ``s.n``), as of event time ``now``.
    ``basis``, when given, receives {category: (as_of, total)} of every popular list that was read:
    what a stream-computed list depends on besides the profile (see ``Recommendation``)."""
    n = s.n if n is None else n
    banned = item_memory.excluded(profile.bought, now, ps) if profile is not None else set()
    scores: dict[str, float] = {}
    if profile is not None:
        _add_own(scores, profile, now, s, ps)
        for c, share in top_categories(profile, s.categories).items():
            t = popular.get(c)
            if t is not None and t.items and fresh(t, now, pops):
                _add_popular(scores, t, s.popular_weight * share)
                if basis is not None:
                    basis[c] = (t.as_of, t.total)
    if (len(scores.keys() - banned) if banned else len(scores)) < n:
        t = popular.get(GLOBAL)
        if t is not None and t.items and fresh(t, now, pops):
            peak = t.items[0][1]
            for item, count in t.items:
                scores.setdefault(item, s.fallback_weight * count / peak)
            if basis is not None:
                basis[GLOBAL] = (t.as_of, t.total)
    return _ranked(scores, banned, n)


class Recommendation(NamedTuple):
    """A user's list as the job writes it. ``as_of``: the event time it is computed for (the user's
    latest event); ``basis``: the popular lists it read, {category: (as_of, total)}. Which version of
    "popular now" a subtask holds depends on when the popularity stage's updates arrive (they come
    from other users' events, in other partitions): recording it lets a replay check the list
    exactly (tests/integration/test_recommendations.py)."""

    user_id: str
    items: Ranked
    profile_version: int
    as_of: int
    basis: dict[str, tuple[int, int]]


def refresh(
    users: Iterable[tuple[str, Profile]],
    popular: Mapping[str, CategoryTop],
    s: RecommendSettings = DEFAULT_RECOMMEND,
    ps: ProfileSettings = DEFAULT_SETTINGS,
    pops: PopularitySettings = DEFAULT_POPULARITY,
) -> list[Recommendation]:
    """One list per user, as of the user's latest event: what the job writes once per user and
    checkpoint (lists of a user's earlier events would be overwritten in the table before anyone
    read them; docs/RECOMMENDATIONS.md measures the policies)."""
    out = []
    for user_id, p in users:
        basis: dict[str, tuple[int, int]] = {}
        items = recommend(p, popular, p.last_seen, s=s, ps=ps, pops=pops, basis=basis)
        out.append(Recommendation(user_id, items, p.version, p.last_seen, basis))
    return out


def _add_own(scores: dict[str, float], p: Profile, now: int, s: RecommendSettings, ps: ProfileSettings) -> None:
    # item_memory.affinity inlined (the hot loop of a recommendation): weight * 2^-(age / half-life)
    k = -math.log(2.0) / ps.interest_half_life_ms
    aff = {i: r.weight * math.exp(k * max(0, now - r.t)) for i, r in p.recent_items.items()}
    peak = max(aff.values(), default=0.0)
    if peak > 0:
        f = s.own_weight / peak
        for i in sorted(aff):
            scores[i] = scores.get(i, 0.0) + aff[i] * f


def _add_popular(scores: dict[str, float], t: CategoryTop, weight: float) -> None:
    peak = t.items[0][1]
    get = scores.get  # bound once: this loop runs for every item of up to `categories` lists per user
    for item, count in t.items:
        scores[item] = get(item, 0.0) + weight * count / peak


def _ranked(scores: Mapping[str, float], banned: set[str], n: int) -> Ranked:
    # (-score, item) tuples sort natively: best score first, ties by item id. A full sort of the few
    # dozen candidates beats heapq.nsmallest's Python-level heap (8.7 vs 12.6 us at 70 candidates)
    if banned:
        best = sorted([(-sc, i) for i, sc in scores.items() if sc > 0 and i not in banned])[:n]
    else:  # most users bought nothing recently: no membership test per candidate
        best = sorted([(-sc, i) for i, sc in scores.items() if sc > 0])[:n]
    return [(i, -neg) for neg, i in best]


# --- baselines of the offline evaluation (same inputs, same exclusion) ---------------------------


def popular_baseline(
    profile: Optional[Profile], popular: Mapping[str, CategoryTop], now: int, n: int = 10,
    ps: ProfileSettings = DEFAULT_SETTINGS, pops: PopularitySettings = DEFAULT_POPULARITY,
) -> Ranked:
    """The most popular items over the same window, all categories."""
    t = popular.get(GLOBAL)
    if t is None or not fresh(t, now, pops):
        return []
    banned = item_memory.excluded(profile.bought, now, ps) if profile is not None else set()
    return _ranked({i: float(c) for i, c in t.items}, banned, n)


def recent_views_baseline(
    profile: Optional[Profile], now: int, n: int = 10, ps: ProfileSettings = DEFAULT_SETTINGS
) -> Ranked:
    """The user's most recently viewed items (score: view time in ms)."""
    if profile is None:
        return []
    banned = item_memory.excluded(profile.bought, now, ps)
    views = {i: float(r.last_view) for i, r in profile.recent_items.items() if r.last_view is not None}
    return _ranked(views, banned, n)
