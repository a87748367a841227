"""Replay a bundled dataset into the user-events topic as Avro (key = user_id).

    python -m tools.replay --dataset taobao-head [--limit N] [--rate EVENTS_PER_S] [config flags]

Datasets: taobao-head (9-day histories of 815 users, replayed in event-time order), taobao-slice
(2 hours of 66k users, already time-sorted), online-retail (UCI purchases with price and quantity).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from flink_jobs.config import Config
from tools.datasets import TAOBAO_HEAD, TAOBAO_SLICE, read_online_retail, read_taobao
from tools.kafka_io import AvroCodec, producer
from udfs import schemas
from udfs.profile import Event

DATASETS = ("taobao-head", "taobao-slice", "online-retail")


def load(cfg: Config, dataset: str, limit: Optional[int] = None) -> list[Event]:
    if dataset == "taobao-head":
        return read_taobao(cfg.taobao_dir / TAOBAO_HEAD, limit=limit, sort_by_time=True)
    if dataset == "taobao-slice":
        return read_taobao(cfg.taobao_dir / TAOBAO_SLICE, limit=limit)
    if dataset == "online-retail":
        path = cfg.path(cfg.data_dir) / "online_retail_uci" / "online_retail.csv.gz"
        events = read_online_retail(Path(path))
        events.sort(key=lambda e: e.event_time)
        return events[:limit] if limit else events
    raise ValueError(f"unknown dataset {dataset!r}; choose from {DATASETS}")


def publish(
    cfg: Config,
    events: Iterable[Event],
    rate: Optional[float] = None,
    progress: bool = True,
    total: Optional[int] = None,
    raw: Iterable[tuple[Optional[bytes], bytes]] = (),
    partition: Optional[int] = None,
) -> dict[str, float]:
    """Produce events (and optional raw (key, value) records, e.g. deliberately broken ones) to the
    events topic; waits until the broker acknowledged all. Returns counts and the achieved rate.
    ``partition``: every record to this partition instead of the key's (tests of empty partitions)."""
    where = {} if partition is None else {"partition": partition}
    codec = AvroCodec(schemas.EVENT)
    p = producer(cfg)
    errors: list[str] = []

    def on_delivery(err, _msg) -> None:  # noqa: ANN001 - confluent-kafka callback
        if err is not None:
            errors.append(str(err))

    start = time.perf_counter()
    sent = 0
    bar = tqdm(total=total, unit="ev", disable=not progress, desc="replay", mininterval=1.0)
    for ev in events:
        value = codec.encode(ev._asdict())
        while True:
            try:
                p.produce(cfg.topic_events, key=ev.user_id.encode(), value=value, on_delivery=on_delivery, **where)
                break
            except BufferError:  # local queue full: let the client drain it
                p.poll(0.05)
        sent += 1
        bar.update(1)
        if sent % 1000 == 0:
            p.poll(0)
        if rate:
            ahead = sent / rate - (time.perf_counter() - start)
            if ahead > 0:
                time.sleep(ahead)
    n_raw = 0
    for key, value in raw:
        p.produce(cfg.topic_events, key=key, value=value, on_delivery=on_delivery)
        n_raw += 1
    remaining = p.flush(60)
    bar.close()
    elapsed = time.perf_counter() - start
    if remaining or errors:
        raise RuntimeError(f"{remaining} records not delivered; errors: {errors[:5]}")
    return {"events": sent, "raw": n_raw, "seconds": elapsed, "events_per_s": sent / elapsed if elapsed else 0.0}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, default="taobao-head")
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N events")
    parser.add_argument("--rate", type=float, default=None, help="events per second (default: unlimited)")
    parser.add_argument("--no-progress", action="store_true")
    Config.add_arguments(parser)
    args = parser.parse_args(argv)
    cfg = Config.from_args(args)
    events = load(cfg, args.dataset, args.limit)
    stats = publish(cfg, events, rate=args.rate, progress=not args.no_progress, total=len(events))
    print(
        f"replayed {stats['events']:.0f} {args.dataset} events to {cfg.topic_events} in "
        f"{stats['seconds']:.1f} s ({stats['events_per_s']:.0f} events/s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
