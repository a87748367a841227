"""Replay events into the running job and report what came out: replay rate, end-to-end rate,
sample predictions from Kafka, one user's profile from Cassandra, dead letters.

    python -m tools.demo_report [--job-id ID] -- [tools.replay flags]
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from collections.abc import Sequence

from flink_jobs.cassandra_store import CassandraStore
from flink_jobs.config import Config, cli
from tools import replay
from tools.kafka_io import AvroCodec, collect, end_offsets, json_default
from udfs import schemas


def state_size_line(cfg: Config, job_id: str, users: int, wait_s: float = 30.0) -> str:
    """Size of the job's latest completed checkpoint (RocksDB, full size) per user, taken after a
    checkpoint that started once all predictions were out."""
    from flink_jobs.submit import rest

    start = time.time() * 1000
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        latest = rest(cfg, f"/jobs/{job_id}/checkpoints")["latest"]["completed"]
        if latest and latest["trigger_timestamp"] > start:
            size = latest["state_size"]
            return (f"checkpoint {latest['id']}: {size:,} bytes of state for {users} users "
                    f"({size / max(users, 1):,.0f} bytes per user, sources and sinks included)")
        time.sleep(1)
    return "no checkpoint completed in time to measure the state size"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job-id", default="")
    parser.add_argument("--timeout", type=float, default=1800.0, help="max seconds to wait for predictions")
    parser.add_argument("replay_args", nargs="*")
    cfg, args = cli(parser, argv, ("kafka", "topics", "cassandra", "flink", "paths"))
    rargs = argparse.ArgumentParser()
    rargs.add_argument("--dataset", default="taobao-head")
    rargs.add_argument("--limit", type=int, default=None)
    rargs.add_argument("--rate", type=float, default=None)
    r = rargs.parse_args(args.replay_args)

    events = replay.load(cfg, r.dataset, r.limit)
    start = end_offsets(cfg, cfg.topic_predictions)
    t0 = time.perf_counter()
    stats = replay.publish(cfg, events, rate=r.rate, total=len(events))
    print(f"replayed {len(events)} {r.dataset} events in {stats['seconds']:.1f} s "
          f"({stats['events_per_s']:.0f} events/s into Kafka)")
    print("waiting for the job's predictions (read_committed: visible after each checkpoint) ...")
    msgs = collect(cfg, cfg.topic_predictions, len(events), timeout_s=args.timeout, start=start)
    elapsed = time.perf_counter() - t0
    codec = AvroCodec(schemas.PREDICTION)
    preds = [codec.decode(m.value()) for m in msgs]
    print(f"{len(preds)} predictions for {len(events)} events, {elapsed:.1f} s after the replay began "
          f"({len(preds) / elapsed:.0f} events/s end to end)")
    for p in preds[:5]:
        print("  " + json.dumps(p, default=json_default))
    if args.job_id:
        print(state_size_line(cfg, args.job_id, len({e.user_id for e in events})))
    if preds:
        user = collections.Counter(p["user_id"] for p in preds).most_common(1)[0][0]
        store = CassandraStore(cfg)
        try:
            profile = store.profile(user) or {}
            n_features = len(profile.pop("features", None) or [])
            print(f"profile of user {user} in Cassandra (plus its {n_features} latest feature values):")
            print(json.dumps(profile, indent=2, default=str))
            rec = store.recommendations(user)
            if rec:  # written at the checkpoint after the user's latest event
                print(f"recommendations for user {user} (as of {rec['as_of']}): "
                      + ", ".join(f"{i} ({s:.2f})" for i, s in zip(rec["items"], rec["scores"], strict=True)))
        finally:
            store.close()
    return 0 if len(preds) >= len(events) else 1


if __name__ == "__main__":
    raise SystemExit(main())
