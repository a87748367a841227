"""Cost of recommendations per event, on the real Taobao files, no servers (docs/RECOMMENDATIONS.md):

- popularity: the keyed stage's step (category + all-categories key), its state round trip (the
  stage reads and writes a category's window as bytes), the emit ticks amortised per event;
- recommend: one list from a replayed profile and the live snapshot;
- Space-Saving accuracy: the bounded snapshot against exact counts on the 2 h slice (66k users);
- refresh policy: recommend calls per event when a user's list is refreshed every event, every k-th
  event, once per micro-batch or once per checkpoint (distinct users per batch / checkpoint's worth
  of events, at the README's measured 1,381 ev/s).

    python -m bench.bench_recommend     # prints a table, writes bench/results/recommend.json
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from flink_jobs.config import Config
from tools import replay
from udfs.popularity import GLOBAL, PopularityIndex, decode_window, encode_window, step, top
from udfs.profile import Event, Outcome, replay_steps
from udfs.profile_codec import encode_profile
from udfs.recommend import recommend

OUT = Path(__file__).resolve().parent / "results" / "recommend.json"
README_EV_PER_S = 1_381  # README "Measured": the job's end-to-end rate on a quiet machine
K = (1, 5, 20)


def popularity_costs(events: list[Event], cfg: Config) -> dict[str, float]:
    s = cfg.popularity_settings()
    t0 = time.perf_counter()
    windows: dict = {}
    for e in events:
        for key in (e.category_id, GLOBAL):
            windows[key] = step(windows.get(key), e, s, key)
    step_us = (time.perf_counter() - t0) / len(events) * 1e6
    blobs: dict[str, bytes] = {}
    t0 = time.perf_counter()
    for e in events:  # the keyed stage as Flink runs it: state bytes in, state bytes out
        blob = blobs.get(e.category_id)
        blobs[e.category_id] = encode_window(step(decode_window(blob) if blob else None, e, s))
    roundtrip_us = (time.perf_counter() - t0) / len(events) * 1e6
    idx = PopularityIndex(s)
    t0 = time.perf_counter()
    for e in events:
        idx.observe(e)
    index_us = (time.perf_counter() - t0) / len(events) * 1e6
    return {"pop_step_us": step_us, "pop_state_roundtrip_us": roundtrip_us, "pop_index_us": index_us,
            "pop_emit_amortised_us": max(0.0, index_us - step_us),
            "pop_window_bytes_max": max(len(b) for b in blobs.values())}


def accuracy(events: list[Event], cfg: Config) -> dict[str, float]:
    """Top items per category: bounded counters vs exact counts, same window, at the end of the slice."""
    s = cfg.popularity_settings()
    exact_s = replace(s, bucket_items=10**9, global_bucket_items=10**9)
    bounded, exact = {}, {}
    for e in events:
        bounded[e.category_id] = step(bounded.get(e.category_id), e, s)
        exact[e.category_id] = step(exact.get(e.category_id), e, exact_s)
    at = events[-1].event_time
    overlap, shown, exact_counts = 0, 0, 0
    for c, w in exact.items():
        want = top(w, at, exact_s).items[: s.top_items]
        got = {i for i, _ in top(bounded[c], at, s).items}
        shown += len(want)
        overlap += len({i for i, _ in want} & got)
        exact_counts += sum(1 for i, n in top(bounded[c], at, s).items if dict(want).get(i) == n)
    return {"categories": len(exact), "top_overlap": overlap / shown, "top_exact_counts": exact_counts / shown}


def recommend_costs(events: list[Event], cfg: Config) -> dict[str, float]:
    ps, pops, rs = cfg.profile_settings(), cfg.popularity_settings(), cfg.recommend_settings()
    idx = PopularityIndex(pops)
    t_rec, calls, lengths = 0.0, 0, 0
    t0 = time.perf_counter()
    for r in replay_steps(events, ps):
        idx.observe(r.event)
        if r.outcome is not Outcome.APPLIED:
            continue
        t = time.perf_counter()
        ranked = recommend(r.state, idx.snapshot, r.event.event_time, None, rs, ps, pops)
        t_rec += time.perf_counter() - t
        calls += 1
        lengths += len(ranked)
    total = time.perf_counter() - t0
    return {"recommend_us": t_rec / calls * 1e6, "replay_with_recs_us": total / len(events) * 1e6,
            "mean_list_length": lengths / calls}


def profile_costs(events: list[Event], cfg: Config) -> dict[str, float]:
    ps = cfg.profile_settings()
    t0 = time.perf_counter()
    final = {}
    for r in replay_steps(events, ps):
        final[r.event.user_id] = r.state
    step_us = (time.perf_counter() - t0) / len(events) * 1e6
    sizes = [len(encode_profile(p)) for p in final.values()]
    bare = [len(encode_profile(replace(p, recent_items={}, bought={}))) for p in final.values()]
    return {"profile_step_us": step_us, "state_bytes_mean": sum(sizes) / len(sizes),
            "state_bytes_mean_without_item_memory": sum(bare) / len(bare)}


def refresh_calls(events: list[Event], cfg: Config) -> dict[str, float]:
    """Recommend calls per event for each policy (the slice: 66k users interleaved as in a stream)."""
    out: dict[str, float] = {}
    seen: dict[str, int] = {}
    for k in K:
        seen.clear()
        calls = 0
        for e in events:
            n = seen[e.user_id] = seen.get(e.user_id, 0) + 1
            calls += (n - 1) % k == 0
        out[f"calls_per_event_every_{k}"] = calls / len(events)
    per_ckpt = max(1, int(README_EV_PER_S * cfg.checkpoint_interval_ms / 1000))
    for policy, size in (("per_checkpoint", per_ckpt), ("per_batch", cfg.batch_max_events)):
        # once per user per chunk: the list after the user's last event of the chunk, which is the
        # only one the one-row-per-user table keeps anyway
        calls = sum(len({e.user_id for e in events[i:i + size]}) for i in range(0, len(events), size))
        out[f"calls_per_event_{policy}"] = calls / len(events)
    out["events_per_checkpoint"] = per_ckpt
    return out


def main() -> int:
    cfg = Config.from_env()
    head = replay.load(cfg, "taobao-head")
    sliced = replay.load(cfg, "taobao-slice")
    figures: dict[str, float] = {"head_events": len(head), "slice_events": len(sliced)}
    figures.update({f"slice_{k}": v for k, v in popularity_costs(sliced, cfg).items()})
    figures.update({f"head_{k}": v for k, v in popularity_costs(head, cfg).items()})
    figures.update(accuracy(sliced, cfg))
    figures.update(recommend_costs(head, cfg))
    figures.update(profile_costs(head, cfg))
    rec = figures["recommend_us"]
    for name, evs in (("slice", sliced), ("head", head)):  # many short users / few long ones
        calls = refresh_calls(evs, cfg)
        figures.update({f"{name}_{k}": v for k, v in calls.items()})
        for k in K:
            figures[f"{name}_recs_us_per_event_every_{k}"] = rec * calls[f"calls_per_event_every_{k}"]
        for policy in ("per_checkpoint", "per_batch"):
            figures[f"{name}_recs_us_per_event_{policy}"] = rec * calls[f"calls_per_event_{policy}"]
    width = max(len(k) for k in figures)
    for k, v in figures.items():
        print(f"{k:<{width}}  {v:,.3f}" if isinstance(v, float) else f"{k:<{width}}  {v:,}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
