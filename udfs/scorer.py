"""ONNX scoring wrapper used by the Flink scoring operator and by the offline tools. Pure Python (no
pyflink): load the exported propensity model once, check that it was trained on the feature list this
code computes, pick an execution provider, and score float32 batches. ``OnnxModel`` holds the loading
part that the segment model (``udfs.segmenter.OnnxSegmenter``) shares.

The model contract (written by ``model_export.train``):
- one float32 input ``[None, n_features]``;
- outputs ``label`` and ``probabilities`` ``[n, 2]`` (ZipMap off, so no per-row Python dicts);
- ``metadata_props``: ``model_version``, ``feature_names`` (JSON list), ``features_version``,
  ``horizon_hours``, ``label_definition``, ``training_data_fingerprint``, ``metrics``, ``created_by``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import onnxruntime as ort

from udfs.features import FEATURE_NAMES

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
PROVIDER_CHOICES = ("auto", "cuda", "cpu")


class ModelMismatchError(ValueError):
    """The model was trained on other features than ``udfs.features`` computes: refuse to score,
    because every prediction would silently be garbage."""


class ProviderUnavailableError(RuntimeError):
    """``provider='cuda'`` was asked for but no CUDA session can be created on this machine."""


def feature_mismatch(expected: Sequence[str], actual: Sequence[str]) -> Optional[str]:
    """A human-readable description of how ``actual`` differs from ``expected``; None if equal."""
    expected, actual = list(expected), list(actual)
    if expected == actual:
        return None
    parts: list[str] = []
    missing = [f for f in expected if f not in actual]
    extra = [f for f in actual if f not in expected]
    repeated = sorted({f for f in actual if actual.count(f) > 1})
    if missing:
        parts.append(f"missing from the model: {missing}")
    if extra:
        parts.append(f"unknown to this code: {extra}")
    if repeated:
        parts.append(f"listed more than once by the model: {repeated}")
    if not missing and not extra and not repeated:
        moved = [f"{name} (code #{i}, model #{actual.index(name)})" for i, name in enumerate(expected)
                 if actual.index(name) != i]
        parts.append(f"same features in another order: {moved}")
    elif len(expected) != len(actual):
        parts.append(f"{len(actual)} features in the model, {len(expected)} in the code")
    return "; ".join(parts)


class OnnxModel:
    """An exported model loaded once: file check, execution provider, metadata, feature-list check, one
    float32 input ``[None, n_features]``. Subclasses bind their outputs in ``_bind_outputs``.

    ``provider``: 'auto' (CUDA when the runtime lists it and a session really starts on it, else CPU),
    'cuda' (CUDA or an error) or 'cpu'. ``intra_op_num_threads`` defaults to 1 because the job runs one
    scorer per task slot (one per core): more threads per scorer would only oversubscribe the cores.
    """

    def __init__(
        self,
        path: str | Path,
        provider: str = "auto",
        intra_op_num_threads: int = 1,
        expected_features: Optional[Sequence[str]] = None,
    ) -> None:
        if provider not in PROVIDER_CHOICES:
            raise ValueError(f"provider must be one of {PROVIDER_CHOICES}, got {provider!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"ONNX model not found: {self.path} (train it: python -m model_export.train)"
            )
        self._opts = ort.SessionOptions()
        self._opts.intra_op_num_threads = intra_op_num_threads
        self._opts.inter_op_num_threads = 1
        self._opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._opts.log_severity_level = 3  # errors only: the CUDA probe on CPU hosts is expected to warn

        self.session = self._create_session(provider)
        self.provider: str = self.session.get_providers()[0]

        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.model_version: str = self.metadata.get("model_version", "unknown")
        self.feature_names: list[str] = self._check_features(
            list(FEATURE_NAMES if expected_features is None else expected_features)
        )
        self.n_features = len(self.feature_names)

        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise ModelMismatchError(f"{self.path}: expected one input tensor, got {names}")
        self.input_name: str = inputs[0].name
        width = inputs[0].shape[-1] if inputs[0].shape else None
        if isinstance(width, int) and width != self.n_features:
            raise ModelMismatchError(
                f"{self.path}: input '{self.input_name}' takes {width} columns, "
                f"metadata lists {self.n_features} features"
            )
        self._bind_outputs()
        log.info(
            "%s loaded %s (model_version=%s, %d features) on %s",
            type(self).__name__, self.path.name, self.model_version, self.n_features, self.provider,
        )

    # --- loading ---------------------------------------------------------------------------------

    def _session(self, providers: list[str]) -> ort.InferenceSession:
        return ort.InferenceSession(str(self.path), sess_options=self._opts, providers=providers)

    def _create_session(self, provider: str) -> ort.InferenceSession:
        available = ort.get_available_providers()
        if provider == "cpu":
            return self._session([CPU])
        if provider == "cuda":
            if CUDA not in available:
                raise ProviderUnavailableError(
                    f"provider 'cuda' asked for, but this onnxruntime build offers only {available} "
                    "(install onnxruntime-gpu, or use provider 'auto'/'cpu')"
                )
            try:
                session = self._session([CUDA])
            except Exception as exc:  # ORT raises bare RuntimeError/Fail variants
                raise ProviderUnavailableError(f"CUDA session could not be created: {exc}") from exc
            if session.get_providers()[0] != CUDA:
                raise ProviderUnavailableError(
                    f"CUDA listed but the session fell back to {session.get_providers()}: CUDA/cuDNN "
                    "libraries or a GPU are missing"
                )
            return session
        # auto: onnxruntime-gpu lists CUDA even on hosts without a GPU or CUDA libraries, and then
        # either raises or silently falls back; only a session that really runs on CUDA counts.
        if CUDA in available:
            try:
                session = self._session([CUDA, CPU])
                if session.get_providers()[0] == CUDA:
                    return session
                log.info("CUDAExecutionProvider listed but unusable here; using CPU")
            except Exception as exc:
                log.info("CUDAExecutionProvider failed to start (%s); using CPU", exc)
        return self._session([CPU])

    def _check_features(self, expected: list[str]) -> list[str]:
        raw = self.metadata.get("feature_names")
        if raw is None:
            raise ModelMismatchError(
                f"{self.path}: no 'feature_names' in the model metadata; it was not exported by "
                "model_export.train and cannot be checked against the features this code computes"
            )
        try:
            names = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ModelMismatchError(f"{self.path}: metadata 'feature_names' is not JSON: {exc}") from exc
        diff = feature_mismatch(expected, names)
        if diff is not None:
            raise ModelMismatchError(
                f"model {self.path} (model_version={self.model_version}, "
                f"features_version={self.metadata.get('features_version', '?')}) does not match the "
                f"features of this code: {diff}. Retrain with python -m model_export.train."
            )
        return list(names)

    def _bind_outputs(self) -> None:
        raise NotImplementedError

    def _batch(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` as a C-contiguous float32 ``[n, n_features]`` array (one vector becomes one row)."""
        x = np.asarray(batch)
        if x.ndim == 1 and x.shape[0] == self.n_features:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"batch must have shape [n, {self.n_features}], got {x.shape}")
        return np.ascontiguousarray(x, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """What the job logs and the bench records about the loaded model."""
        return {
            "path": str(self.path),
            "model_version": self.model_version,
            "provider": self.provider,
            "n_features": self.n_features,
            "features_version": self.metadata.get("features_version"),
        }


class OnnxScorer(OnnxModel):
    """Loads an exported propensity model once and scores batches of feature vectors (see ``OnnxModel``
    for the arguments)."""

    def _bind_outputs(self) -> None:
        self._output_name = self._probability_output()

    def _probability_output(self) -> str:
        outputs = self.session.get_outputs()
        for out in outputs:
            if out.name == "probabilities":
                return out.name
        # Fallback for models exported by other tools: the first 2-D tensor output.
        for out in outputs:
            if out.type.startswith("tensor") and len(out.shape or []) == 2:
                return out.name
        raise ModelMismatchError(
            f"{self.path}: no [n, 2] probability output (is ZipMap on?): {[o.name for o in outputs]}"
        )

    # --- scoring ---------------------------------------------------------------------------------

    def score(self, batch: np.ndarray) -> np.ndarray:
        """Probability of the positive class, float64 ``[n]``, for a ``[n, n_features]`` batch."""
        x = self._batch(batch)
        if x.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        (proba,) = self.session.run([self._output_name], {self.input_name: x})
        return np.asarray(proba[:, 1], dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"horizon_hours": self.metadata.get("horizon_hours")}
