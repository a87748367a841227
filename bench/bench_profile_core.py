"""Profile core figures on the real Taobao development file (84,475 events, 815 users), no servers:
per-event cost of step + features, state encode/decode cost and the state size per user.

    python -m bench.bench_profile_core      # prints a table, writes bench/results/profile_core.json
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from flink_jobs.config import Config
from tools import replay
from udfs.features import feature_vector
from udfs.profile import Outcome, replay_steps
from udfs.profile_codec import decode_profile, encode_profile

OUT = Path(__file__).resolve().parent / "results" / "profile_core.json"


def main() -> int:
    cfg = Config.from_env()
    settings = cfg.profile_settings()
    events = replay.load(cfg, "taobao-head")

    t0 = time.perf_counter()
    for r in replay_steps(events, settings):
        if r.outcome is Outcome.APPLIED:
            feature_vector(r.before, r.state, r.event, settings)
    step_us = (time.perf_counter() - t0) / len(events) * 1e6

    # the state as the job writes it after every event: encode cost and size over the whole run
    sizes: list[int] = []
    t_enc = 0.0
    final = {}
    for r in replay_steps(events, settings):
        t = time.perf_counter()
        blob = encode_profile(r.state)
        t_enc += time.perf_counter() - t
        sizes.append(len(blob))
        final[r.event.user_id] = blob
    t = time.perf_counter()
    for blob in final.values():
        decode_profile(blob)
    dec_us = (time.perf_counter() - t) / len(final) * 1e6
    final_sizes = sorted(len(b) for b in final.values())

    figures = {
        "events": len(events),
        "users": len(final),
        "step_plus_features_us_per_event": round(step_us, 1),
        "encode_us_per_event": round(t_enc / len(events) * 1e6, 1),
        "decode_us_per_profile": round(dec_us, 1),
        "state_bytes_per_user_final_mean": round(statistics.mean(final_sizes)),
        "state_bytes_per_user_final_p50": final_sizes[len(final_sizes) // 2],
        "state_bytes_per_user_final_p99": final_sizes[int(len(final_sizes) * 0.99)],
        "state_bytes_per_user_final_max": final_sizes[-1],
        "state_bytes_written_per_event_mean": round(statistics.mean(sizes)),
    }
    width = max(map(len, figures))
    for k, v in figures.items():
        print(f"{k:<{width}}  {v}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
