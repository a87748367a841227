"""A large event stream drawn from the distributions of the real Taobao data (no servers).

From the bundled files: how active users are (events per user over 9 days, head file), the event
type mix, category popularity and items per category (2-hour slice of 66k users), and how often a
user's next event stays in the same category or on the same item (head file). Users, categories and
items are resampled from those; times are spread over the head file's 9 days, in time order.

    python -m bench.synthetic --events 1000000 --users 100000     # prints a summary
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from flink_jobs.config import Config
from tools import replay
from udfs.profile import Event


def generate(cfg: Config, n_events: int, n_users: int, seed: int = 7) -> list[Event]:
    head = replay.load(cfg, "taobao-head")
    sl = replay.load(cfg, "taobao-slice")
    rng = np.random.default_rng(seed)

    per_user = np.array(list(Counter(e.user_id for e in head).values()), dtype=float)
    weights = rng.choice(per_user, size=n_users)
    weights /= weights.sum()
    users = rng.choice(n_users, size=n_events, p=weights)

    types = Counter(e.event_type for e in sl)
    type_names = list(types)
    event_types = rng.choice(len(type_names), size=n_events, p=np.array([types[t] for t in type_names]) / len(sl))

    cats = Counter(e.category_id for e in sl)
    cat_names = list(cats)
    cat_p = np.array([cats[c] for c in cat_names], dtype=float) / len(sl)
    items_of: dict[str, list[str]] = defaultdict(list)
    for e in sl:
        items_of[e.category_id].append(e.item_id)  # with repeats: sampling follows item popularity

    by_user: dict[str, list[Event]] = defaultdict(list)
    for e in head:
        by_user[e.user_id].append(e)
    same_cat = same_item = pairs = 0
    for evs in by_user.values():
        for a, b in zip(evs, evs[1:], strict=False):
            pairs += 1
            same_cat += a.category_id == b.category_id
            same_item += a.item_id == b.item_id
    p_same_cat, p_same_item = same_cat / pairs, same_item / max(same_cat, 1)

    t0, t1 = head[0].event_time, head[-1].event_time
    times = np.sort(rng.integers(t0, t1, size=n_events))
    fresh_cat = rng.choice(len(cat_names), size=n_events, p=cat_p)
    u_cat = rng.random(n_events)
    u_item = rng.random(n_events)
    last: dict[int, tuple[str, str]] = {}
    out: list[Event] = []
    for i in range(n_events):
        u = int(users[i])
        prev = last.get(u)
        if prev is not None and u_cat[i] < p_same_cat:
            cat = prev[0]
            item = prev[1] if u_item[i] < p_same_item else items_of[cat][int(u_item[i] * 1e9) % len(items_of[cat])]
        else:
            cat = cat_names[fresh_cat[i]]
            pool = items_of[cat]
            item = pool[int(u_item[i] * 1e9) % len(pool)]
        last[u] = (cat, item)
        out.append(Event(
            event_id=f"syn{seed}-{i}", user_id=f"s{u}", event_type=type_names[event_types[i]], item_id=item,
            category_id=cat, price=None, quantity=None, event_time=int(times[i]), session_id=None, shop_id="taobao",
        ))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=110_000)  # ~100k of them appear in 1M events
    args = ap.parse_args(argv)
    evs = generate(Config.from_env(), args.events, args.users)
    print(f"{len(evs):,} events, {len({e.user_id for e in evs}):,} users, "
          f"types {dict(Counter(e.event_type for e in evs))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
