"""Offline evaluation of the recommendations on the Taobao head file (docs/RECOMMENDATIONS.md).

    python -m model_export.eval_recommendations [--limit LINES] [--plot docs/recommendations_eval.png]

Point in time: the events are replayed once in time order through the job's own core
(udfs.profile.step, udfs.popularity.PopularityIndex, udfs.recommend); after every applied event of a
user the lists are computed from the state as it is then. Target: the items the user carts or buys
in the next 24 h (points with no target are skipped; points whose 24 h run past the data are
censored). Metrics: hit-rate@10 (any target in the list) and recall@10 (share of targets in it), plus
hit-rate on *new* targets (items the user had not touched before), with 95% user-bootstrap CIs.

Time split: the blend's weights and window are chosen on the tuning days; the test days are only
reported. "refresh every k" reuses the list computed at the user's last k-th event (stale lists).
"""

from __future__ import annotations

import argparse
import bisect
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Optional

import numpy as np

from model_export.dataset import BEIJING, DAY_MS, load_events
from udfs.popularity import PopularityIndex
from udfs.profile import Event, Outcome, Profile, step
from udfs.recommend import Ranked, popular_baseline, recent_views_baseline, recommend
from udfs.settings import PopularitySettings, RecommendSettings

ROOT = Path(__file__).resolve().parent.parent
HEAD = ROOT / "data" / "taobao_userbehavior" / "UserBehavior_head_84k.csv"
HOUR_MS = 3_600_000
TUNE_START = int(datetime(2017, 11, 28, tzinfo=BEIJING).timestamp() * 1000)
TEST_START = int(datetime(2017, 12, 1, tzinfo=BEIJING).timestamp() * 1000)
WINDOWS = {"24h": PopularitySettings(window_ms=24 * HOUR_MS), "6h": PopularitySettings(window_ms=6 * HOUR_MS)}
# name -> (popularity window, blend settings); "own only" is the blend without popularity
BLENDS: dict[str, tuple[str, RecommendSettings]] = {
    "own only": ("24h", RecommendSettings(popular_weight=0.0)),
    "blend pw=0.05 24h": ("24h", RecommendSettings(popular_weight=0.05)),
    "blend pw=0.3 24h": ("24h", RecommendSettings(popular_weight=0.3)),
    "blend pw=1 24h": ("24h", RecommendSettings(popular_weight=1.0)),
    "blend pw=3 24h": ("24h", RecommendSettings(popular_weight=3.0)),
    "blend pw=1 6h": ("6h", RecommendSettings(popular_weight=1.0)),
}
BASELINES = ("global popular 24h", "recent views")
# refresh variants of the default blend (udfs.settings.RecommendSettings()): list reused for k - 1 events
REFRESHED = "blend pw=0.05 24h"
REFRESH = (5, 20)


@dataclass
class Scores:
    """Per evaluation point of one method: user, hit, recall, new-item hit (None: no new target)."""

    users: list[str] = field(default_factory=list)
    hit: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    new_hit: list[Optional[float]] = field(default_factory=list)

    def add(self, user: str, ranked: Ranked, targets: set[str], new: set[str]) -> None:
        shown = {i for i, _ in ranked}
        self.users.append(user)
        self.hit.append(float(bool(shown & targets)))
        self.recall.append(len(shown & targets) / len(targets))
        self.new_hit.append(float(bool(shown & new)) if new else None)


def bootstrap_ci(users: Sequence[str], values: Sequence[Optional[float]], n_boot: int = 1000,
                 seed: int = 0) -> tuple[float, float, float, int]:
    """(mean over points, 2.5%, 97.5% of the mean over users resampled with replacement, points)."""
    pairs = [(u, v) for u, v in zip(users, values, strict=True) if v is not None]
    if not pairs:
        return float("nan"), float("nan"), float("nan"), 0
    idx: dict[str, int] = {}
    sums = np.zeros(len({u for u, _ in pairs}))
    counts = np.zeros_like(sums)
    for u, v in pairs:
        k = idx.setdefault(u, len(idx))
        sums[k] += v
        counts[k] += 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    return float(sums.sum() / counts.sum()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)), \
        len(pairs)


class Targets:
    """Each user's carts and purchases in time order, and the items they touched so far."""

    def __init__(self, events: Sequence[Event], horizon_ms: int) -> None:
        self.horizon = horizon_ms
        self.by_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for e in events:
            if e.event_type in ("cart", "purchase"):
                self.by_user[e.user_id].append((e.event_time, e.item_id))

    def after(self, user: str, t: int) -> set[str]:
        rows = self.by_user.get(user, [])
        lo = bisect.bisect_right(rows, (t, "\U0010ffff"))
        hi = bisect.bisect_right(rows, (t + self.horizon, "\U0010ffff"))
        return {item for _, item in rows[lo:hi]}


Method = Callable[[Profile, int], Ranked]


def _methods(indexes: dict[str, PopularityIndex], n: int) -> dict[str, Method]:
    def blend(window: str, rs: RecommendSettings) -> Method:
        idx = indexes[window]
        return lambda p, now: recommend(p, idx.snapshot, now, n, rs, pops=idx.s)

    out: dict[str, Method] = {name: blend(w, rs) for name, (w, rs) in BLENDS.items()}
    g = indexes["24h"]
    out["global popular 24h"] = lambda p, now: popular_baseline(p, g.snapshot, now, n, pops=g.s)
    out["recent views"] = lambda p, now: recent_views_baseline(p, now, n)
    return out


def evaluate(events: Sequence[Event], horizon_ms: int = DAY_MS, n: int = 10,
             periods: Optional[dict[str, tuple[int, int]]] = None) -> dict[str, dict[str, Scores]]:
    """{period: {method (@k for refresh variants): Scores}} of one time-ordered replay."""
    end = max(e.event_time for e in events)
    periods = periods or {"tune": (TUNE_START, TEST_START), "test": (TEST_START, end - horizon_ms + 1)}
    first = min(lo for lo, _ in periods.values())
    indexes = {w: PopularityIndex(s) for w, s in WINDOWS.items()}
    methods = _methods(indexes, n)
    targets = Targets(events, horizon_ms)
    out: dict[str, dict[str, Scores]] = {p: defaultdict(Scores) for p in periods}
    profiles: dict[str, Profile] = {}
    touched: dict[str, set[str]] = defaultdict(set)
    applied: dict[str, int] = defaultdict(int)  # applied events per user (refresh counter)
    cached: dict[tuple[str, int], Ranked] = {}  # (user, k) -> list at the user's last refresh
    for ev in events:
        for idx in indexes.values():
            idx.observe(ev)
        r = step(profiles.get(ev.user_id), ev)
        if r.state is not None:
            profiles[ev.user_id] = r.state
        if r.outcome is not Outcome.APPLIED:
            continue
        u, t = ev.user_id, ev.event_time
        touched[u].add(ev.item_id)
        applied[u] += 1
        if t < first:
            continue
        for k in REFRESH:  # the stale lists: computed at the user's 1st, (k+1)th, ... event only
            if (applied[u] - 1) % k == 0 or (u, k) not in cached:
                cached[(u, k)] = methods[REFRESHED](r.state, t)
        period = next((p for p, (lo, hi) in periods.items() if lo <= t < hi), None)
        tg = targets.after(u, t) if period else set()
        if not tg:
            continue
        new = tg - touched[u]
        for name, m in methods.items():
            out[period][name].add(u, m(r.state, t), tg, new)
        for k in REFRESH:
            out[period][f"{REFRESHED} @{k}"].add(u, cached[(u, k)], tg, new)
    return {p: dict(v) for p, v in out.items()}


def summarise(results: dict[str, dict[str, Scores]], n_boot: int = 1000) -> dict[str, dict[str, dict]]:
    """{period: {method: {metric: (est, lo, hi, points)}}}"""
    return {
        p: {m: {"hit": bootstrap_ci(s.users, s.hit, n_boot), "recall": bootstrap_ci(s.users, s.recall, n_boot),
                "new_hit": bootstrap_ci(s.users, s.new_hit, n_boot)} for m, s in ms.items()}
        for p, ms in results.items()
    }


# (a, b): the per-point difference a - b on the same points, bootstrapped by user (paired)
PAIRS = (("own only", "recent views"), (REFRESHED, "own only"), (f"{REFRESHED} @5", REFRESHED),
         (f"{REFRESHED} @20", REFRESHED))


def paired(results: dict[str, dict[str, Scores]], period: str, n_boot: int = 1000) -> str:
    rows = ["| difference | hit-rate@10 [95% CI] | recall@10 [95% CI] |", "|---|---|---|"]
    for a, b in PAIRS:
        sa, sb = results[period][a], results[period][b]
        assert sa.users == sb.users  # same points, same order
        cells = []
        for metric in ("hit", "recall"):
            diff = [x - y for x, y in zip(getattr(sa, metric), getattr(sb, metric), strict=True)]
            est, lo, hi, _ = bootstrap_ci(sa.users, diff, n_boot)
            cells.append(f"{est:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        rows.append(f"| {a} - {b} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


def best_blend(summary: dict[str, dict[str, dict]], period: str = "tune") -> str:
    return max(BLENDS, key=lambda m: (summary[period][m]["hit"][0], m))


def table(summary: dict[str, dict[str, dict]], period: str, chosen: str) -> str:
    rows = ["| method | hit-rate@10 [95% CI] | recall@10 [95% CI] | hit-rate@10, new items only [95% CI] | points |",
            "|---|---|---|---|---|"]
    def cell(r: dict, metric: str) -> str:
        est, lo, hi, _ = r[metric]
        return f"{est:.3f} [{lo:.3f}, {hi:.3f}]"

    for m, r in summary[period].items():
        mark = " (chosen on tune)" if m == chosen else ""
        rows.append(f"| {m}{mark} | {cell(r, 'hit')} | {cell(r, 'recall')} | {cell(r, 'new_hit')} | {r['hit'][3]} |")
    return "\n".join(rows)


def plot(summary: dict[str, dict[str, dict]], period: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    names = [m for m in summary[period] if "@" not in m]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, metric, title in zip(axes, ("hit", "recall", "new_hit"),
                                 ("hit-rate@10", "recall@10", "hit-rate@10 (new items)"), strict=True):
        est = [summary[period][m][metric][0] for m in names]
        lo = [e - summary[period][m][metric][1] for e, m in zip(est, names, strict=True)]
        hi = [summary[period][m][metric][2] - e for e, m in zip(est, names, strict=True)]
        ax.barh(names, est, xerr=[lo, hi], color="tab:blue", alpha=0.7, capsize=3)
        ax.set_title(f"{title}, {period} days")
        ax.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="first LINES of the head file (whole users)")
    ap.add_argument("--plot", type=Path, default=None, help="write the test-period plot here (PNG)")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args(argv)
    events, dropped = load_events(HEAD, limit=args.limit)
    results = evaluate(events)
    summary = summarise(results, args.bootstrap)
    chosen = best_blend(summary)
    print(f"{len(events)} events ({dropped} before the collection window dropped), "
          f"{len({e.user_id for e in events})} users; chosen on tune: {chosen}\n")
    for period in summary:
        print(f"### {period}\n\n{table(summary, period, chosen)}\n\n{paired(results, period, args.bootstrap)}\n")
    if args.plot:
        plot(summary, "test", args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
