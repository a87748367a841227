"""ONNX scoring wrapper used by the Flink scoring operator and by the offline tools. Pure Python (no
pyflink): load the exported propensity model once, check that it was trained on the feature list this
code computes, pick an execution provider, say where the graph's nodes run, and score float32 batches.
``OnnxModel`` holds the loading part that the segment model (``udfs.segmenter.OnnxSegmenter``) shares.

The model contract is ``udfs.model_contract`` (written by ``model_export``): one float32 input
``[None, n_features]``; output ``probabilities`` ``[n, 2]``; ``metadata_props`` with ``model_version``,
``feature_names`` (JSON list), ``features_version``, ``horizon_hours``, ``label_definition``, and
optionally ``decision`` (top-k targeting: the threshold and the score deciles a prediction carries).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import onnxruntime as ort

from udfs import model_contract as mc
from udfs.features import FEATURE_NAMES

log = logging.getLogger(__name__)

CPU = mc.CPU
CUDA = mc.CUDA
PROVIDER_CHOICES = ("auto", "cuda", "cpu")
# A CUDA session must run every node on the GPU or not start: without this, onnxruntime quietly places
# nodes it has no CUDA kernel for on the CPU and the session still reports CUDA as its provider.
NO_CPU_FALLBACK = "session.disable_cpu_ep_fallback"


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

    ``provider``: 'auto' (CUDA when the runtime lists it and a session starts on it with every node on
    the GPU, else CPU), 'cuda' (that, or an error) or 'cpu'. CUDA sessions are created with
    ``session.disable_cpu_ep_fallback``, so a graph with a CPU-only op never runs half on the CPU while
    reporting CUDA. ``intra_op_num_threads`` defaults to 1 because the job runs one scorer per task slot
    (one per core): more threads per scorer would only oversubscribe the cores.
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
        # A CPU session runs every node on the CPU: no need to read the graph (the onnx package is
        # only imported where a CUDA session needs its op list; see deploy/taskmanager_python).
        self.runs_on: str = (
            "CUDA" if self.provider == CUDA and all(p == CUDA for _, p in self.node_placement) else "CPU"
        )

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
            "%s loaded %s (model_version=%s, %d features) on %s; nodes run on %s",
            type(self).__name__, self.path.name, self.model_version, self.n_features, self.provider, self.runs_on,
        )

    # --- loading ---------------------------------------------------------------------------------

    def _session(self, providers: list[str]) -> ort.InferenceSession:
        opts = self._opts
        if CUDA in providers:
            opts = self._cuda_options()
        return ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)

    def _cuda_options(self) -> ort.SessionOptions:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._opts.intra_op_num_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 4  # a refused CUDA session raises, with the reason; no log line twice
        opts.add_session_config_entry(NO_CPU_FALLBACK, "1")
        return opts

    def graph_ops(self) -> list[tuple[str, str]]:
        """(domain, op type) of every node of the loaded file (onnx imported here only: the job's
        workers load it once per model)."""
        import onnx  # noqa: PLC0415

        return [(n.domain, n.op_type) for n in onnx.load(str(self.path), load_external_data=False).graph.node]

    @functools.cached_property
    def node_placement(self) -> list[tuple[str, str]]:
        """Where each node of this session runs (read on first use; see _node_placement)."""
        return self._node_placement()

    def _node_placement(self) -> list[tuple[str, str]]:
        """(op type, provider) per node: CUDA where the session runs on CUDA and the op has a CUDA kernel
        (``udfs.model_contract.CUDA_OPS``), else CPU. Derived from the graph, not from what was asked."""
        on_cuda = self.provider == CUDA
        return [(op, CUDA if on_cuda and mc.runs_on_cuda(domain, op) else CPU) for domain, op in self.graph_ops()]

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
            cpu_only = mc.ops_without_cuda(self.graph_ops())
            if cpu_only:  # onnxruntime would refuse them (NO_CPU_FALLBACK); this names them
                raise ProviderUnavailableError(f"{self.path.name} has ops without CUDA kernels: {cpu_only}")
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
        # either raises or silently falls back; only a session that really runs on CUDA counts, and only
        # for a graph whose every node has a CUDA kernel (else the CPU session is the honest one).
        if CUDA in available:
            cpu_only = mc.ops_without_cuda(self.graph_ops())
            if cpu_only:
                log.info("%s has ops without CUDA kernels (%s); using CPU", self.path.name, cpu_only)
                return self._session([CPU])
            try:
                # CUDA alone: with NO_CPU_FALLBACK set, onnxruntime refuses a list that also names the CPU
                session = self._session([CUDA])
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
            "runs_on": self.runs_on,
            "cpu_nodes": sorted({op for op, p in self.node_placement if p == CPU}),
            "n_features": self.n_features,
            "features_version": self.metadata.get(mc.FEATURES_VERSION),
        }


class OnnxScorer(OnnxModel):
    """Loads an exported propensity model once and scores batches of feature vectors (see ``OnnxModel``
    for the arguments)."""

    def _bind_outputs(self) -> None:
        self._output_name = self._probability_output()
        try:
            self.decision: Optional[mc.Decision] = mc.Decision.from_metadata(self.metadata)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelMismatchError(f"{self.path}: metadata '{mc.DECISION}' is unreadable: {exc}") from exc

    def _probability_output(self) -> str:
        outputs = self.session.get_outputs()
        for out in outputs:
            if out.name == mc.PROBABILITIES:
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

    def decide(self, scores: np.ndarray) -> tuple[list[Optional[bool]], list[Optional[int]]]:
        """(decision, score decile) per score; None for both when the model carries no decision (one
        exported before it existed)."""
        if self.decision is None:
            return [None] * len(scores), [None] * len(scores)
        return ([bool(d) for d in self.decision.decide(scores)],
                [int(d) for d in self.decision.deciles(scores)])

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "horizon_hours": self.metadata.get(mc.HORIZON_HOURS),
            "decision": None if self.decision is None else json.loads(self.decision.to_json()),
        }
