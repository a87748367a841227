"""Drill: apache/flink-connector-kafka#321, the producer-epoch rollover of one transactional id under
transaction.version 2, on the stack's broker, with the connector's own producer class (~6 min here).

    python -m drills.kafka_epoch_rollover [--target-epoch 32766]

A pooled transactional id (the connector's POOLING strategy) commits once per checkpoint, so its epoch
counts checkpoints; drills/KafkaEpochRollover.java compresses that into a loop of commits, then
re-commits the last checkpointed transaction the way KafkaCommitter does on recovery, once at the
rollover and once at epoch 3 (control). The job itself uses INCREMENTING ids, whose epochs stay at a
few (tests/integration/test_kafka_transactions.py); README "Exactly-once with Kafka 4.x" has the results.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from flink_jobs.config import ROOT, cli

PROGRAM = Path(__file__).with_name("KafkaEpochRollover.java")
MAX_EPOCH = 32767


def classpath(run_path: Path) -> str:
    """The connector jar and its kafka-clients as `make jars` put them for the job, plus flink-dist."""
    import pyflink  # noqa: PLC0415 - only for the path of its lib/

    lib = run_path / "lib" / "flink"
    jars = sorted(lib.glob("flink-connector-kafka-*.jar")) + sorted(lib.glob("kafka-clients-*.jar"))
    if len(jars) < 2:
        raise SystemExit(f"no connector jars in {lib}: run `make jars` first")
    return ":".join([*map(str, jars), f"{Path(pyflink.__file__).parent / 'lib'}/*"])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target-epoch", type=int, default=MAX_EPOCH - 1,
                    help="epoch at which the checkpointed transaction is taken (32766: its commit rolls over)")
    cfg, args = cli(ap, argv, ("kafka", "paths"))
    if cfg.kafka_security_protocol != "PLAINTEXT":
        raise SystemExit("the drill runs against a PLAINTEXT broker (the local stack)")
    tag = uuid.uuid4().hex[:8]
    cmd = [shutil.which("java") or "java", "-cp", classpath(cfg.run_path), str(PROGRAM), cfg.kafka_bootstrap,
           f"drill-rollover-{tag}", f"drill-{tag}", str(args.target_epoch)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    results = [ln for ln in proc.stdout.splitlines() if ln.startswith(("RESULT", "  "))]
    print("\n".join(results))
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
