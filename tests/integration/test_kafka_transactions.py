"""Kafka 4 transactions (issue 11): the broker runs the pinned `transaction.version`, and the
exactly-once predictions sink never piles transactions onto one transactional id, so the producer
epoch cannot approach its rollover (apache/flink-connector-kafka#321, which needs ~32k commits on ONE
id under transaction.version 2).

The drill: many short checkpoints (250 ms), a TaskManager killed mid-stream, recovery; then every
prediction read_committed equals the offline replay (exactly-once), and the transaction coordinator's
own view of the sink's transactional ids shows one id per checkpoint with a tiny epoch each. Were the
sink switched to a pooled naming strategy, ids would be reused and their epochs would count the
checkpoints: the epoch bound below fails then. Figures are printed; run with `-s` to see them."""

from __future__ import annotations

import collections
import time
from typing import Any

import pytest

from flink_jobs import submit
from flink_jobs.config import Config
from tools import kafka_admin, replay
from udfs.profile import Event

from . import drills
from .conftest import isolated
from .test_reliability import check_end_state, drill

N_EVENTS = 8_000
CHECKPOINT_MS = 250
# initTransactions on a fresh id, its commit (TV2 bumps the epoch), a re-commit of a restored one, and
# one more per recovery that probes the id after its restored checkpoint (a loaded machine saw 6
# failovers from one checkpoint): a few per failover, never a count of checkpoints
EPOCH_PER_ID = 3
MIN_CHECKPOINTS = 20


def test_broker_runs_the_pinned_transaction_version() -> None:
    cfg = Config.from_env()
    pinned = kafka_admin.pinned_features()
    assert "transaction.version" in pinned, "deploy/conf/kafka/features.properties must pin transaction.version"
    live = kafka_admin.finalized_features(cfg)
    print(f"\n[features] pinned {pinned}, broker finalized {live}")
    for name, level in pinned.items():
        assert live.get(name) == level, f"broker finalized {name}={live.get(name)}, pinned {level}"


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return replay.load(Config.from_env(), "taobao-head", N_EVENTS)


def _checkpoint_counts(cfg: Config, job_id: str) -> dict[str, Any]:
    return submit.rest(cfg, f"/jobs/{job_id}/checkpoints")["counts"]


def test_short_checkpoints_rotate_transactional_ids_and_recover_exactly(events: list[Event]) -> None:
    def kill_tm(cfg: Config, job_id: str, tap: drills.Tap) -> dict[str, Any]:
        before = _checkpoint_counts(cfg, job_id)["completed"]
        t_kill = time.monotonic()
        drills.deploy("flink.sh", "kill-tm")
        drills.deploy("flink.sh", "start-tm")
        t_running, _ = drills.wait_recovered(cfg, job_id, t_kill)
        return dict(checkpoints_before_kill=before, restore_s=t_running - t_kill)

    with isolated(checkpoint_interval_ms=CHECKPOINT_MS) as cfg:
        out = drill(cfg, events, kill_tm)
        counts = _checkpoint_counts(cfg, out["job_id"])
        prefix = f"{cfg.consumer_group}-{cfg.topic_predictions}"  # flink_jobs/connectors.py avro_kafka_sink
        txns = kafka_admin.transactions(cfg, prefix + "-")
        check_end_state(cfg, events, out, "kafka-txn")

    epochs = collections.Counter(t.producer_epoch for t in txns)
    worst = max(txns, key=lambda t: t.producer_epoch)
    print(f"\n[kafka-txn] {counts['completed']} checkpoints completed ({out['checkpoints_before_kill']} before the "
          f"TaskManager kill, restored {(out['restored'] or {}).get('id')}, tasks running again after "
          f"{out['restore_s']:.1f} s); {len(txns)} transactional ids under {prefix}-*; producer epochs "
          f"{dict(sorted(epochs.items()))}; highest {worst.producer_epoch} ({worst.transactional_id}) of "
          f"{kafka_admin.MAX_PRODUCER_EPOCH}")
    assert out["restored"] is not None and out["history"], "the TaskManager kill did not make the job recover"
    # a reused pool holds one or two ids per subtask: 20 commits would put their epochs far past the bound
    assert counts["completed"] >= MIN_CHECKPOINTS, "too few checkpoints to tell one id per checkpoint from a pool"
    # one transactional id per checkpoint (and subtask): never a few ids reused for every checkpoint
    assert len(txns) >= counts["completed"]
    assert worst.producer_epoch <= EPOCH_PER_ID + len(out["history"])
