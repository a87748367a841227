"""Flink operators: thin adapters over the pure core in udfs/. They read state, call the core,
write state, set timers and emit rows; all profile and feature math lives in udfs/."""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Optional

from pyflink.common import Row, Time
from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, MapFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from flink_jobs.config import Config
from flink_jobs.types import row_type
from udfs import features as feats
from udfs import schemas
from udfs.prediction import PREDICTION_FIELDS, Scores, prediction_row, score_batch
from udfs.profile import (
    Event,
    Outcome,
    Profile,
    decode_profile,
    encode_profile,
    erasure_timestamp,
    is_expired,
    prune,
    step,
)
from udfs.scorer import OnnxScorer  # noqa: I001 - see below
from udfs.segmenter import OnnxSegmenter

# onnxruntime is imported with this module, i.e. before any operator opens: importing its C
# extension inside open(), after the Cassandra driver has started its event-loop threads in the same
# embedded interpreter, hung the TaskManager (seen with thread mode).

log = logging.getLogger(__name__)

_UNUSED_IN_THREAD_MODE: Any = "periodic compaction: RocksDB default"
PROFILE_STATE = "profile"  # the bytes inside carry their own layout version (udfs.profile.STATE_VERSION)
LATE_TAG = OutputTag("late-events", row_type(schemas.EVENT))
DUPLICATE_TAG = OutputTag("duplicate-events", row_type(schemas.DEAD_LETTER))


# The state holds the versioned Avro bytes of udfs.profile as a latin-1 string: an exact 1:1 map of
# bytes 0..255. PyFlink's thread mode converts byte[] to a tuple of ints element by element and cannot
# read an empty byte[] state at all (None -> TypeError), while a string crosses as one object.
def _to_state(data: bytes) -> str:
    return data.decode("latin-1")


def _from_state(text: str) -> bytes:
    return text.encode("latin-1")


class ProfileCache:
    """Decoded profiles of recently seen users, least recently used out first: a mirror of the keyed
    state (every change is written through), rebuilt from state after any restart because open()
    runs again. Saves decoding the state of active users."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._profiles: OrderedDict[str, Profile] = OrderedDict()

    def get(self, user: str) -> Optional[Profile]:
        p = self._profiles.get(user)
        if p is not None:
            self._profiles.move_to_end(user)
        return p

    def put(self, user: str, p: Profile) -> None:
        self._profiles[user] = p
        self._profiles.move_to_end(user)
        if len(self._profiles) > self.size:
            self._profiles.popitem(last=False)

    def pop(self, user: str) -> None:
        self._profiles.pop(user, None)


class _ProfileOperator(KeyedProcessFunction):
    """What both profile operators open: settings, the decoded-profile cache, the two models and
    the counters they share."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def _open_common(self, runtime_context: RuntimeContext, what: str) -> Any:
        """Returns the operator's metric group for its own counters."""
        self.settings = self.cfg.profile_settings()
        self.cache = ProfileCache(self.cfg.profile_cache_users)
        self.scorer = OnnxScorer(str(self.cfg.model_file), provider=self.cfg.onnx_provider)
        self.segmenter = OnnxSegmenter(str(self.cfg.segments_file), provider=self.cfg.onnx_provider)
        group = runtime_context.get_metrics_group().add_group("profile_engine")
        self.m_events = group.counter("events_applied")
        self.m_late = group.counter("events_late")
        self.m_duplicates = group.counter("events_duplicate")
        self.m_erased = group.counter("users_erased")
        # Counters only: a Python gauge (or histogram) is read by Flink's metric thread, which calls
        # into the embedded interpreter from outside the task thread and crashed the TaskManager
        # (SIGSEGV in take_gil). 1 = this subtask scores on CUDA.
        group.counter("onnx_provider_cuda").inc(int(self.scorer.provider.startswith("CUDA")))
        log.info("%s: %s and %s on %s", what, self.scorer.model_version, self.segmenter.model_version,
                 self.scorer.provider)
        return group


class ProfileFunction(_ProfileOperator):
    """Per user: step the profile in keyed state (duplicates and late events leave through side
    outputs), compute the features, score them.

    Emits one row per applied event: the prediction fields (schemas/prediction.avsc order) and, as
    JSON, the profile view, its version and the feature vector (for the Cassandra writer). Timers:
    idle expiry at last_seen + idle_expiry_ms, and tile pruning when the oldest tile leaves every
    window (both in event time)."""

    def open(self, runtime_context: RuntimeContext) -> None:
        group = self._open_common(runtime_context, "profile operator")
        self.state = runtime_context.get_state(ValueStateDescriptor(PROFILE_STATE, Types.STRING()))
        self.m_expired = group.counter("profiles_expired")

    # --- state access -------------------------------------------------------------------------
    def _load(self, user: str) -> Optional[Profile]:
        p = self.cache.get(user)
        if p is not None:
            return p
        raw = self.state.value()
        if raw is None:
            return None
        p = decode_profile(_from_state(raw))
        self.cache.put(user, p)
        return p

    def _save(self, user: str, p: Profile) -> None:
        self.state.update(_to_state(encode_profile(p)))
        self.cache.put(user, p)

    def _set_timers(self, ctx: Any, p: Profile, previous_last_seen: Optional[int]) -> None:
        timers = ctx.timer_service()
        s = self.settings
        if previous_last_seen != p.last_seen:
            if previous_last_seen is not None:
                timers.delete_event_time_timer(previous_last_seen + s.idle_expiry_ms)
            timers.register_event_time_timer(p.last_seen + s.idle_expiry_ms)
        if p.tiles:
            # the oldest tile leaves the longest window here; Flink keeps one timer per timestamp
            timers.register_event_time_timer(min(p.tiles) + s.max_window_ms + s.tile_ms)

    # --- callbacks ----------------------------------------------------------------------------
    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        ev = Event(*value)
        state = self._load(ev.user_id)
        result = step(state, ev, ctx.timer_service().current_watermark(), self.settings)
        if result.outcome is Outcome.ERASED:
            # privacy request: the state goes here; tools.erase_user deletes the Cassandra rows
            self.state.clear()
            self.cache.pop(ev.user_id)
            self.m_erased.inc()
            return
        if result.outcome is Outcome.DUPLICATE:
            self.m_duplicates.inc()
            yield DUPLICATE_TAG, duplicate_row(ev, self.cfg.topic_events)
            return
        if result.outcome is Outcome.LATE:
            self.m_late.inc()
            yield LATE_TAG, value
            return
        p = result.state
        vector, view = feats.vector_and_view(result.before, p, ev, self.settings)
        scores = self._score(vector)
        self._save(ev.user_id, p)
        self._set_timers(ctx, p, result.before.last_seen if result.before else None)
        self.m_events.inc()
        values = prediction_row(ev, scores, view, int(time.time() * 1000), vector if self.cfg.emit_features else [])
        yield Row(*values, json.dumps({"version": p.version, "view": view, "features": vector}))

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        user = ctx.get_current_key()
        p = self._load(user)
        if p is None:
            return
        watermark = ctx.timer_service().current_watermark()
        if is_expired(p, watermark, self.settings):
            self.state.clear()
            self.cache.pop(user)
            self.m_expired.inc()
            return
        prune(p, watermark, self.settings)
        self._save(user, p)
        if p.tiles:
            ctx.timer_service().register_event_time_timer(
                min(p.tiles) + self.settings.max_window_ms + self.settings.tile_ms
            )
        return
        yield  # a generator: PyFlink iterates the result of on_timer

    def _score(self, vector: list[float]) -> Scores:
        return score_batch(self.scorer, self.segmenter, [vector])[0]


def profile_map_descriptor(cfg: Config) -> MapStateDescriptor:
    """The micro-batch pipeline's profile state: user_id -> versioned Avro bytes as latin-1, under the
    bucket key, with the TTL that reclaims idle users (TTL is part of the state's serialized form: a
    restore must use the same setting)."""
    descriptor = MapStateDescriptor(PROFILE_STATE, Types.STRING(), Types.STRING())
    if cfg.state_ttl_ms > 0:
        descriptor.enable_time_to_live(
            StateTtlConfig.new_builder(Time.milliseconds(cfg.state_ttl_ms))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
            # Expired entries are dropped by RocksDB compaction, asked for explicitly: pyflink's
            # background-cleanup defaults build a py4j Duration, and the TaskManager's interpreter
            # has no py4j gateway (thread mode never reads the periodic-compaction value).
            .disable_cleanup_in_background()
            .cleanup_in_rocksdb_compact_filter(1000, periodic_compaction_time=_UNUSED_IN_THREAD_MODE)
            .build()
        )
    return descriptor


class BatchProfileFunction(_ProfileOperator):
    """The micro-batch pipeline's profile operator, keyed by state bucket.

    Each element is one batch from the JVM MicroBatcher: a JSON array of [watermark, event fields].
    Per event, as in ProfileFunction: step the user's profile with the watermark the event arrived
    with, then features. Per batch: one ONNX call per model, every Cassandra upsert in flight at
    once, each touched profile encoded and written to state once. Profiles live in MapState
    (user_id -> versioned Avro bytes as latin-1) under the bucket key. Expiry needs no timer (step
    starts a fresh profile after idle_expiry_ms); state TTL reclaims the memory of idle users.

    Emits one prediction row per applied event (schemas/prediction.avsc), after its Cassandra write
    is acknowledged; duplicates and late events leave through DUPLICATE_TAG and LATE_TAG."""

    def open(self, runtime_context: RuntimeContext) -> None:
        from flink_jobs.cassandra_store import CassandraStore

        group = self._open_common(runtime_context, "batched profile operator")
        self.profiles = runtime_context.get_map_state(profile_map_descriptor(self.cfg))
        self.m_written = group.counter("cassandra_writes")
        # Sums (Python cannot register histograms, see _ProfileOperator); divide by python_batches
        # for the mean per batch.
        self.m_onnx_us = group.counter("onnx_micros")
        self.m_cassandra_us = group.counter("cassandra_write_micros")
        self.m_batches = group.counter("python_batches")
        self.store = CassandraStore(self.cfg, on_retry=group.counter("cassandra_retries").inc)

    def _load(self, user: str) -> Optional[Profile]:
        p = self.cache.get(user)
        if p is not None:
            return p
        raw = self.profiles.get(user)
        return None if raw is None else decode_profile(_from_state(raw))

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        applied: list[tuple[Event, list[float], dict[str, Any]]] = []
        dirty: dict[str, tuple[Profile, int]] = {}  # user -> (profile, index of its last applied event)
        erasures: list[tuple[str, int]] = []
        for item in json.loads(value[0]):
            ev = Event(*item[1:])
            current = self._load(ev.user_id)
            result = step(current, ev, item[0], self.settings)
            if result.outcome is Outcome.ERASED:
                # privacy request: state, cache and Cassandra rows go; this batch's earlier rows of
                # the user are written below the tombstones' write time, so they stay deleted
                self.profiles.remove(ev.user_id)
                self.cache.pop(ev.user_id)
                dirty.pop(ev.user_id, None)
                erasures.append((ev.user_id, erasure_timestamp(current, ev)))
                self.m_erased.inc()
                continue
            if result.outcome is Outcome.DUPLICATE:
                self.m_duplicates.inc()
                yield DUPLICATE_TAG, duplicate_row(ev, self.cfg.topic_events)
                continue
            if result.outcome is Outcome.LATE:
                self.m_late.inc()
                yield LATE_TAG, Row(*item[1:])
                continue
            p = result.state
            vector, view = feats.vector_and_view(result.before, p, ev, self.settings)
            self.cache.put(ev.user_id, p)  # the next event of this user in the batch sees this profile
            dirty[ev.user_id] = (p, len(applied))
            applied.append((ev, vector, view))
        if not applied:
            if erasures:
                self.store.write_many([], [], erasures)
            return
        t0 = time.perf_counter()
        scores = score_batch(self.scorer, self.segmenter, [a[1] for a in applied])
        t1 = time.perf_counter()
        scored_at = int(time.time() * 1000)
        rows, preds = [], []
        for (ev, vector, view), s in zip(applied, scores, strict=True):
            values = prediction_row(ev, s, view, scored_at, vector if self.cfg.emit_features else [])
            rows.append(values)
            preds.append(dict(zip(PREDICTION_FIELDS, values, strict=True)))
        profiles = [
            self.store.profile_values(applied[i][2], p.version, preds[i], applied[i][1]) for p, i in dirty.values()
        ]
        # acknowledged before the predictions leave, hence before any later checkpoint barrier
        self.store.write_many(profiles, [self.store.prediction_values(pred) for pred in preds], erasures)
        t2 = time.perf_counter()
        for user, (p, _) in dirty.items():
            self.profiles.put(user, _to_state(encode_profile(p)))
        self.m_events.inc(len(applied))
        self.m_written.inc(len(applied))
        self.m_batches.inc()
        self.m_onnx_us.inc(int((t1 - t0) * 1e6))
        self.m_cassandra_us.inc(int((t2 - t1) * 1e6))
        for values in rows:
            yield Row(*values)

    def close(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()


def duplicate_row(ev: Event, topic: str) -> Row:
    """A dead_letter.avsc row for an event whose event_id was already applied."""
    from udfs.avro import encode_event

    return Row(
        "duplicate_event",
        f"event_id {ev.event_id!r} was already applied to user {ev.user_id!r}; counted once",
        topic,
        -1,  # partition and offset are not known after keyBy
        -1,
        ev.event_time,
        ev.user_id.encode(),
        encode_event(ev),
    )


class CassandraWriter(MapFunction):
    """Writes the profile and the prediction to Cassandra (idempotent upserts, retried), then passes
    the prediction on. It blocks until both writes are acknowledged, so a completed checkpoint
    implies every earlier prediction is in Cassandra (at-least-once, made exact by idempotence)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext) -> None:
        from flink_jobs.cassandra_store import CassandraStore

        group = runtime_context.get_metrics_group().add_group("profile_engine")
        self.written = group.counter("cassandra_writes")
        self.store = CassandraStore(self.cfg, on_retry=group.counter("cassandra_retries").inc)

    def map(self, value: Row) -> Row:
        n = len(PREDICTION_FIELDS)
        prediction: dict[str, Any] = dict(zip(PREDICTION_FIELDS, value[:n], strict=True))
        payload = json.loads(value[n])
        self.store.write(payload["view"], payload["version"], prediction, payload["features"])
        self.written.inc()
        return Row(*value[:n])

    def close(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()
