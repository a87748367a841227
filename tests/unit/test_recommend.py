"""udfs.recommend: deterministic top-N from the profile and the popular-now snapshot."""

import random
from dataclasses import replace

from udfs.popularity import GLOBAL, CategoryTop, PopularityIndex
from udfs.profile import Event, apply_event, step
from udfs.profile_codec import decode_profile, encode_profile
from udfs.recommend import popular_baseline, recent_views_baseline, recommend
from udfs.settings import PopularitySettings, ProfileSettings, RecommendSettings

H = 3_600_000
T0 = 1_511_568_000_000
PS = ProfileSettings()
POP = PopularitySettings()


def ev(t, kind="view", item="i1", cat="c1", user="u1"):
    return Event(f"e{t}-{kind}-{item}-{user}", user, kind, item, cat, None, None, T0 + t, None, None)


def build(events):
    p = None
    for e in events:
        p = apply_event(p, e)
    return p


def snap(now, **cats):
    return {c: CategoryTop(c, now, sum(n for _, n in items), tuple(items)) for c, items in cats.items()}


def test_own_items_by_affinity_then_popular_items_of_the_top_categories():
    p = build([ev(0, "view", "old"), ev(H, "cart", "carted"), ev(2 * H, "view", "fresh")])
    now = T0 + 2 * H
    popular = snap(now, c1=[("p1", 10), ("p2", 5)], c9=[("other", 100)])
    got = recommend(p, popular, now, 10)
    items = [i for i, _ in got]
    assert items[0] == "carted"  # cart weight 3 beats a fresh view
    assert set(items) == {"old", "carted", "fresh", "p1", "p2"}  # c9 is not an interest of the user
    assert [sc for _, sc in got] == sorted((sc for _, sc in got), reverse=True)
    only_own = recommend(p, popular, now, 10, RecommendSettings(popular_weight=0.0))
    assert {i for i, _ in only_own} == {"old", "carted", "fresh"}


def test_recently_bought_items_are_excluded_until_the_exclusion_window_ends():
    p = build([ev(0, "view", "a"), ev(1, "view", "b"), ev(2, "purchase", "a")])
    now = T0 + 10
    popular = snap(now, c1=[("a", 9), ("b", 3)])
    assert "a" not in {i for i, _ in recommend(p, popular, now)}
    later = now + PS.bought_exclude_ms
    assert "a" in {i for i, _ in recommend(p, snap(later, c1=[("a", 9)]), later)}
    assert "a" not in {i for i, _ in popular_baseline(p, {GLOBAL: popular["c1"]._replace(category_id=GLOBAL)}, now)}


def test_ties_are_broken_by_item_id_and_n_is_respected():
    p = build([ev(0, "view", "z"), ev(0, "view", "y")])
    got = recommend(p, {}, T0, 10)
    assert got == [("y", 1.0), ("z", 1.0)]
    assert len(recommend(p, snap(T0, c1=[(f"p{i}", 10) for i in range(20)]), T0, 3)) == 3


def test_cold_start_and_stale_categories_fall_back_to_global_popularity():
    now = T0 + 100 * H
    popular = snap(now, **{GLOBAL: [("g1", 5), ("g2", 2)]})
    popular["c1"] = CategoryTop("c1", now - 2 * POP.window_ms, 5, (("stale", 5),))
    assert [i for i, _ in recommend(None, popular, now)] == ["g1", "g2"]
    p = build([ev(100 * H, "view", "mine")])
    assert [i for i, _ in recommend(p, popular, now)] == ["mine", "g1", "g2"]  # 'stale' is out of window
    assert recommend(None, {}, now) == []


def test_baselines():
    p = build([ev(0, "view", "a"), ev(H, "cart", "b"), ev(2 * H, "view", "c"), ev(3 * H, "fav", "a")])
    assert [i for i, _ in recent_views_baseline(p, T0 + 3 * H, 10)] == ["c", "a"]  # fav/cart are not views
    g = snap(T0, **{GLOBAL: [("x", 3), ("y", 3), ("z", 1)]})
    assert popular_baseline(None, g, T0, 2) == [("x", 3.0), ("y", 3.0)]


def test_stream_and_offline_lists_are_equal_event_by_event():
    """The stream decodes the profile from state for every event (and may run in batches); the offline
    replay keeps live objects. Both must give the same list after every event."""
    rng = random.Random(11)
    events = [ev(t * 60_000, rng.choice(["view"] * 6 + ["cart", "fav", "purchase"]), f"i{rng.randrange(40)}",
                 f"c{rng.randrange(5)}", f"u{rng.randrange(4)}") for t in range(400)]
    idx = PopularityIndex(replace(POP, window_ms=6 * H, slide_ms=H))
    live, stored = {}, {}
    for e in events:
        idx.observe(e)
        r = step(live.get(e.user_id), e)
        live[e.user_id] = r.state
        s = step(decode_profile(stored[e.user_id]) if e.user_id in stored else None, e)
        stored[e.user_id] = encode_profile(s.state)
        a = recommend(r.state, idx.snapshot, e.event_time, pops=idx.s)
        b = recommend(decode_profile(stored[e.user_id]), dict(idx.snapshot), e.event_time, pops=idx.s)
        assert a == b
        assert len(a) <= 10 and len({i for i, _ in a}) == len(a)
        assert not {i for i, _ in a} & {i for i, t in r.state.bought.items() if e.event_time - t < PS.bought_exclude_ms}


def test_refresh_records_the_popular_lists_it_read_and_they_reproduce_the_list():
    from udfs.recommend import refresh

    p = build([ev(0, "view", "mine", "c1"), ev(H, "cart", "other", "c2", "u1")])
    now = p.last_seen
    popular = snap(now, c1=[("p1", 10)], c2=[("p2", 4)], c9=[("never", 50)])
    popular[GLOBAL] = CategoryTop(GLOBAL, now, 99, (("g1", 9), ("g2", 5)))
    (r,) = refresh([("u1", p)], popular)
    assert r.user_id == "u1" and r.as_of == now and r.profile_version == p.version
    assert r.items == recommend(p, popular, now)
    assert set(r.basis) == {"c1", "c2", GLOBAL}  # c9 is not among the user's categories
    assert r.basis["c1"] == (now, 10)
    used = {c: popular[c] for c in r.basis}
    assert recommend(p, used, now) == r.items  # what the basis names is all the list depends on
    (bare,) = refresh([("u1", p)], {})
    assert bare.basis == {} and [i for i, _ in bare.items] == [i for i, _ in recommend(p, {}, now)]
