"""Models that change while the job runs (issue 14), on the real stack: a new model published
mid-stream, invalid models rejected, a shadow model scored next to the active one, and the swapped
model surviving a TaskManager crash and a rescale (the model file on disk stays the old one).

Every prediction is read read_committed and compared with the offline replay through the job's own
engine, scored by the model version the prediction names. Figures are printed (`-s`)."""

from __future__ import annotations

import collections
import dataclasses
import functools
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import pytest

from flink_jobs import submit
from flink_jobs.config import Config
from tests.unit.test_model_registry import propensity
from tools import publish_model, replay
from udfs import model_registry as mr
from udfs import schemas
from udfs.engine import replay_batches
from udfs.features import FEATURE_NAMES
from udfs.prediction import PREDICTION_FIELDS, SHADOW_FIELDS, score_batch, score_only
from udfs.profile import Event
from udfs.scorer import OnnxScorer
from udfs.segmenter import OnnxSegmenter

from . import drills
from .conftest import isolated, job
from .keygroups import subtask_of

pytestmark = pytest.mark.integration

N = 9_000
EVENT_ID = PREDICTION_FIELDS.index("event_id")
SCORE = PREDICTION_FIELDS.index("score")


@pytest.fixture(scope="module")
def taobao() -> list[Event]:
    return replay.load(Config.from_env(), "taobao-head", N)


def package(seed: int, role: str = "active", names: Sequence[str] = tuple(FEATURE_NAMES)) -> mr.ModelPackage:
    """A valid test model (version propensity-test-<seed>) without segments: the job keeps its own."""
    return mr.package_from_onnx(propensity(seed, tuple(names)), None, role, publish_model.now_ms(),
                                "tests/integration/test_model_swap.py")


def scorer_of(pkg: mr.ModelPackage, directory: Path) -> OnnxScorer:
    path, _ = pkg.write_files(directory)
    return OnnxScorer(str(path), provider="cpu")


def offline_scores(cfg: Config, events: Sequence[Event], scorer: OnnxScorer) -> dict[str, float]:
    """event_id -> score of the offline replay when ``scorer`` is the active model."""
    segmenter = OnnxSegmenter(str(cfg.segments_file), provider="cpu")
    _, preds, _, _ = replay_batches(list(events), functools.partial(score_batch, scorer, segmenter),
                                    cfg.profile_settings())
    return {p[EVENT_ID]: p[SCORE] for p in preds}


def wait_metric(cfg: Config, job_id: str, name: str, at_least: float, timeout_s: float = 120) -> float:
    """The job metric once it reached ``at_least`` (REST metrics lag by up to ~10 s)."""
    deadline = time.monotonic() + timeout_s
    while (value := drills.metric(cfg, job_id, name) or 0.0) < at_least:
        assert time.monotonic() < deadline, f"metric {name} = {value} after {timeout_s} s, expected >= {at_least}"
        time.sleep(1)
    return value


def wait_checkpoints(cfg: Config, job_id: str, more: int, timeout_s: float = 120) -> None:
    """Until ``more`` checkpoints completed after now."""
    def completed() -> int:
        return submit.rest(cfg, f"/jobs/{job_id}/checkpoints")["counts"]["completed"]

    target = completed() + more
    deadline = time.monotonic() + timeout_s
    while completed() < target:
        assert time.monotonic() < deadline, f"fewer than {more} checkpoints completed in {timeout_s} s"
        time.sleep(0.5)


def check_versions(cfg: Config, events: Sequence[Event], preds: list[dict[str, Any]],
                   scores: dict[str, dict[str, float]]) -> drills.Expected:
    """Exactly one prediction per event, each equal to the offline replay scored by the version it
    names; Cassandra as the replay; per user the versions in `scores` order, never back."""
    expected = drills.offline(cfg, events)
    counts = collections.Counter(p["event_id"] for p in preds)
    assert [i for i, n in counts.items() if n > 1] == [], "events predicted more than once"
    assert set(counts) == {e.event_id for e in expected.applied}, "events lost or unexpected predictions"
    worst = 0.0
    for p in preds:
        assert p["model_version"] in scores, p["model_version"]
        worst = max(worst, abs(p["score"] - scores[p["model_version"]][p["event_id"]]))
        view = expected.views[p["event_id"]]
        assert (p["lifecycle"], p["value_tier"]) == (view["lifecycle"], view["value_tier"]), p["event_id"]
    assert worst <= 1e-6, f"max |stream - offline| = {worst}"
    rank = {v: i for i, v in enumerate(scores)}
    by_user: dict[str, list[int]] = collections.defaultdict(list)
    for p in preds:  # topic order per user: one partition per user, written in processing order
        by_user[p["user_id"]].append(rank[p["model_version"]])
    backwards = [u for u, r in by_user.items() if r != sorted(r)]
    assert backwards == [], f"users whose model version went back: {backwards[:5]}"
    drills.assert_cassandra_exact(cfg, expected)
    return expected


def trickle(cfg: Config, events: Sequence[Event], chunk: int = 250, pause_s: float = 0.25) -> None:
    for i in range(0, len(events), chunk):
        replay.publish(cfg, events[i:i + chunk], progress=False)
        time.sleep(pause_s)


# --- (a) a swap mid-stream ------------------------------------------------------------------------


def test_swap_mid_stream_scores_every_event_once_and_switches_once_per_subtask(taobao, tmp_path):
    events, new = taobao, package(7)
    with isolated(parallelism=2) as cfg:
        old = OnnxScorer(str(cfg.model_file), provider="cpu").model_version
        with job(cfg) as job_id:
            tap = drills.Tap(cfg, cfg.topic_predictions)
            # events keep arriving in small chunks while the model record is sent: a swap in mid-flow
            feeder = threading.Thread(target=trickle, args=(cfg, events), daemon=True)
            try:
                feeder.start()
                tap.wait(len(events) // 4, timeout_s=600, what="before the swap")
                print(f"\n[swap] {tap.count} predictions committed, publishing {new.version}: "
                      f"{publish_model.send(cfg, 'active', new)}")
                feeder.join(600)
                tap.wait(len(events), timeout_s=900, what="after the swap")
                swaps = wait_metric(cfg, job_id, "model_swaps", cfg.parallelism)
                metrics = submit.job_metrics(cfg, job_id)
                history = drills.exception_history(cfg, job_id)
            finally:
                preds = drills.decode(tap.close(settle_s=6), schemas.PREDICTION)
        versions = collections.Counter(p["model_version"] for p in preds)
        apply_ms = metrics.get("model_apply_micros", 0) / 1000 / cfg.parallelism
        print(f"[swap] {len(preds)} predictions: {dict(versions)}; model_swaps {swaps:.0f} "
              f"(one per subtask), validate + load {apply_ms:.1f} ms per subtask")
        assert history == [] and swaps == cfg.parallelism
        assert metrics.get("models_rejected", 0) == 0
        assert versions[old] > 0 and versions[new.version] > 0, versions
        check_versions(cfg, events, preds, {old: drills.offline(cfg, events).scores,
                                            new.version: offline_scores(cfg, events, scorer_of(new, tmp_path))})
        # per profile subtask, one switch: every old-model batch was scored before every new-model
        # batch (scored_at is the subtask's clock when it scored the batch)
        by_subtask: dict[int, dict[str, list[int]]] = collections.defaultdict(lambda: collections.defaultdict(list))
        for p in preds:
            by_subtask[subtask_of(p["user_id"], cfg.max_parallelism, cfg.parallelism)][p["model_version"]].append(
                p["scored_at"])
        assert len(by_subtask) == cfg.parallelism
        for s, times in by_subtask.items():
            if times[old] and times[new.version]:
                assert max(times[old]) <= min(times[new.version]), f"subtask {s} switched back and forth"


# --- (b) invalid models, (d) shadow scoring ---------------------------------------------------------


def test_invalid_models_are_rejected_and_a_shadow_scores_every_event_while_set(taobao, tmp_path):
    events = taobao
    a, b, c = events[:3000], events[3000:6000], events[6000:]
    bad_checksum = dataclasses.replace(package(8), checksum="sha256:" + "0" * 64)
    wrong_contract = package(8, names=tuple(reversed(FEATURE_NAMES)))  # the features in another order
    for bad in (bad_checksum, wrong_contract):
        with pytest.raises(mr.InvalidModel):  # what publish_model would refuse; sent anyway below
            mr.validate(bad)
    shadow = package(9, role="shadow")
    with isolated() as cfg:
        old = OnnxScorer(str(cfg.model_file), provider="cpu").model_version
        logged_before = drills.tm_log_lines(cfg, "model REJECTED")
        with job(cfg) as job_id:
            tap, shadow_tap = drills.Tap(cfg, cfg.topic_predictions), drills.Tap(cfg, cfg.topic_shadow_scores)
            try:
                replay.publish(cfg, a[:1000], progress=False)
                publish_model.send(cfg, "active", bad_checksum)
                publish_model.send(cfg, "active", wrong_contract)
                replay.publish(cfg, a[1000:], progress=False)
                rejected = wait_metric(cfg, job_id, "models_rejected", 2)
                tap.wait(len(a), timeout_s=600, what="after the invalid models")
                assert submit.job_state(cfg, job_id) == "RUNNING"

                publish_model.send(cfg, "shadow", shadow)
                wait_metric(cfg, job_id, "model_swaps", 1)  # applied: every event from now on is shadowed
                replay.publish(cfg, b, progress=False)
                tap.wait(len(a) + len(b), timeout_s=600, what="with the shadow")
                shadow_tap.wait(len(b), timeout_s=120, what="shadow scores")
                publish_model.send(cfg, "shadow", None)  # tombstone: stop shadow scoring
                wait_metric(cfg, job_id, "model_swaps", 2)
                replay.publish(cfg, c, progress=False)
                tap.wait(len(events), timeout_s=600, what="after the shadow")
                metrics = submit.job_metrics(cfg, job_id)
                history = drills.exception_history(cfg, job_id)
            finally:
                preds = drills.decode(tap.close(settle_s=6), schemas.PREDICTION)
                shadow_rows = drills.decode(shadow_tap.close(), schemas.SHADOW_SCORE)
        print(f"\n[invalid] models_rejected {rejected:.0f}; predictions {len(preds)}, all by "
              f"{set(p['model_version'] for p in preds)}; shadow rows {len(shadow_rows)} for {len(b)} events")
        assert history == [] and metrics["models_rejected"] == 2 and metrics["model_swaps"] == 2
        logged = drills.tm_log_lines(cfg, "model REJECTED") - logged_before
        assert logged == 2, f"{logged} 'model REJECTED' lines in the TaskManager log, expected one per bad model"
        assert {p["model_version"] for p in preds} == {old}  # rejected models never scored
        expected = drills.offline(cfg, events)
        drills.assert_exact(cfg, expected, preds)

        # exactly one shadow row per event applied while the shadow was set, both versions and scores
        assert collections.Counter(r["event_id"] for r in shadow_rows) == collections.Counter(e.event_id for e in b)
        want_shadow = offline_scores(cfg, events, scorer_of(shadow, tmp_path))
        score_of = {p["event_id"]: p["score"] for p in preds}
        for r in shadow_rows:
            assert (r["active_version"], r["shadow_version"]) == (old, shadow.version)
            assert r["active_score"] == score_of[r["event_id"]], r["event_id"]
            assert abs(r["shadow_score"] - want_shadow[r["event_id"]]) <= 1e-6, r["event_id"]
        # the offline replay with the same shadow gives the same rows (the engine is shared)
        replayed: list[list[Any]] = []
        scorer = OnnxScorer(str(cfg.model_file), provider="cpu")
        segmenter = OnnxSegmenter(str(cfg.segments_file), provider="cpu")
        store = replay_batches(a, functools.partial(score_batch, scorer, segmenter), cfg.profile_settings())[3]
        replay_batches(b, functools.partial(score_batch, scorer, segmenter), cfg.profile_settings(), store=store,
                       shadow=functools.partial(score_only, scorer_of(shadow, tmp_path)), shadow_rows=replayed)
        got = {r["event_id"]: r for r in shadow_rows}
        for row in replayed:
            r = dict(zip(SHADOW_FIELDS, row, strict=True))
            assert abs(got[r["event_id"]]["shadow_score"] - r["shadow_score"]) <= 1e-6


# --- (c) a crash after the swap, then a rescale ------------------------------------------------------


def test_swapped_model_survives_a_taskmanager_crash_and_a_rescale(taobao, tmp_path):
    events, new = taobao, package(7)
    a, b, c = events[:3000], events[3000:6000], events[6000:]
    with isolated() as cfg:
        old = OnnxScorer(str(cfg.model_file), provider="cpu").model_version
        tap = drills.Tap(cfg, cfg.topic_predictions)
        job_id: Optional[str] = submit.submit(cfg)
        try:
            replay.publish(cfg, a, progress=False)
            tap.wait(len(a) // 2, timeout_s=600, what="before the swap")
            publish_model.send(cfg, "active", new)
            wait_metric(cfg, job_id, "model_swaps", 1)
            # a checkpoint taken after the swap: the restore resumes the models topic after the record,
            # so only the checkpointed registry can bring the new model back
            wait_checkpoints(cfg, job_id, 2)
            drills.kill_and_replace_taskmanager(cfg, job_id)
            restores = wait_metric(cfg, job_id, "model_registry_restores", 1)
            replay.publish(cfg, b, progress=False)
            tap.wait(len(a) + len(b), timeout_s=600, what="after the crash")
            savepoint = submit.stop_with_savepoint(cfg, job_id)
            job_id = None
            # a new job from the savepoint with twice the parallelism: other key-group ranges per subtask
            cfg2 = dataclasses.replace(cfg, parallelism=2)
            job_id = submit.submit(cfg2, savepoint=savepoint)
            rescaled = wait_metric(cfg2, job_id, "model_registry_restores", 2)
            replay.publish(cfg, c, progress=False)
            tap.wait(len(events), timeout_s=600, what="after the rescale")
            history = drills.exception_history(cfg, job_id)
        finally:
            if job_id is not None:
                submit.cancel(cfg, job_id)
            preds = drills.decode(tap.close(settle_s=6), schemas.PREDICTION)
        versions = collections.Counter(p["model_version"] for p in preds)
        print(f"\n[crash+rescale] {len(preds)} predictions {dict(versions)}; registry restored by {restores:.0f} "
              f"subtask(s) after the crash, {rescaled:.0f} after the rescale to 2")
        assert history == []
        b_and_c = {e.event_id for e in b + c}
        assert {p["model_version"] for p in preds if p["event_id"] in b_and_c} == {new.version}
        assert restores == 1 and rescaled == 2
        check_versions(cfg, events, preds, {old: drills.offline(cfg, events).scores,
                                            new.version: offline_scores(cfg, events, scorer_of(new, tmp_path))})
