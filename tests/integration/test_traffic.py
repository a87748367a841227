"""The traffic production has, on the real stack: an idle job hit by a burst (fresh and restored), a
TaskManager killed while it drains the burst, a backfill of history into a job that has seen later
events, one partition empty for the whole test, and rescaling 1 -> 2 -> 4 -> 1 with savepoints while
events stream in.

Each compares, event by event, what the job applied (one read_committed prediction each), sent to the
late topic and sent to the DLQ as a duplicate with the offline replay of the same events in the same
order, and compares every Cassandra profile and prediction row. Which events are late must depend on
the events alone, never on timing: the idle timeout here is 2 s, so every burst takes longer to drain
than a partition may stay silent (the exposure of a global watermark with idleness).

Figures are printed; run with `-s` to see them."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from flink_jobs import submit
from flink_jobs.config import Config
from tools import replay
from udfs import schemas
from udfs.profile import Event, Outcome

from . import drills
from .conftest import isolated, job

IDLE_S = 30
BURST = 12_000  # time-sorted Taobao events: about 1.3 days of event time
WARM_UP = 2_000


@pytest.fixture(scope="module")
def history() -> list[Event]:
    return replay.load(Config.from_env(), "taobao-head")  # 84,475 events over 9 days, time-sorted


def traffic_cfg(**overrides: Any) -> contextlib.AbstractContextManager[Config]:
    # a short idle timeout: the burst drains far longer than a partition may be silent
    return isolated(idle_source_timeout_ms=2000, **overrides)


class Outputs:
    """Taps on the three outputs, read_committed, from the beginning."""

    def __init__(self, cfg: Config) -> None:
        self.preds = drills.Tap(cfg, cfg.topic_predictions)
        self.dlq = drills.Tap(cfg, cfg.topic_dlq)
        self.late = drills.Tap(cfg, cfg.topic_late)

    @property
    def routed(self) -> int:
        return self.preds.count + self.dlq.count + self.late.count

    def wait_all(self, n: int, timeout_s: float = 900, what: str = "") -> float:
        """Wait until ``n`` records came out in total; returns the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        while self.routed < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.routed} of {n} records out after {timeout_s:.0f} s {what}")
            time.sleep(0.25)
        return time.monotonic() - t0

    def close(self) -> tuple[list[dict], list[dict], list[dict]]:
        preds = drills.decode(self.preds.close(settle_s=6), schemas.PREDICTION)
        dead = drills.decode(self.dlq.close(), schemas.DEAD_LETTER)
        late = drills.decode(self.late.close(), schemas.EVENT)
        return preds, dead, late


def check(cfg: Config, published: list[Event], out: Outputs, name: str) -> drills.Expected:
    preds, dead, late = out.close()
    expected = drills.offline(cfg, published)
    print(f"\n[{name}] {len(published)} events in: {len(preds)} predictions, {len(late)} late, "
          f"{sum(d['reason'] == 'duplicate_event' for d in dead)} duplicates; replay says "
          f"{expected.outcomes[Outcome.APPLIED]} / {expected.outcomes[Outcome.LATE]} / "
          f"{expected.outcomes[Outcome.DUPLICATE]}")
    drills.assert_routed_like_replay(expected, dead, late)
    drills.assert_exact(cfg, expected, preds)
    return expected


def idle_then_burst(cfg: Config, history: list[Event], before_idle: Callable[[str], None] = lambda _: None,
                    during_drain: Callable[[str, Outputs], None] = lambda *_: None) -> tuple[Outputs, float]:
    """Warm up, (disrupt), stay idle IDLE_S, then publish BURST events at once; waits until every
    record came out. Returns the outputs and the drain time of the burst."""
    warm, burst = history[:WARM_UP], history[WARM_UP:WARM_UP + BURST]
    out = Outputs(cfg)
    with job(cfg) as job_id:
        replay.publish(cfg, warm, progress=False)
        out.wait_all(len(warm), what="after the warm-up")
        before_idle(job_id)
        time.sleep(IDLE_S)
        t0 = time.monotonic()
        replay.publish(cfg, burst, progress=False)
        during_drain(job_id, out)
        out.wait_all(len(warm) + len(burst), what="after the burst")
        drain_s = time.monotonic() - t0
        assert submit.job_state(cfg, job_id) == "RUNNING"
    return out, drain_s


def ensure_slots(cfg: Config, n: int) -> None:
    """Start TaskManagers until the cluster has ``n`` slots, as a cluster scaled out would have them."""
    for _ in range(4):
        if submit.rest(cfg, "/overview")["slots-total"] >= n:
            return
        drills.deploy("flink.sh", "start-tm")
    raise AssertionError(f"fewer than {n} task slots after starting TaskManagers")


def test_a_burst_into_an_idle_fresh_job_is_routed_like_the_replay(history):
    with traffic_cfg() as cfg:
        out, drain_s = idle_then_burst(cfg, history)
        print(f"\n[burst, fresh job] drained {BURST} events in {drain_s:.1f} s (idle timeout 2 s)")
        assert drain_s > cfg.idle_source_timeout_ms / 1000
        check(cfg, history[:WARM_UP + BURST], out, "burst, fresh job")


def test_a_burst_into_an_idle_job_restored_from_a_checkpoint_is_routed_like_the_replay(history):
    with traffic_cfg() as cfg:
        out, drain_s = idle_then_burst(cfg, history,
                                       before_idle=lambda job_id: drills.kill_and_replace_taskmanager(cfg, job_id))
        print(f"\n[burst, restored job] drained {BURST} events in {drain_s:.1f} s")
        check(cfg, history[:WARM_UP + BURST], out, "burst, restored job")


def test_a_taskmanager_killed_while_draining_a_burst_loses_and_doubles_nothing(history):
    def kill_mid_drain(job_id: str, out: Outputs) -> None:
        out.preds.wait(WARM_UP + BURST // 3, timeout_s=600, what="before the kill")
        drills.kill_and_replace_taskmanager(cfg, job_id)

    with traffic_cfg() as cfg:
        out, drain_s = idle_then_burst(cfg, history, during_drain=kill_mid_drain)
        print(f"\n[burst + TaskManager kill] drained in {drain_s:.1f} s including the recovery")
        check(cfg, history[:WARM_UP + BURST], out, "burst + kill")


def test_a_backfill_of_history_is_accounted_exactly_like_the_replay(history):
    """The job first sees the last two days, then the seven days before them (a late-joining shop
    replaying its history): per user, what is older than the user's clock minus the allowed lateness
    is late, the rest (users first seen in the backfill) is applied."""
    cut = next(i for i, e in enumerate(history) if e.event_time >= history[-1].event_time - 2 * 86_400_000)
    recent, backfill = history[cut:cut + 6_000], history[:8_000]
    with traffic_cfg() as cfg:
        out = Outputs(cfg)
        with job(cfg):
            replay.publish(cfg, recent, progress=False)
            out.wait_all(len(recent), what="after the recent days")
            replay.publish(cfg, backfill, progress=False)
            out.wait_all(len(recent) + len(backfill), what="after the backfill")
        expected = check(cfg, recent + backfill, out, "backfill")
        assert expected.outcomes[Outcome.LATE] > 1000 and expected.outcomes[Outcome.APPLIED] > len(recent)


def test_one_partition_empty_for_the_whole_test(history):
    events = history[:8_000]
    with traffic_cfg() as cfg:
        assert cfg.topic_partitions >= 2
        out = Outputs(cfg)
        with job(cfg):
            replay.publish(cfg, events[:4_000], progress=False, partition=0)
            time.sleep(5)  # partition 1 stays silent throughout, also while the job is idle
            replay.publish(cfg, events[4_000:], progress=False, partition=0)
            out.wait_all(len(events), what="with partition 1 empty")
        ends = drills.end_offsets(cfg, cfg.topic_events)
        assert ends[1] == 0 and ends[0] == len(events), ends
        check(cfg, events, out, "one empty partition")


def test_rescale_1_2_4_1_with_savepoints_while_events_stream_in(history):
    """Savepoint, restart at the next parallelism, and so on, while a producer keeps publishing at a
    fixed rate; the state (one keyed entry per user) follows its key groups to the new subtasks."""
    events = history[:24_000]
    steps = [1, 2, 4, 1]
    with traffic_cfg() as cfg:
        ensure_slots(cfg, max(steps))
        out = Outputs(cfg)
        done = threading.Event()
        errors: list[BaseException] = []
        sent = [0]

        def produce() -> None:  # ~160 s of traffic: every rescale happens while events arrive
            try:
                for i in range(0, len(events), 1000):
                    replay.publish(cfg, events[i:i + 1000], rate=150, progress=False)
                    sent[0] = i + 1000
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            finally:
                done.set()

        producer = threading.Thread(target=produce, daemon=True)
        timeline: list[tuple[int, int, int, float]] = []
        cfg_p = dataclasses.replace(cfg, parallelism=steps[0])
        job_id = submit.submit(cfg_p)
        producer.start()
        try:
            for nxt in steps[1:]:
                time.sleep(8)
                ensure_slots(cfg, nxt)
                t0 = time.monotonic()
                savepoint = submit.stop_with_savepoint(cfg, job_id)
                cfg_p = dataclasses.replace(cfg, parallelism=nxt)
                job_id = submit.submit(cfg_p, savepoint=savepoint)
                timeline.append((nxt, sent[0], out.preds.count, time.monotonic() - t0))
                subtasks = {v["name"]: v["parallelism"] for v in submit.rest(cfg, f"/jobs/{job_id}")["vertices"]}
                assert any("profile" in name and p == nxt for name, p in subtasks.items()), subtasks
            done.wait(300)
            assert not errors, errors
            out.wait_all(len(events), what="after the last rescale")
        finally:
            submit.cancel(cfg, job_id)
        for p, n_sent, n_pred, secs in timeline:
            print(f"\n[rescale] -> parallelism {p} with {n_sent} events published, {n_pred} predicted: "
                  f"savepoint + restart {secs:.1f} s")
        check(cfg, events, out, "rescale 1-2-4-1")
        assert [p for p, *_ in timeline] == steps[1:]
        # the stream was still flowing: the first rescales happened mid-stream
        assert timeline[0][1] < len(events) and timeline[1][1] < len(events), timeline
