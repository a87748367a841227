"""Writing the models: metadata (the keys of ``udfs.model_contract``), version ids, atomic writes,
the sklearn-vs-onnxruntime parity check, CPU latency and the staleness check behind ``--if-missing``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Optional

import numpy as np
import onnx
import onnxruntime as ort
import sklearn

from model_export.models import positive_proba
from udfs import model_contract as mc
from udfs.features import FEATURE_NAMES, FEATURES_VERSION

PARITY_TOL = 1e-5
SEGMENTS_FILE = "segments.onnx"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def label_definition(horizon_hours: float) -> str:
    return (
        f"1 if the same user has a purchase event with event_time in (t, t + {horizon_hours:g}h], "
        f"t = the scored event's time (a purchase at t itself does not count), else 0. Rows with "
        f"t + {horizon_hours:g}h after the last event time of the training data are censored (excluded)."
    )


def version_id(prefix: str, payload: Mapping[str, Any]) -> str:
    """``<prefix>-v<features version>-<hash>``: the same data, settings, model and library version give
    the same id; any change gives a new one."""
    blob = json.dumps({**payload, "sklearn": sklearn.__version__, "features": FEATURE_NAMES},
                      sort_keys=True, default=repr)
    return f"{prefix}-v{FEATURES_VERSION}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def model_version(fingerprint: Mapping[str, Any], params: Any, chosen: str, config: Any = None) -> str:
    """Propensity model id over the data fingerprint, the training params, the chosen model's name and
    its selected configuration (a dataclass)."""
    return version_id("propensity", {
        "data": fingerprint, "params": dataclasses.asdict(params) if dataclasses.is_dataclass(params) else params,
        "model": chosen, "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config,
    })


def created_by() -> str:
    return f"model_export (scikit-learn {sklearn.__version__}, onnx {onnx.__version__}, graph built with onnx.helper)"


def model_metadata(
    version: str, horizon_hours: float, fingerprint: Mapping[str, Any], metrics: Mapping[str, Any], chosen: str,
    decision: Optional[mc.Decision] = None, feature_names: Sequence[str] = FEATURE_NAMES,
    used_features: Sequence[str] = (), extra: Optional[Mapping[str, Any]] = None,
) -> dict[str, str]:
    meta = {
        mc.MODEL_VERSION: version,
        mc.MODEL_TYPE: chosen,
        mc.FEATURE_NAMES: json.dumps(list(feature_names)),
        mc.FEATURES_VERSION: str(FEATURES_VERSION),
        mc.USED_FEATURES: json.dumps(list(used_features)),
        mc.HORIZON_HOURS: f"{horizon_hours:g}",
        mc.LABEL_DEFINITION: label_definition(horizon_hours),
        mc.TRAINING_DATA_FINGERPRINT: json.dumps(fingerprint, sort_keys=True),
        mc.METRICS: json.dumps(metrics, sort_keys=True),
        mc.CREATED_BY: created_by(),
        mc.CREATED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if decision is not None:
        meta[mc.DECISION] = decision.to_json()
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return meta


def write_onnx(model: onnx.ModelProto, path: Path, metadata: Mapping[str, str], doc: str) -> Path:
    """Attach ``metadata`` as metadata_props and write atomically (a running job or a test may be
    reading the old file)."""
    onnx.helper.set_model_props(model, {k: str(v) for k, v in metadata.items()})
    model.doc_string = doc
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(model.SerializeToString())
    os.replace(tmp, path)
    return path


def cpu_session(model: str | Path | bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=[mc.CPU])


def onnx_proba(session: ort.InferenceSession, X: np.ndarray) -> np.ndarray:
    (proba,) = session.run([mc.PROBABILITIES], {mc.ONNX_INPUT: np.ascontiguousarray(X, dtype=np.float32)})
    return np.asarray(proba[:, 1], dtype=np.float64)


def parity(model: Any, onnx_model: str | Path | bytes, X: np.ndarray) -> float:
    """max |sklearn-side predict_proba - onnxruntime| on ``X`` (both fed the same float32 values)."""
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    return float(np.max(np.abs(positive_proba(model, X32) - onnx_proba(cpu_session(onnx_model), X32))))


def onnx_latency(onnx_bytes: bytes, X: np.ndarray, budget_s: float = 0.3) -> dict[str, float]:
    """Single-thread CPU serving cost: median microseconds of a batch-1 call, rows/s at batch 1024.
    Informational (this machine, whatever else runs on it); bench/bench_scorer.py is the benchmark."""
    sess = cpu_session(onnx_bytes)
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    one: list[float] = []
    t_end = time.perf_counter() + budget_s / 2
    i = 0
    while time.perf_counter() < t_end or len(one) < 20:
        row = X32[i % len(X32): i % len(X32) + 1]
        t0 = time.perf_counter()
        sess.run([mc.PROBABILITIES], {mc.ONNX_INPUT: row})
        one.append(time.perf_counter() - t0)
        i += 1
    big = np.resize(X32, (1024, X32.shape[1]))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < budget_s / 2 or n == 0:
        sess.run([mc.PROBABILITIES], {mc.ONNX_INPUT: big})
        n += 1
    return {
        "batch1_median_us": float(np.median(one) * 1e6),
        "batch1024_rows_per_s": float(n * 1024 / (time.perf_counter() - t0)),
        "onnx_bytes": len(onnx_bytes),
    }


def segments_path(model_path: Path) -> Path:
    """The segment model lives next to the propensity model."""
    return Path(model_path).parent / SEGMENTS_FILE


def stale_reason(path: Path, segments: bool = False) -> Optional[str]:
    """Why the model at ``path`` must be (re)trained, or None if it can be used as is. ``segments``: it
    must also be a segment model (k and one name per segment in its metadata)."""
    if not path.is_file():
        return f"{path} does not exist"
    try:
        model = onnx.load(str(path), load_external_data=False)
        props = {p.key: p.value for p in model.metadata_props}
        names = json.loads(props[mc.FEATURE_NAMES])
        if segments and len(json.loads(props[mc.SEGMENT_NAMES])) != int(props[mc.SEGMENT_K]):
            return f"{path} has a segment name count other than k"
    except Exception as exc:  # any unreadable file means: rebuild it
        return f"{path} is unreadable ({exc})"
    if names != FEATURE_NAMES:
        return f"{path} was trained on other features than schemas/features.json lists"
    cpu_only = mc.ops_without_cuda((n.domain, n.op_type) for n in model.graph.node)
    if cpu_only:
        return f"{path} uses ops without a CUDA kernel ({', '.join(cpu_only)}): exported by an older trainer"
    return None


def artifacts_stale_reason(out: Path) -> Optional[str]:
    """Why the propensity model ``out`` or the segment model next to it must be rebuilt; None if neither.
    Both are rebuilt together (one replay; the model card describes both)."""
    return stale_reason(out) or stale_reason(segments_path(out), segments=True)
