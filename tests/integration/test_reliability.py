"""Failure drills against the real stack (issue 6): a killed TaskManager, a Kafka broker restart,
Cassandra away for 60 s, stop with a savepoint and a new job version, incompatible restores, and the
same events published twice. After each, every prediction (read_committed), every Cassandra profile
and prediction row equals the offline replay of what was published: nothing lost, nothing doubled.

Figures (recovery times, counts) are printed; run with `-s` to see them."""

from __future__ import annotations

import collections
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

N_CRASH = 50_000  # the issue asks for at least 50,000 real events through a TaskManager crash
N_DRILL = 15_000


@pytest.fixture(scope="module")
def taobao() -> list[Event]:
    return replay.load(Config.from_env(), "taobao-head", N_CRASH)


def drill(
    cfg: Config, events: list[Event], disrupt: Callable[[Config, str, drills.Tap], dict[str, Any]],
    at: float = 0.3,
) -> dict[str, Any]:
    """Run the job over ``events``: publish 2/3 of them, call ``disrupt`` once ``at`` of all events
    were predicted, publish the rest, wait for every prediction. Returns what came out."""
    split = len(events) * 2 // 3
    with job(cfg) as job_id:
        tap = drills.Tap(cfg, cfg.topic_predictions)
        try:
            replay.publish(cfg, events[:split], progress=False)
            tap.wait(int(len(events) * at), timeout_s=600, what="before the disruption")
            info = disrupt(cfg, job_id, tap)
            replay.publish(cfg, events[split:], progress=False)
            tap.wait(len(events), timeout_s=900, what="after the disruption")
            t_done = time.monotonic()
        finally:
            preds = tap.close(settle_s=8)
        info.update(
            job_id=job_id,
            state=submit.job_state(cfg, job_id),
            history=drills.exception_history(cfg, job_id),
            restored=drills.restored_checkpoint(cfg, job_id),
            t_done=t_done,
            tap=tap,
        )
    dead, late = drills.side_topics(cfg)
    info.update(preds=drills.decode(preds, schemas.PREDICTION), dead=dead, late=late)
    return info


def check_end_state(cfg: Config, events: list[Event], out: dict[str, Any], name: str) -> None:
    expected = drills.offline(cfg, events)
    assert expected.outcomes == {Outcome.APPLIED: len(events)}  # real data: nothing late or doubled
    print(f"\n[{name}] events in {len(events)}, predictions out {len(out['preds'])}, DLQ {len(out['dead'])}, "
          f"late {len(out['late'])}, job restarts seen {len(out['history'])}, final state {out['state']}")
    assert out["dead"] == [] and out["late"] == []
    drills.assert_exact(cfg, expected, out["preds"])
    assert out["state"] == "RUNNING"


# --- 1. TaskManager killed -------------------------------------------------------------------------


def test_taskmanager_kill_recovers_exactly(taobao):
    def kill_tm(cfg: Config, job_id: str, tap: drills.Tap) -> dict[str, Any]:
        seen = tap.count
        t_kill = time.monotonic()
        drills.deploy("flink.sh", "kill-tm")
        # standalone clusters never replace a TaskManager: start one, as an orchestrator would
        tm_start_s = drills.deploy("flink.sh", "start-tm")
        t_running, _ = drills.wait_recovered(cfg, job_id, t_kill)
        return dict(t_kill=t_kill, t_running=t_running, tm_start_s=tm_start_s, at_kill=seen)

    with isolated(emit_features=True) as cfg:
        out = drill(cfg, taobao, kill_tm)
        restore_s = out["t_running"] - out["t_kill"]
        first = out["tap"].first_after(out["t_running"]) - out["t_kill"]
        print(f"\n[crash] killed at {out['at_kill']} predictions; tasks running again after {restore_s:.1f} s "
              f"(new TaskManager registered after {out['tm_start_s']:.1f} s); restored checkpoint "
              f"{(out['restored'] or {}).get('id')}; first new committed prediction {first:.1f} s after the kill")
        assert out["restored"] is not None, "the job did not restore from a checkpoint"
        assert out["history"], "no failure was recorded: the TaskManager kill did not hit the job"
        check_end_state(cfg, taobao, out, "crash")


# --- 2. Kafka broker restarted ---------------------------------------------------------------------


def test_kafka_broker_restart_recovers_exactly(taobao):
    events = taobao[:N_DRILL]

    def restart_kafka(cfg: Config, job_id: str, tap: drills.Tap) -> dict[str, Any]:
        t0 = time.monotonic()
        stop_s = drills.deploy("kafka.sh", "stop")
        start_s = drills.deploy("kafka.sh", "start")
        at = tap.count
        return dict(t0=t0, outage_s=stop_s + start_s, at_back=at)

    with isolated() as cfg:
        out = drill(cfg, events, restart_kafka)
        resumed = out["tap"].first_after(out["t0"] + out["outage_s"])
        print(f"\n[kafka] broker away {out['outage_s']:.1f} s (stop + start); first committed prediction "
              f"{resumed - out['t0']:.1f} s after the stop began; job failovers {len(out['history'])}")
        check_end_state(cfg, events, out, "kafka")


# --- 3. Cassandra away for 60 s --------------------------------------------------------------------


def test_cassandra_outage_backs_off_and_recovers_exactly(taobao):
    events = taobao[:N_DRILL]
    outage_s = 60

    def cassandra_away(cfg: Config, job_id: str, tap: drills.Tap) -> dict[str, Any]:
        warnings_before = drills.tm_log_lines(cfg, "cassandra write failed")
        t0 = time.monotonic()
        drills.deploy("cassandra.sh", "stop")
        retries, states = 0.0, collections.Counter()
        while time.monotonic() - t0 < outage_s:
            # the counter lives as long as the task: sample it while the writer retries
            retries = max(retries, drills.metric(cfg, job_id, "cassandra", "cassandra_retries") or 0.0)
            states[submit.job_state(cfg, job_id)] += 1
            time.sleep(1)
        start_s = drills.deploy("cassandra.sh", "start")
        return dict(t0=t0, down_s=time.monotonic() - t0, start_s=start_s, retries=retries, states=states,
                    retry_log_lines=drills.tm_log_lines(cfg, "cassandra write failed") - warnings_before)

    with isolated() as cfg:
        out = drill(cfg, events, cassandra_away)
        resumed = out["tap"].first_after(out["t0"] + out["down_s"])
        print(f"\n[cassandra] down {out['down_s']:.0f} s (+{out['start_s']:.0f} s start); retries seen in metrics "
              f"{out['retries']:.0f}, retry warnings in TaskManager log {out['retry_log_lines']}; job states "
              f"sampled {dict(out['states'])}; failovers {len(out['history'])}; first committed prediction "
              f"{resumed - out['t0'] - out['down_s']:.1f} s after Cassandra was back")
        assert out["retries"] >= 1 and out["retry_log_lines"] >= 1, "the writer did not retry visibly"
        check_end_state(cfg, events, out, "cassandra")
