"""Show one user's latest recommendations (ranked items with scores) from Cassandra.

    python -m tools.recommend USER_ID [--json] [config flags]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from flink_jobs.cassandra_store import CassandraStore
from flink_jobs.config import cli


def render(row: dict[str, Any]) -> str:
    """The row as a ranked table (what a support person reads)."""
    when = datetime.fromtimestamp(row["as_of"] / 1000, UTC).isoformat(timespec="seconds")
    lines = [f"user {row['user_id']}: {len(row['items'] or [])} items as of {when} ({row['model_version']})",
             f"{'rank':>4}  {'item':<20} score"]
    for rank, (item, score) in enumerate(zip(row["items"] or [], row["scores"] or [], strict=True), start=1):
        lines.append(f"{rank:>4}  {item:<20} {score:.4f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("user_id")
    parser.add_argument("--json", action="store_true", help="print the row as JSON")
    cfg, args = cli(parser, argv, ("cassandra",))
    store = CassandraStore(cfg)
    try:
        row = store.recommendations(args.user_id)
        if row is None:
            print(f"no recommendations for user {args.user_id}")
            return 1
        print(json.dumps(row, indent=2, default=str) if args.json else render(row))
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
