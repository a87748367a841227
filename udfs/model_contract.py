"""The contract between the exporter (``model_export``) and the scorers (``udfs.scorer``,
``udfs.segmenter``): tensor names, metadata keys, the decision each prediction carries, and which
ONNX ops onnxruntime's CUDA provider executes. Pure Python (json + numpy), so the job imports it
without the training stack.

Propensity model: float32 ``features`` ``[None, n_features]`` -> ``probabilities`` ``[n, 2]`` (column
1 = P(purchase within the horizon)). Segment model: the same input -> ``label`` (int64 ``[n]``) and
``scores`` (``[n, k]`` distances to the centres). Both carry ``metadata_props`` (keys below).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional

import numpy as np

ONNX_INPUT = "features"
PROBABILITIES = "probabilities"
SEGMENT_LABEL = "label"
SEGMENT_SCORES = "scores"

# --- metadata_props keys -------------------------------------------------------------------------
MODEL_VERSION = "model_version"
MODEL_TYPE = "model_type"
FEATURE_NAMES = "feature_names"  # JSON list: the whole input vector, in schemas/features.json order
FEATURES_VERSION = "features_version"
USED_FEATURES = "used_features"  # JSON list: the columns the graph reads (the others get no weight)
HORIZON_HOURS = "horizon_hours"
LABEL_DEFINITION = "label_definition"
DECISION = "decision"  # JSON of Decision; absent in models exported before it existed
CALIBRATION = "calibration"
TRAINING_DATA_FINGERPRINT = "training_data_fingerprint"
METRICS = "metrics"
CREATED_BY = "created_by"
CREATED_AT = "created_at"
SEGMENT_K = "k"
SEGMENT_NAMES = "segment_names"  # JSON list of k descriptions, index = segment id
SEGMENT_FEATURES = "segment_features"
LOG_FEATURES = "log_features"

PROPENSITY_REQUIRED = (MODEL_VERSION, FEATURE_NAMES, FEATURES_VERSION, HORIZON_HOURS, LABEL_DEFINITION,
                       TRAINING_DATA_FINGERPRINT, METRICS, CREATED_BY)

# --- where nodes run -----------------------------------------------------------------------------
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

# Default-domain (ai.onnx) ops that onnxruntime's CUDA execution provider implements for float and
# double tensors (onnxruntime/core/providers/cuda). Deliberately short: the exporter builds its graphs
# from these only, and a test fails if it emits anything else. Every op of the ai.onnx.ml domain
# (LinearClassifier, Scaler, TreeEnsemble, ZipMap, ...) is CPU-only.
CUDA_OPS: frozenset[str] = frozenset({
    "Add", "ArgMin", "Cast", "Concat", "Div", "Gemm", "Identity", "Log", "MatMul", "Max", "Min", "Mul",
    "ReduceSum", "Relu", "Reshape", "Sigmoid", "Sqrt", "Sub", "Tanh", "Unsqueeze",
})


def runs_on_cuda(domain: str, op_type: str) -> bool:
    """Whether onnxruntime's CUDA provider has a kernel for this node (as far as ``CUDA_OPS`` knows)."""
    return domain in ("", "ai.onnx") and op_type in CUDA_OPS


def ops_without_cuda(ops: Iterable[tuple[str, str]]) -> list[str]:
    """``domain:op`` of every (domain, op type) pair that would fall back to the CPU, sorted, unique."""
    return sorted({f"{d or 'ai.onnx'}:{o}" for d, o in ops if not runs_on_cuda(d, o)})


# --- the decision a prediction carries -----------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """Top-k% targeting: flag a prediction when its score is at least ``threshold``, the score that
    ``top_fraction`` of the validation rows reached. ``decile_edges`` are the 9 ascending cut points of
    the validation scores: decile 10 = the highest-scored tenth, 1 = the lowest."""

    top_fraction: float
    threshold: float
    decile_edges: tuple[float, ...]

    def __post_init__(self) -> None:
        if not 0.0 < self.top_fraction < 1.0:
            raise ValueError(f"top_fraction must be in (0, 1), got {self.top_fraction}")
        edges = list(self.decile_edges)
        if len(edges) != 9 or edges != sorted(edges):
            raise ValueError(f"decile_edges must be 9 ascending scores, got {edges}")

    def decide(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores, dtype=np.float64) >= self.threshold

    def deciles(self, scores: np.ndarray) -> np.ndarray:
        """1..10 per score (int64)."""
        edges = np.asarray(self.decile_edges, dtype=np.float64)
        return np.searchsorted(edges, np.asarray(scores, dtype=np.float64), side="right").astype(np.int64) + 1

    def to_json(self) -> str:
        return json.dumps({"top_fraction": self.top_fraction, "threshold": self.threshold,
                           "decile_edges": list(self.decile_edges)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Decision:
        d = json.loads(text)
        return cls(float(d["top_fraction"]), float(d["threshold"]), tuple(float(x) for x in d["decile_edges"]))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> Optional[Decision]:
        """The model's decision, or None for a model exported without one (predictions then carry
        null ``decision`` and ``score_decile``)."""
        raw = metadata.get(DECISION)
        return cls.from_json(raw) if raw else None
