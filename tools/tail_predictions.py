"""Print predictions (or dead letters) from Kafka as JSON lines, decoded from Avro.

    python -m tools.tail_predictions [--max N] [--follow] [--dlq] [config flags]

Reads with isolation.level=read_committed, so only predictions of committed Flink checkpoints
(exactly-once mode) are shown.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from flink_jobs.config import cli
from tools.kafka_io import AvroCodec, json_default, read_topic
from udfs import schemas


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=int, default=None, help="stop after N records")
    parser.add_argument("--follow", action="store_true", help="keep waiting for new records")
    parser.add_argument("--idle", type=float, default=5.0, help="stop after this many idle seconds")
    parser.add_argument("--dlq", action="store_true", help="read the dead-letter topic instead")
    cfg, args = cli(parser, argv, ("kafka", "topics"))
    topic, avsc = (cfg.topic_dlq, schemas.DEAD_LETTER) if args.dlq else (cfg.topic_predictions, schemas.PREDICTION)
    codec = AvroCodec(avsc)
    idle = 1e9 if args.follow else args.idle
    n = 0
    for msg in read_topic(cfg, topic, idle_timeout_s=idle, max_records=args.max):
        print(json.dumps(codec.decode(msg.value()), default=json_default), flush=True)
        n += 1
    if not n:
        print(f"no records in {topic}", file=sys.stderr)
    return 0 if n else 1


if __name__ == "__main__":
    raise SystemExit(main())
