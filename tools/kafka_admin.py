"""Broker facts the Python client cannot read (finalized feature levels, transaction states), through
tools/KafkaAdminProbe.java run on the local broker's jars; and the feature levels the stack pins.

    python -m tools.kafka_admin features            finalized features of the configured broker
    python -m tools.kafka_admin transactions PREFIX transactional ids of PREFIX with producer id/epoch
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flink_jobs.config import ROOT, Config, cli

PROBE = ROOT / "tools" / "KafkaAdminProbe.java"
PINNED_FEATURES = ROOT / "deploy" / "conf" / "kafka" / "features.properties"
MAX_PRODUCER_EPOCH = 32767  # a short: Kafka rotates the producer id when a bump would pass it


@dataclass(frozen=True)
class Transaction:
    transactional_id: str
    producer_id: int
    producer_epoch: int
    state: str


def pinned_features(path: Path = PINNED_FEATURES) -> dict[str, int]:
    """NAME -> LEVEL of deploy/conf/kafka/features.properties, as deploy/kafka.sh formats with them."""
    out: dict[str, int] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, level = line.split("=", 1)
            out[name.strip()] = int(level)
    return out


def _probe(cfg: Config, *args: str, timeout_s: float = 120.0) -> list[str]:
    if cfg.kafka_security_protocol != "PLAINTEXT":
        raise ValueError("the admin probe reads a PLAINTEXT broker only (the local test stack)")
    lib = cfg.run_path / "lib" / "kafka"
    if not lib.is_dir():
        raise FileNotFoundError(f"{lib} is missing: `bash deploy/kafka.sh fetch` first")
    java = shutil.which("java") or "java"
    proc = subprocess.run([java, "-cp", f"{lib}/*", str(PROBE), args[0], cfg.kafka_bootstrap, *args[1:]],
                          capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"KafkaAdminProbe {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return [ln for ln in proc.stdout.splitlines() if ln.strip()]


def finalized_features(cfg: Config) -> dict[str, int]:
    """NAME -> finalized (max) level of every feature the running cluster reports."""
    return {name: int(level) for name, level in (ln.split("=", 1) for ln in _probe(cfg, "features"))}


def transactions(cfg: Config, prefix: str) -> list[Transaction]:
    """Every transactional id the coordinators know that starts with ``prefix``."""
    out = []
    for ln in _probe(cfg, "transactions", prefix):
        tid, pid, epoch, state = ln.rsplit(" ", 3)
        out.append(Transaction(tid, int(pid), int(epoch), state))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["features", "transactions"])
    ap.add_argument("prefix", nargs="?", default="")
    cfg, args = cli(ap, argv, ("kafka", "paths"))
    if args.what == "features":
        for name, level in sorted(finalized_features(cfg).items()):
            pin = pinned_features().get(name)
            print(f"{name}={level}" + (f" (pinned {pin})" if pin is not None else ""))
    else:
        for t in transactions(cfg, args.prefix):
            print(t.transactional_id, t.producer_id, t.producer_epoch, t.state)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
