"""Erase one user everywhere (privacy request): Cassandra rows now, and the job's keyed state through
an 'erase' control event on the user's partition of the events topic, which the job handles in order
after that user's earlier events.

    python -m tools.erase_user USER_ID [--at EPOCH_MS] [config flags]

``--at`` (default: now) is the erasure's event time: Cassandra tombstones are written at that time,
so rows of events up to it are deleted and events after it build a fresh profile. Kafka topics are
logs: the user's raw events and predictions stay in them until their retention removes them.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any, Optional

from flink_jobs.cassandra_store import CassandraStore
from flink_jobs.config import Config, cli
from tools import replay
from udfs.profile import ERASE, Event


def erase_event(user_id: str, at_ms: int) -> Event:
    """The control event; item and category are placeholders (the schema requires non-blank ids)."""
    return Event(event_id=f"erase-{uuid.uuid4().hex}", user_id=user_id, event_type=ERASE, item_id="-",
                 category_id="-", price=None, quantity=None, event_time=at_ms, session_id=None, shop_id="-")


def erase(cfg: Config, user_id: str, at_ms: Optional[int] = None) -> dict[str, Any]:
    at_ms = int(time.time() * 1000) if at_ms is None else at_ms
    store = CassandraStore(cfg)
    try:
        store.erase(user_id, at_ms * 1000)  # also when the job is down; the job repeats it
    finally:
        store.close()
    ev = erase_event(user_id, at_ms)
    replay.publish(cfg, [ev], progress=False)
    return {"user_id": user_id, "at_ms": at_ms, "control_event_id": ev.event_id, "topic": cfg.topic_events}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("user_id")
    parser.add_argument("--at", type=int, default=None, help="erasure time, epoch ms (default now)")
    cfg, args = cli(parser, argv, ("kafka", "topics", "cassandra"))
    print(json.dumps(erase(cfg, args.user_id, args.at)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
