"""Flink operators: thin adapters over the pure core in udfs/. They read state, call the core,
write state and emit rows; all profile and feature math lives in udfs/."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, MapFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from flink_jobs.config import Config
from udfs import features as feats
from udfs import schemas
from udfs.profile import Event, apply_event, decode_profile, encode_profile

log = logging.getLogger(__name__)

PROFILE_STATE = "profile-v1"  # the state name carries the layout version it was designed for


# The state holds the versioned Avro bytes of udfs.profile as a latin-1 string: an exact 1:1 map of
# bytes 0..255. PyFlink's thread mode converts byte[] to a tuple of ints element by element and cannot
# read an empty byte[] state at all (None -> TypeError), while a string crosses as one object.
def _to_state(data: bytes) -> str:
    return data.decode("latin-1")


def _from_state(text: str) -> bytes:
    return text.encode("latin-1")

PREDICTION_FIELDS = schemas.field_names(schemas.PREDICTION)


def prediction_row(ev: Event, score: float, model_version: str, scored_at: int) -> list[Any]:
    """Values in the order of schemas/prediction.avsc."""
    pred = {
        "user_id": ev.user_id,
        "event_id": ev.event_id,
        "event_type": ev.event_type,
        "event_time": ev.event_time,
        "score": score,
        "model_version": model_version,
        "scored_at": scored_at,
    }
    return [pred[f] for f in PREDICTION_FIELDS]


class ProfileFunction(KeyedProcessFunction):
    """Per user: apply the event to the profile in keyed state, compute the features, score them.

    Emits one row per event: the prediction fields (schemas/prediction.avsc order), the encoded
    profile and the feature vector (for the Cassandra writer downstream)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext) -> None:
        from udfs.scorer import OnnxScorer  # onnxruntime loads in the TaskManager only

        self.state = runtime_context.get_state(
            ValueStateDescriptor(PROFILE_STATE, Types.STRING())
        )
        self.scorer = OnnxScorer(str(self.cfg.model_file), provider=self.cfg.onnx_provider)
        self.model_version = self.scorer.model_version
        group = runtime_context.get_metrics_group().add_group("profile_engine")
        self.events_in = group.counter("events_in")
        group.gauge("onnx_provider_is_cuda", lambda: int(self.scorer.provider.startswith("CUDA")))
        log.info("profile operator: model %s on %s", self.model_version, self.scorer.provider)

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterable[Row]:
        ev = Event(*value)
        raw = self.state.value()
        before = decode_profile(_from_state(raw)) if raw is not None else None
        after = apply_event(before, ev)
        vector = feats.feature_vector(before, after, ev)
        score = float(self.scorer.score(np.asarray([vector], dtype=np.float32))[0])
        encoded = _to_state(encode_profile(after))
        self.state.update(encoded)
        self.events_in.inc()
        values = prediction_row(ev, score, self.model_version, int(time.time() * 1000))
        yield Row(*values, encoded, vector)


class CassandraWriter(MapFunction):
    """Writes the profile and the prediction to Cassandra (idempotent upserts, retried), then passes
    the prediction on. It blocks until both writes are acknowledged, so a completed checkpoint
    implies every earlier prediction is in Cassandra (at-least-once, made exact by idempotence)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext) -> None:
        from flink_jobs.cassandra_store import CassandraStore

        self.store = CassandraStore(self.cfg)
        group = runtime_context.get_metrics_group().add_group("profile_engine")
        self.written = group.counter("cassandra_writes")
        group.gauge("cassandra_retries", lambda: self.store.retries)

    def map(self, value: Row) -> Row:
        n = len(PREDICTION_FIELDS)
        prediction: dict[str, Any] = dict(zip(PREDICTION_FIELDS, value[:n], strict=True))
        profile = decode_profile(_from_state(value[n])).as_dict()
        self.store.write(profile, prediction, list(value[n + 1]))
        self.written.inc()
        return Row(*value[:n])

    def close(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()
