"""Replay events into the user-events topic as Avro (key = user_id): a bundled dataset or your own file.

    python -m tools.replay --dataset taobao-head [--limit N] [--rate EVENTS_PER_S] [config flags]
    python -m tools.replay --file events.jsonl [--dry-run]
    python -m tools.replay --file export.csv --map user_id=customer,event_time=ts --set shop_id=acme

Datasets: taobao-head (9-day histories of 815 users, replayed in event-time order), taobao-slice
(2 hours of 66k users, already time-sorted), online-retail (UCI purchases with price and quantity).

Files (also .gz) are published in file order: JSON Lines with one object per line in the shape of
schemas/user_event.avsc (event_time in epoch ms), or CSV with a header, a column per field unless
--map names another column, --set a constant; event_time in epoch ms (--time-unit s: seconds) or
ISO-8601. Every record is checked against user_event.avsc first (types, bounds, event types: the
job's own rules); a bad line is reported on stderr with its line number and skipped. A summary line
ends the run; the exit status is 1 when any line was skipped, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from flink_jobs.config import Config, cli
from tools import event_file
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


class FileReport:
    """Counts of one file's replay; bad lines are printed as they are met."""

    def __init__(self, path: Path, out: object = None) -> None:
        self.path = path
        self.out = out if out is not None else sys.stderr
        self.good = 0
        self.bad = 0

    def events(self, items: Iterable[event_file.Item]) -> Iterator[Event]:
        for lineno, item in items:
            if isinstance(item, str):
                self.bad += 1
                print(f"{self.path}:{lineno}: skipped: {item}", file=self.out)
            else:
                self.good += 1
                yield item


def file_items(args: argparse.Namespace) -> Iterator[event_file.Item]:
    path = Path(args.file)
    rules = event_file.Rules.from_schema()
    fmt = args.format or event_file.detect_format(path)
    if fmt == "jsonl":
        if args.map or args.set:
            raise event_file.FileError("--map and --set are for CSV; a JSON Lines record names its fields")
        return event_file.read_jsonl(path, rules)
    return event_file.read_csv(
        path, rules, columns=event_file.parse_mapping(args.map, rules, "--map"),
        constants=event_file.parse_mapping(args.set, rules, "--set"), time_unit=args.time_unit,
        delimiter=args.delimiter,
    )


def replay_file(cfg: Config, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise event_file.FileError(f"no file {path}")
    items = file_items(args)
    report = FileReport(path)
    t0 = time.perf_counter()
    if args.dry_run:
        for _ in report.events(items):
            pass
        action = "checked (dry run, nothing published)"
    else:
        publish(cfg, report.events(items), rate=args.rate, progress=not args.no_progress)
        action = f"replayed to {cfg.topic_events}"
    print(
        f"{path}: {report.good + report.bad} records, {report.good} {action}, {report.bad} bad lines skipped "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 1 if report.bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.replay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", choices=DATASETS, default=None, help="a bundled dataset (default taobao-head)")
    source.add_argument("--file", metavar="PATH", default=None, help="your own events: JSON Lines or CSV (also .gz)")
    parser.add_argument("--limit", type=int, default=None, help="--dataset: replay only the first N events")
    parser.add_argument("--rate", type=float, default=None, help="events per second (default: unlimited)")
    parser.add_argument("--no-progress", action="store_true")
    files = parser.add_argument_group("--file options")
    files.add_argument("--format", choices=event_file.FORMATS, default=None,
                       help="default: from the file name (.jsonl/.ndjson/.json, .csv/.tsv)")
    files.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                       help="CSV: read FIELD from COLUMN (repeat or comma-separate)")
    files.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="CSV: FIELD is VALUE on every row, e.g. shop_id=acme")
    files.add_argument("--time-unit", choices=("ms", "s"), default="ms", help="CSV: unit of a numeric event_time")
    files.add_argument("--delimiter", default=",", help="CSV: field separator (default ',')")
    files.add_argument("--dry-run", action="store_true", help="check the file, publish nothing")
    # replay only talks to Kafka (and reads bundled data): the other settings are not its business
    cfg, args = cli(parser, argv, ("kafka", "topics", "paths"))
    if args.file:
        try:
            return replay_file(cfg, args)
        except event_file.FileError as exc:
            parser.error(str(exc))
    dataset = args.dataset or "taobao-head"
    events = load(cfg, dataset, args.limit)
    stats = publish(cfg, events, rate=args.rate, progress=not args.no_progress, total=len(events))
    print(
        f"replayed {stats['events']:.0f} {dataset} events to {cfg.topic_events} in "
        f"{stats['seconds']:.1f} s ({stats['events_per_s']:.0f} events/s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
