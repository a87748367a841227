"""Show one user's profile and latest predictions from Cassandra.

    python -m tools.show_profile USER_ID [--predictions N] [config flags]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from flink_jobs.cassandra_store import CassandraStore
from flink_jobs.config import cli


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("user_id")
    parser.add_argument("--predictions", type=int, default=5, help="how many latest predictions to show")
    cfg, args = cli(parser, argv, ("cassandra",))
    store = CassandraStore(cfg)
    try:
        profile = store.profile(args.user_id)
        if profile is None:
            print(f"no profile for user {args.user_id}")
            return 1
        print(json.dumps({"profile": profile, "predictions": store.predictions(args.user_id, args.predictions)},
                         indent=2, default=str))
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
