"""User segments from the exported k-means model (``artifacts/segments.onnx``). Pure Python (no pyflink).

Same loading as the propensity scorer (``udfs.scorer.OnnxModel``: provider choice, node placement,
feature-list check against ``udfs.features.FEATURE_NAMES``, ``ModelMismatchError``). The model contract
(``udfs.model_contract``, written by ``model_export.segments``):
- one float32 input ``features`` ``[None, n_features]`` -- the whole feature vector; the graph itself
  selects the columns it clusters on and log-transforms the skewed ones;
- outputs ``label`` (int64 ``[n]``, the segment) and ``scores`` (``[n, k]`` distances to the centres);
- ``metadata_props``: ``model_version`` (``segments-v<features version>-<hash>``), ``feature_names``,
  ``k``, ``segment_names`` (JSON list of k descriptions, index = segment id), ``segment_features``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from udfs import model_contract as mc
from udfs.scorer import ModelMismatchError, OnnxModel


class OnnxSegmenter(OnnxModel):
    """Loads an exported segment model once and assigns batches of feature vectors to segments.
    Arguments as ``udfs.scorer.OnnxScorer`` (path, provider, intra_op_num_threads, expected_features)."""

    def _bind_outputs(self) -> None:
        outputs = {o.name: o for o in self.session.get_outputs()}
        if mc.SEGMENT_LABEL not in outputs:
            raise ModelMismatchError(f"{self.path}: no '{mc.SEGMENT_LABEL}' output: {sorted(outputs)}")
        try:
            self.k = int(self.metadata[mc.SEGMENT_K])
            names = json.loads(self.metadata[mc.SEGMENT_NAMES])
        except (KeyError, ValueError) as exc:
            raise ModelMismatchError(
                f"{self.path}: not a segment model (metadata 'k' / 'segment_names' missing or bad: {exc})"
            ) from exc
        if not isinstance(names, list) or len(names) != self.k or self.k < 1:
            raise ModelMismatchError(f"{self.path}: k={self.k} but {len(names)} segment names")
        width = (outputs[mc.SEGMENT_SCORES].shape or [None, None])[-1] if mc.SEGMENT_SCORES in outputs else None
        if isinstance(width, int) and width != self.k:
            raise ModelMismatchError(f"{self.path}: k={self.k} but 'scores' has {width} columns")
        self.segment_names: list[str] = [str(n) for n in names]

    def assign(self, batch: np.ndarray) -> np.ndarray:
        """Segment id in ``[0, k)``, int64 ``[n]``, for a ``[n, n_features]`` batch."""
        x = self._batch(batch)
        if x.shape[0] == 0:
            return np.empty(0, dtype=np.int64)
        (label,) = self.session.run([mc.SEGMENT_LABEL], {self.input_name: x})
        return np.asarray(label, dtype=np.int64).reshape(-1)

    def name_of(self, segment: int) -> str:
        return self.segment_names[segment]

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"k": self.k, "segment_names": self.segment_names}
