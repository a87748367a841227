"""Scoring a batch of feature vectors and shaping predictions (schemas/prediction.avsc). Pure: shared
by the Flink operators and the framework-free benchmark."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Optional

import numpy as np

from udfs import schemas
from udfs.profile import Event
from udfs.scorer import OnnxScorer
from udfs.segmenter import OnnxSegmenter

PREDICTION_FIELDS = schemas.field_names(schemas.PREDICTION)
SHADOW_FIELDS = schemas.field_names(schemas.SHADOW_SCORE)


class Scores(NamedTuple):
    """What the models said about one profile."""

    score: float
    model_version: str
    segment: int
    segment_name: str
    segment_model_version: str
    # top-k targeting of the model (udfs.model_contract.Decision); None from a model without one
    decision: Optional[bool] = None
    score_decile: Optional[int] = None


def score_batch(scorer: OnnxScorer, segmenter: OnnxSegmenter, vectors: Sequence[Sequence[float]]) -> list[Scores]:
    """Both models over all vectors in one call each (ONNX cost is per call, not per row)."""
    x = np.asarray(vectors, dtype=np.float32)
    scores = scorer.score(x)
    _check_finite(x, scores)
    decisions, deciles = scorer.decide(scores)
    segments = segmenter.assign(x)
    out = []
    for score, seg, dec, decile in zip(scores, segments, decisions, deciles, strict=True):
        seg = int(seg)
        out.append(Scores(float(score), scorer.model_version, seg, segmenter.name_of(seg), segmenter.model_version,
                          dec, decile))
    return out


def _check_finite(x: np.ndarray, scores: np.ndarray) -> None:
    """A NaN or infinite feature or score is a bug (features.py or the model): fail the batch here,
    before it reaches Cassandra or Kafka (the JSON the job writes would carry it as null)."""
    if not (np.isfinite(x).all() and np.isfinite(scores).all()):
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(x))[:, 1]}) if x.size else []
        raise ValueError(f"non-finite feature(s) at vector positions {bad} or a non-finite score")


def score_only(scorer: OnnxScorer, vectors: Sequence[Sequence[float]]) -> list[Scores]:
    """The propensity model alone (a shadow model: its segments are not compared, so none are run)."""
    scores = scorer.score(np.asarray(vectors, dtype=np.float32))
    decisions, deciles = scorer.decide(scores)
    return [Scores(float(s), scorer.model_version, -1, "", "", dec, decile)
            for s, dec, decile in zip(scores, decisions, deciles, strict=True)]


def shadow_row(ev: Event, active: Scores, shadow: Scores) -> list[Any]:
    """Values in the order of schemas/shadow_score.avsc: both models' scores of one applied event."""
    row = {
        "user_id": ev.user_id,
        "event_id": ev.event_id,
        "event_time": ev.event_time,
        "active_version": active.model_version,
        "active_score": active.score,
        "shadow_version": shadow.model_version,
        "shadow_score": shadow.score,
    }
    return [row[f] for f in SHADOW_FIELDS]


# The order prediction_row writes, checked against schemas/prediction.avsc at import: a field added
# to the schema fails here until the row places it (the row is built once per event: no dict).
_ROW_ORDER = ["user_id", "event_id", "event_type", "event_time", "score", "lifecycle", "value_tier", "segment",
              "segment_name", "model_version", "segment_model_version", "scored_at", "features", "decision",
              "score_decile"]
if PREDICTION_FIELDS != _ROW_ORDER:
    raise ImportError(f"udfs.prediction.prediction_row does not match prediction.avsc: {PREDICTION_FIELDS}")


def prediction_row(
    ev: Event, scores: Scores, view: dict[str, Any], scored_at: int, features: list[float]
) -> list[Any]:
    """Values in the order of schemas/prediction.avsc."""
    return [ev.user_id, ev.event_id, ev.event_type, ev.event_time, scores.score, view["lifecycle"],
            view["value_tier"], scores.segment, scores.segment_name, scores.model_version,
            scores.segment_model_version, scored_at, features, scores.decision, scores.score_decile]
