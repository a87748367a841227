"""The models topic inside the profile operator (issue 14): Flink glue around udfs/live_models.py.

Path of a record: KafkaSource on ``topic_models`` (1 partition, parallelism 1, uid source-models)
-> jvm/.../ControlRecordDeserializer -> jvm/.../ControlFanout (one copy per profile subtask, through
the keyed batch channel) -> ``ProfileFunction._control`` -> ``ModelControl.handle``, between two
batches. Every subtask applies the same records in the same order, so all run the same models.

Checkpointed state: the registry state (``udfs.model_registry.encode_state``: the active and shadow
packages, ONNX bytes included) in a keyed ValueState "model_registry" without TTL, one copy under
one deterministic key per key group this subtask owns (jvm/.../KeyedStateAccess.putAllGroups). It
is written as soon as a record changes it, i.e. before the next barrier; every subtask has applied
the same records before a barrier (single sender, aligned checkpoints), so all copies in a
checkpoint are equal and whichever subtask owns any key group after a restore, with any parallelism,
finds the model that was active. open() reads it back; a copy that cannot be read fails the job
(never a silent fall-back to the model file).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable
from typing import Any

from pyflink.common.typeinfo import Types
from pyflink.datastream import OutputTag
from pyflink.datastream.state import ValueStateDescriptor

from flink_jobs.config import Config
from flink_jobs.keyed_store import from_state, to_state
from flink_jobs.types import row_type
from udfs import schemas
from udfs.live_models import LiveModels, decode_control

log = logging.getLogger(__name__)

REGISTRY_STATE = "model_registry"
SHADOW_TAG = OutputTag("shadow-scores", row_type(schemas.SHADOW_SCORE))
METRICS = ("models_rejected", "model_swaps", "models_unchanged")


def registry_state_descriptor() -> ValueStateDescriptor:
    """No TTL: the active model must survive any quiet time (a TTL would drop it like an idle user).
    Versioned Avro bytes as latin-1, like the profile state (keyed_store.to_state)."""
    return ValueStateDescriptor(REGISTRY_STATE, Types.STRING())


class ModelControl:
    """Applies model records to ``self.live`` (what the operator scores with), logs and counts what
    each did, and keeps the registry state in checkpointed keyed state (``access``: a
    jvm/.../KeyedStateAccess bound to the "model_registry" state)."""

    def __init__(self, cfg: Config, access: Any, metrics_group: Any) -> None:
        self.access = access
        # the ONNX files of published packages: a directory of this TaskManager, per operator instance
        model_dir = tempfile.mkdtemp(prefix="pe-models-")
        self.live = LiveModels.from_files(cfg.model_file, cfg.segments_file, model_dir, cfg.onnx_provider)
        self.counters = {name: metrics_group.counter(name) for name in METRICS}
        self.m_apply_us = metrics_group.counter("model_apply_micros")  # validation + loading, summed
        # 1 per subtask that found the registry in checkpointed state at open() (tests and runbooks
        # see from it that a restore took the checkpointed model, not the file)
        m_restored = metrics_group.counter("model_registry_restores")
        t0 = time.perf_counter()
        restored = access.getAnyGroup()
        if restored is not None:
            self.live.restore(from_state(restored))  # raises on a bad copy: fail, never use the file
            m_restored.inc()
            log.info("model registry restored from checkpointed state in %.1f ms: %s",
                     (time.perf_counter() - t0) * 1000, _describe(self.live.versions()))
        else:
            log.info("model registry: nothing checkpointed, scoring with the model files: %s",
                     _describe(self.live.versions()))

    def handle(self, body: Any) -> Iterable[Any]:
        """One record of the models topic (the control body of jvm/.../ControlRecordDeserializer)."""
        record = decode_control(body)
        update = self.live.apply(record)
        for event in update.events:
            log.log(event.level, "%s (models offset %d, %.1f ms)", event.log_line(), record.offset,
                    update.micros / 1000)
            self.counters[event.metric].inc()
        self.m_apply_us.inc(update.micros)
        if update.changed:
            t0 = time.perf_counter()
            self.access.putAllGroups(to_state(self.live.state_bytes()))
            log.info("now scoring with %s (state copies written in %.1f ms)", _describe(update.versions),
                     (time.perf_counter() - t0) * 1000)
        return ()


def _describe(versions: dict[str, Any]) -> str:
    return " ".join(f"{k}={v or '(none)'}" for k, v in versions.items())
