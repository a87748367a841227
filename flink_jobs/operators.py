"""The profile operator: a thin adapter over the batch engine in udfs/engine.py. It decodes a batch,
calls ``process_batch`` with a store backed by Flink keyed state, and emits what the engine returns.
All profile, feature and scoring logic lives in udfs/; all I/O (Kafka, Cassandra) in the JVM.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from pyflink.common import Row, Time
from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

from flink_jobs.config import Config
from flink_jobs.interpreter import release_gc, tune_gc
from flink_jobs.keyed_store import KeyedProfileStore, KeyedStateAccess
from flink_jobs.model_control import SHADOW_TAG, ModelControl, registry_state_descriptor
from flink_jobs.types import row_type, write_request_type
from udfs import cassandra_rows, popularity, recommend, schemas
from udfs.engine import FlushPolicy, ProfileRow, merge_pending, oldest_pending, process_batch
from udfs.profile import Event
from udfs.scorer import OnnxScorer  # noqa: I001, F401 - see below

# onnxruntime is imported with this module, i.e. before any operator opens: importing its C
# extension inside open(), after other native libraries started threads in the same embedded
# interpreter, hung the TaskManager (seen with thread mode).

log = logging.getLogger(__name__)

_UNUSED_IN_THREAD_MODE: Any = "periodic compaction: RocksDB default"
PROFILE_STATE = "profile"  # the bytes inside carry their own layout version (udfs.profile.STATE_VERSION)
LATE_TAG = OutputTag("late-events", row_type(schemas.EVENT))
DUPLICATE_TAG = OutputTag("duplicate-events", row_type(schemas.DEAD_LETTER))
CASSANDRA_TAG = OutputTag("cassandra-writes", write_request_type())


def profile_state_descriptor(cfg: Config) -> ValueStateDescriptor:
    """One entry per user: versioned Avro bytes as latin-1, with the TTL that reclaims idle users (TTL
    is part of the state's serialized form: a restore must use the same setting)."""
    descriptor = ValueStateDescriptor(PROFILE_STATE, Types.STRING())
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


def keyed_state_access(runtime_context: RuntimeContext, state: Any, max_parallelism: int) -> KeyedStateAccess:
    """The JVM accessor of ``state`` (a ValueState of this operator) under users' keys.

    PyFlink cannot switch keys inside a call, but the JVM state backend can: the embedded (thread
    mode) runtime hands Python the Java backend, and pemja passes it to KeyedStateAccess, which
    switches keys in Java (one call per batch or flush, not five per user). The key is the Row that
    PyFlink's KeyByKeySelector builds (jvm/.../UserKeys.java), so Flink assigns and rescales users'
    key groups like any keyed state; a user of a key group this subtask does not own is refused."""
    try:  # pyflink 2.2.1 internals (pinned): fail at open(), never write state under a wrong key
        backend = runtime_context._keyed_state_backend._keyed_state_backend
        j_state = state._state
    except AttributeError as exc:
        raise RuntimeError("this PyFlink does not expose the keyed state backend to thread-mode Python "
                           "functions; the profile operator needs python.execution-mode=thread") from exc
    # pemja's findClass sees Flink's classpath only; the glue jar is a job jar, in the user-code class
    # loader: load the class from there and make one with its no-argument constructor
    cls = runtime_context._runtime_context.getUserCodeClassLoader().loadClass(
        "dev.profileengine.glue.KeyedStateAccess")
    return cls.newInstance().bind(backend, j_state, max_parallelism)


class ProfileFunction(KeyedProcessFunction):
    """Keyed by the batcher's route key; each element is one batch from the JVM MicroBatcher (a JSON
    array of events in user_event.avsc order) or a commit marker ({"checkpoint": id}).

    A batch goes through udfs.engine.process_batch: predictions on the main output (one JSON array
    per batch, one row per applied event; the JVM splits it and derives the Cassandra rows), late
    events and duplicates on side outputs, erasures on CASSANDRA_TAG for the JVM sink, shadow scores
    on SHADOW_TAG while a shadow model is set. Control records swap the models (the models topic,
    flink_jobs/model_control.py) or update "popular now" (flink_jobs/popularity_op.py) between
    batches. A commit marker writes the changed profiles to keyed state, and their Cassandra rows
    and recommendation lists, before the barrier that follows the marker, so the checkpoint holds
    them and the Cassandra sink flushes them before it completes. While the subtask keeps up, all
    but the most recently touched are written right after their batch instead (udfs.engine.FlushPolicy),
    so the marker finds few: the write burst at every checkpoint was the p99 latency."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext) -> None:
        cfg = self.cfg
        tune_gc(cfg.python_gc_threshold)
        self.settings = cfg.profile_settings()
        state = runtime_context.get_state(profile_state_descriptor(cfg))
        self.store = KeyedProfileStore(keyed_state_access(runtime_context, state, cfg.max_parallelism),
                                       cfg.profile_cache_users)
        self.pending: dict[str, ProfileRow] = {}
        self.flush_policy = FlushPolicy(cfg.batch_max_events, cfg.flush_live_pending, cfg.flush_max_pending)
        # "popular now" per category (flink_jobs/popularity_op.py): memory only, bounded by
        # popular_max_categories; the popularity stage re-sends what it holds after a restore
        self.popular: popularity.Snapshot = {}
        self.pop_settings = cfg.popularity_settings()
        self.rec_settings = cfg.recommend_settings()
        group = runtime_context.get_metrics_group().add_group("profile_engine")
        # the models: the files, or the ones the checkpointed model registry says (read here, in open())
        registry = runtime_context.get_state(registry_state_descriptor())
        self.models = ModelControl(cfg, keyed_state_access(runtime_context, registry, cfg.max_parallelism), group)
        # kind -> handler(body) of the control records sent through connectors.control_fanout
        self.controls: dict[str, Callable[[Any], Iterable[Any]]] = {"model": self.models.handle,
                                                                     "popularity": self._popularity}
        self.m_events = group.counter("events_applied")
        self.m_late = group.counter("events_late")
        self.m_duplicates = group.counter("events_duplicate")
        self.m_erased = group.counter("users_erased")
        # Sums (a Python gauge or histogram is read by Flink's metric thread, which calls into the
        # embedded interpreter from outside the task thread and crashed the TaskManager: SIGSEGV in
        # take_gil). Divide by python_batches / state_flushes for the mean.
        self.m_batches = group.counter("python_batches")
        self.m_batch_us = group.counter("python_batch_micros")
        # CPU time of this thread (wall time above includes waiting for the GIL and for output buffers)
        self.m_cpu_us = group.counter("python_cpu_micros")
        self.m_flushes = group.counter("state_flushes")
        self.m_flush_us = group.counter("state_flush_micros")
        self.m_flushed = group.counter("profiles_flushed")
        self.m_state_reads = group.counter("state_reads")
        self.m_recommendations = group.counter("recommendations_written")
        self.m_popular_updates = group.counter("popularity_tops_received")
        live = self.models.live
        group.counter("onnx_provider_cuda").inc(int(live.scorer.provider.startswith("CUDA")))
        log.info("profile operator: %s and %s on %s", live.scorer.model_version, live.segmenter.model_version,
                 live.scorer.provider)

    def close(self) -> None:
        release_gc()  # this job's objects must be collectable once it ends (flink_jobs/interpreter.py)

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        payload: str = value[0]
        if payload.startswith("{"):
            yield from self._control(payload)
            return
        t0, c0 = time.perf_counter(), time.thread_time()
        reads0 = self.store.state_reads
        events = [Event(*fields) for fields in orjson.loads(payload)]
        self.store.prefetch(ev.user_id for ev in events)
        live = self.models.live  # its score/shadow change only between batches (ModelControl.handle)
        r = process_batch(events, self.store, live.score, self.settings, int(time.time() * 1000),
                          self.cfg.emit_features, live.shadow)
        merge_pending(self.pending, r)
        for ev in r.duplicates:
            yield DUPLICATE_TAG, duplicate_row(ev, self.cfg.topic_events)
        for ev in r.late:
            yield LATE_TAG, Row(*ev)
        for user, ts in r.erasures:
            yield CASSANDRA_TAG, Row(*cassandra_rows.erase_request(user, ts))
        for values in r.shadow:
            yield SHADOW_TAG, Row(*values)
        if r.predictions:  # one string per batch: jvm/.../PredictionRows splits it into typed rows
            yield Row(orjson.dumps(r.predictions).decode())
        # more changed profiles held back than a checkpoint should write at once: the least recently
        # touched go now, so the pause at the commit marker stays bounded (latency, README "Throughput")
        if early := oldest_pending(self.pending, self.flush_policy.keep(len(events))):
            yield from self._write(early)
        self.m_events.inc(len(r.predictions))
        self.m_late.inc(len(r.late))
        self.m_duplicates.inc(len(r.duplicates))
        self.m_erased.inc(len(r.erasures))
        self.m_state_reads.inc(self.store.state_reads - reads0)
        self.m_batches.inc()
        self.m_batch_us.inc(int((time.perf_counter() - t0) * 1e6))
        self.m_cpu_us.inc(int((time.thread_time() - c0) * 1e6))

    def _control(self, payload: str) -> Iterable[Any]:
        """A control record between two batches: a commit marker (jvm/.../MicroBatcher) or a record
        that every subtask gets from jvm/.../ControlFanout, ``{kind: body}``, handled by
        ``self.controls[kind]`` (an unknown kind is a wiring bug: fail loudly)."""
        msg = orjson.loads(payload)
        if "checkpoint" in msg:
            yield from self._commit()
            return
        (kind, body), = msg.items()
        handler = self.controls.get(kind)
        if handler is None:
            raise ValueError(f"control record of unknown kind {kind!r}; known: {sorted(self.controls)}")
        yield from handler(body)

    def _popularity(self, body: Any) -> Iterable[Any]:
        tops = popularity.read_tops_message(body)
        popularity.merge_all(self.popular, tops, self.pop_settings)
        self.m_popular_updates.inc(len(tops))
        return ()

    def _commit(self) -> Iterable[Any]:
        t0, c0 = time.perf_counter(), time.thread_time()
        yield from self._write(list(self.pending))
        self.m_flushed.inc(self.store.flush())  # any change without a row (none today): state is complete
        self.m_flushes.inc()
        self.m_flush_us.inc(int((time.perf_counter() - t0) * 1e6))
        self.m_cpu_us.inc(int((time.thread_time() - c0) * 1e6))

    def _write(self, users: list[str]) -> Iterable[Any]:
        """Write these pending users: their profiles to keyed state, their rows and recommendation
        lists to the Cassandra sink. Once per user and checkpoint unless ``flush_live_pending`` or
        ``flush_max_pending`` makes room earlier (udfs.engine.FlushPolicy); the rows are idempotent
        (USING TIMESTAMP = profile version), so a row written before the checkpoint and replayed after
        a restore rewrites the same cells."""
        if not users:
            return
        if self.cfg.recommendations:
            # from the profile after the user's latest event (a pending user's profile is still in
            # the store's dirty set or cache: no state read)
            recs = recommend.refresh(((u, self.store.get(u)) for u in users), self.popular,
                                     self.rec_settings, self.settings, self.pop_settings)
            yield CASSANDRA_TAG, Row(*cassandra_rows.recommendation_bundle(recs, recommend.VERSION,
                                                                           int(time.time() * 1000)))
            self.m_recommendations.inc(len(recs))
        self.m_flushed.inc(self.store.flush(users))
        yield CASSANDRA_TAG, Row(*cassandra_rows.profile_bundle((u, self.pending.pop(u)) for u in users))


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
