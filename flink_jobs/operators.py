"""Flink operators: thin adapters over the pure core in udfs/. They read state, call the core,
write state, set timers and emit rows; all profile and feature math lives in udfs/."""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, NamedTuple, Optional

import numpy as np
from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, MapFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from flink_jobs.config import Config
from flink_jobs.types import row_type
from udfs import features as feats
from udfs import schemas
from udfs.profile import (
    Event,
    Outcome,
    Profile,
    decode_profile,
    encode_profile,
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

PROFILE_STATE = "profile"  # the bytes inside carry their own layout version (udfs.profile.STATE_VERSION)
PREDICTION_FIELDS = schemas.field_names(schemas.PREDICTION)
LATE_TAG = OutputTag("late-events", row_type(schemas.EVENT))
DUPLICATE_TAG = OutputTag("duplicate-events", row_type(schemas.DEAD_LETTER))


# The state holds the versioned Avro bytes of udfs.profile as a latin-1 string: an exact 1:1 map of
# bytes 0..255. PyFlink's thread mode converts byte[] to a tuple of ints element by element and cannot
# read an empty byte[] state at all (None -> TypeError), while a string crosses as one object.
def _to_state(data: bytes) -> str:
    return data.decode("latin-1")


def _from_state(text: str) -> bytes:
    return text.encode("latin-1")


class Scores(NamedTuple):
    """What the models said about one profile."""

    score: float
    model_version: str
    segment: int
    segment_name: str
    segment_model_version: str


def prediction_row(
    ev: Event, scores: Scores, view: dict[str, Any], scored_at: int, features: list[float]
) -> list[Any]:
    """Values in the order of schemas/prediction.avsc."""
    pred = {
        "user_id": ev.user_id,
        "event_id": ev.event_id,
        "event_type": ev.event_type,
        "event_time": ev.event_time,
        "score": scores.score,
        "lifecycle": view["lifecycle"],
        "value_tier": view["value_tier"],
        "segment": scores.segment,
        "segment_name": scores.segment_name,
        "model_version": scores.model_version,
        "segment_model_version": scores.segment_model_version,
        "scored_at": scored_at,
        "features": features,
    }
    return [pred[f] for f in PREDICTION_FIELDS]


class ProfileFunction(KeyedProcessFunction):
    """Per user: step the profile in keyed state (duplicates and late events leave through side
    outputs), compute the features, score them.

    Emits one row per applied event: the prediction fields (schemas/prediction.avsc order) and, as
    JSON, the profile view, its version and the feature vector (for the Cassandra writer). Timers:
    idle expiry at last_seen + idle_expiry_ms, and tile pruning when the oldest tile leaves every
    window (both in event time)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext) -> None:
        self.settings = self.cfg.profile_settings()
        self.state = runtime_context.get_state(ValueStateDescriptor(PROFILE_STATE, Types.STRING()))
        # Decoded profiles of recently seen users: a mirror of the keyed state (every change is
        # written through), rebuilt from state after any restart because open() runs again.
        self.cache: OrderedDict[str, Profile] = OrderedDict()
        self.scorer = OnnxScorer(str(self.cfg.model_file), provider=self.cfg.onnx_provider)
        self.segmenter = OnnxSegmenter(str(self.cfg.segments_file), provider=self.cfg.onnx_provider)
        group = runtime_context.get_metrics_group().add_group("profile_engine")
        self.m_events = group.counter("events_applied")
        self.m_late = group.counter("events_late")
        self.m_duplicates = group.counter("events_duplicate")
        self.m_expired = group.counter("profiles_expired")
        # Counters only: a Python gauge is read by Flink's metric thread, which calls into the
        # embedded interpreter from outside the task thread and crashed the TaskManager (SIGSEGV in
        # take_gil). 1 = this subtask scores on CUDA.
        group.counter("onnx_provider_cuda").inc(int(self.scorer.provider.startswith("CUDA")))
        log.info("profile operator: %s and %s on %s", self.scorer.model_version, self.segmenter.model_version,
                 self.scorer.provider)

    # --- state access -------------------------------------------------------------------------
    def _load(self, user: str) -> Optional[Profile]:
        p = self.cache.get(user)
        if p is not None:
            self.cache.move_to_end(user)
            return p
        raw = self.state.value()
        if raw is None:
            return None
        p = decode_profile(_from_state(raw))
        self._remember(user, p)
        return p

    def _remember(self, user: str, p: Profile) -> None:
        self.cache[user] = p
        self.cache.move_to_end(user)
        if len(self.cache) > self.cfg.profile_cache_users:
            self.cache.popitem(last=False)

    def _save(self, user: str, p: Profile) -> None:
        self.state.update(_to_state(encode_profile(p)))
        self._remember(user, p)

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
        if result.outcome is Outcome.DUPLICATE:
            self.m_duplicates.inc()
            yield DUPLICATE_TAG, self._duplicate_row(ev)
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
            self.cache.pop(user, None)
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
        x = np.asarray([vector], dtype=np.float32)
        segment = int(self.segmenter.assign(x)[0])
        return Scores(
            float(self.scorer.score(x)[0]),
            self.scorer.model_version,
            segment,
            self.segmenter.name_of(segment),
            self.segmenter.model_version,
        )

    def _duplicate_row(self, ev: Event) -> Row:
        from udfs.avro import encode_event

        return Row(
            "duplicate_event",
            f"event_id {ev.event_id!r} was already applied to user {ev.user_id!r}; counted once",
            self.cfg.topic_events,
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
